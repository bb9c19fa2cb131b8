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

import type { AbiChange, Bump } from './diff.js';

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
 * - upgrade: a major change refuses the VMs it affects (their recorded ABI differs on the new
 *   release); a minor one is new ABI they do not have on; a waived change is accepted as a fix.
 * - rollback: whatever the new release added (minor) refuses the VMs that turned it on; a major
 *   change refuses the VMs it affects in this direction too.
 */
export function rolloutVerdicts(change: AbiChange): RolloutVerdicts {
  const breaking = change.changes.filter((c) => c.bump === 'major');
  const added = change.changes.filter((c) => c.bump === 'minor');
  const list = (xs: readonly { affects: string; subject: string }[]) => [...new Set(xs.map((c) => `${c.affects} (${c.subject})`))].join('; ');
  const upgrade = breaking.length ? `refused for ${list(breaking)}; every other VM restores` : 'every VM of the previous release restores';
  const back = [...breaking, ...added];
  const rollback = back.length ? `refused for ${list(back)}; every other VM restores` : 'every VM of this release restores on the previous one';
  return { upgrade, rollback };
}
