/**
 * What a version number says about a service's guest ABI: one policy, used by lint, the release
 * notes, `plugvisor check` and restore.
 *
 * Semantic Versioning (semver.org, items 4 and 8) with npm's reading of 0.x (the caret range,
 * docs.npmjs.com "semver" / node-semver's `^`): in 0.y.z the minor is the breaking part. So a
 * release step is
 *   - major: the major changed, or — while the major is 0 — the minor changed (0.1.x → 0.2.0);
 *   - minor: the minor changed at 1.0.0 and later, or the patch changed within 0.y (0.1.0 → 0.1.1:
 *     compatible under ^0.1.0, so at 0.y a patch step may carry opt-in additions);
 *   - patch: the patch changed at 1.0.0 and later;
 *   - none: the same version.
 * A release must take a step at least as large as the classified change (abi/diff.ts) since the
 * previous release. Restore and check never decide by version numbers: they compare the VM's
 * recorded ABI with what the destination build gives (abi/record.ts); the step is shown only.
 */

import type { AbiChange, AbiChangeEntry, Bump } from './diff.js';

const parse = (v: string): [number, number, number] | undefined => {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
};

/** The kind of step from one released version to the next (see the policy above); undefined if either is not semver. */
export function releaseStep(from: string, to: string): Bump | undefined {
  const a = parse(from);
  const b = parse(to);
  if (!a || !b) return undefined;
  if (a[0] !== b[0]) return 'major';
  if (a[1] !== b[1]) return a[0] === 0 ? 'major' : 'minor';
  if (a[2] !== b[2]) return a[0] === 0 ? 'minor' : 'patch';
  return 'none';
}

/** The line a version belongs to: its major, or 0.y while the major is 0 (npm's caret). */
export function releaseLine(version: string): string {
  const v = parse(version);
  if (!v) return version;
  return v[0] === 0 ? `0.${v[1]}` : String(v[0]);
}

/** What moving VMs between the old and new release does, from the classified changes. */
export interface RolloutVerdicts {
  /** VMs of the old release onto the new one. */
  readonly upgrade: string;
  /** VMs of the new release back onto the old one. */
  readonly rollback: string;
}

/**
 * Upgrade and rollback verdicts for a classified release: what the compatibility checker
 * (restore, `plugvisor check`) will say for the VMs each change affects.
 * - upgrade (old release's VMs onto the new one): refused for the VMs a major change that
 *   removed or changed ABI affects (their recorded ABI is not what the new release gives).
 *   Added ABI is new to them (off, or offered for the first time) and refuses nobody. A waived
 *   behaviour change is a patch for the version line, yet the VMs that recorded the old answers
 *   are refused (restore replays them): the notes say so.
 * - rollback (new release's VMs onto the old one): refused for the VMs that use anything the new
 *   release added or changed (the old release lacks it or answers the old way). ABI the new
 *   release removed no VM of it can have.
 */
export function rolloutVerdicts(change: AbiChange): RolloutVerdicts {
  // A waived behaviour change is a patch for the version line, but restore still replays the
  // VM's recorded answers: the VMs that saw the old answers are refused, both ways.
  const counts = (c: AbiChangeEntry) => c.bump === 'major' || c.bump === 'minor' || c.waiver !== undefined;
  const forward = change.changes.filter((c) => (c.bump === 'major' || c.waiver !== undefined) && c.kind !== 'added');
  const back = change.changes.filter((c) => counts(c) && c.kind !== 'removed');
  const list = (xs: readonly AbiChangeEntry[]) => [...new Set(xs.map((c) => `${c.affects} (${c.subject})`))].join('; ');
  const upgrade = forward.length ? `refused for ${list(forward)}; every other VM restores` : 'every VM of the previous release restores';
  const rollback = back.length ? `refused for ${list(back)}; every other VM restores` : 'every VM of this release restores on the previous one';
  return { upgrade, rollback };
}
