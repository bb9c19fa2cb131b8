/**
 * The "### Guest ABI" section of a release in a service's (or machine's) CHANGELOG.md, generated
 * from the ledger: every change classified between the previous release's entry and this one
 * (core's classifyAbiChange, comparing declarations and the behaviour both recorded, no code
 * needed), with its bump, old → new values in hex, the VMs it affects and any waiver's reason,
 * then the upgrade and rollback verdicts (core's rolloutVerdicts). A first release lists the ABI
 * it introduces instead. The model is libabigail's abidiff report: each changed entity, how it
 * changed, and whether the change is compatible (sourceware.org/libabigail/manual/abidiff.html).
 */

import { rolloutVerdicts, type AbiChange } from '@plugvisor/core';
import type { LedgerEntry } from './ledger.js';

export const GUEST_ABI_HEADING = '### Guest ABI';

type Obj = Record<string, unknown>;

/** Ids and register values in hex; hex strings as they are. */
export function hexOf(v: unknown): string {
  if (typeof v === 'number' && Number.isInteger(v)) return `0x${v.toString(16)}`;
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  return String(v);
}

export type Classifier = (previous: LedgerEntry, next: LedgerEntry, options: { waivers?: ReadonlyMap<string, string> }) => AbiChange;

export interface NotesInput {
  readonly kind: 'service' | 'machine';
  readonly previous?: LedgerEntry;
  readonly entry: LedgerEntry;
  readonly waivers: ReadonlyMap<string, string>;
  readonly classify: Classifier;
}

/** The section's lines, heading included, no trailing blank line. */
export function guestAbiSection(input: NotesInput): string[] {
  const out = [GUEST_ABI_HEADING, ''];
  if (!input.previous) {
    out.push(...firstRelease(input.kind, input.entry));
    return out;
  }
  const change = input.classify(input.previous, input.entry, { waivers: input.waivers });
  const was = input.previous.version;
  if (change.changes.length === 0) {
    out.push(`No guest ABI change since ${was}.`);
  } else {
    out.push(`Compared with ${was} (its ledger entry): ${change.bump === 'none' ? 'no change a guest can see' : `a ${change.bump} change`}.`, '');
    for (const c of change.changes) {
      let line = `- **${c.bump}** ${c.message} — affects: ${c.affects}`;
      if (c.waiver) line += ` — waived: ${c.waiver}`;
      out.push(line);
    }
  }
  // A waiver names a call (services) or a fact path or prefix (machines).
  const unused = [...input.waivers].filter(([key, reason]) => !change.changes.some((c) => c.waiver === reason && c.subject.includes(key)));
  if (unused.length) {
    if (change.changes.length === 0) out.push('');
    const nothing = (key: string) => (input.kind === 'service' ? `no recorded answer of ${key} changed` : `nothing under ${key} changed`);
    for (const [key, reason] of unused) out.push(`- Waiver for \`${key}\` (${reason}): ${nothing(key)} since ${was}.`);
  }
  const v = rolloutVerdicts(change);
  out.push('', `Upgrade (VMs of ${was} onto ${input.entry.version}): ${v.upgrade}.`, '', `Rollback (VMs of ${input.entry.version} onto ${was}): ${v.rollback}.`);
  return out;
}

/** Which VMs have a feature on when the operator says nothing. */
const audience = (f: Obj) => (f.default === 'opt-in' ? `VMs with feature '${String(f.name)}' on` : `every VM with feature '${String(f.name)}' (on by default)`);

function register(r: unknown): string {
  if (!r || typeof r !== 'object') return '';
  const o = r as Obj;
  return `${String(o.name ?? 'register')} ${hexOf(o.id)}${o.bit !== undefined ? ` bit ${String(o.bit)}` : ''}`;
}

function callText(c: Obj): string {
  let s = `${String(c.name)} (${String(c.conduit)} ${hexOf(c.id)}`;
  const sub = c.subOf as Obj | undefined;
  if (sub) s += `, op ${hexOf(sub.value)} of ${String(sub.call)}`;
  const since = c.since as Obj | undefined;
  const until = c.until as Obj | undefined;
  if (since) s += `, ${String(since.version)} ≥ ${String(since.minimum)}`;
  if (until) s += `, ${String(until.version)} ≤ ${String(until.maximum)}`;
  return s + ')';
}

function firstRelease(kind: 'service' | 'machine', entry: LedgerEntry): string[] {
  const out = [`First release of this ${kind}'s guest ABI (no earlier ledger entry to compare with). It introduces:`, ''];
  const s = (entry.surface ?? {}) as Obj;
  if (kind === 'machine') {
    // A tree of facts (core's abi/machine.ts): each top-level group, what it holds, whom it concerns.
    const docs = new Set(['description', 'affects']);
    for (const [k, v] of Object.entries(s)) {
      if (docs.has(k)) continue;
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const o = v as Obj;
        const who = typeof o.affects === 'string' ? ` — ${o.affects}` : '';
        out.push(`- ${k}: ${Object.keys(o).filter((x) => !docs.has(x)).join(', ') || 'none'}${who}`);
      } else out.push(`- ${k}: ${Array.isArray(v) ? v.map(hexOf).join(', ') : hexOf(v)}`);
    }
    out.push('', 'Upgrade: first release of the machine\'s declared guest ABI — no earlier ledger entry.', '', 'Rollback: no earlier release of it to roll back to.');
    return out;
  }
  const features = ((s.features as Obj[] | undefined) ?? []).slice();
  const calls = (s.calls as Obj[] | undefined) ?? [];
  for (const f of features) {
    const own = calls.filter((c) => c.feature === f.name);
    const reg = register(f.register);
    out.push(`- feature \`${String(f.name)}\`: ${String(f.default)}${reg ? ` (${reg})` : ''}; calls: ${own.map(callText).join(', ') || 'none'}`);
  }
  const loose = calls.filter((c) => !features.some((f) => f.name === c.feature));
  if (loose.length) out.push(`- calls on every VM: ${loose.map(callText).join(', ')}`);
  for (const v of (s.versions as Obj[] | undefined) ?? []) {
    const values = ((v.values as Obj[] | undefined) ?? []).map((x) => `${String(x.name)} (${hexOf(x.value)})`).join(', ');
    const reg = register(v.register);
    out.push(`- version selector \`${String(v.name)}\`: ${values}; default ${String(v.default)}${reg ? `; ${reg}` : ''}`);
  }
  for (const c of (s.constants as Obj[] | undefined) ?? []) {
    const accepts = Array.isArray(c.accepts) ? `; accepts ${(c.accepts as unknown[]).map(hexOf).join(', ')}` : '';
    out.push(`- firmware register \`${String(c.name)}\` ${hexOf(c.id)}: reads ${hexOf(c.value)}${accepts}`);
  }
  const state = s.state as Obj | undefined;
  if (state) out.push(`- per-VM state \`${String(state.id)}\` v${String(state.version)}`);
  if (Array.isArray(s.continuations) && s.continuations.length) out.push(`- continuation encodings: ${JSON.stringify(s.continuations)}`);
  const requires = (entry.requires as string[] | undefined) ?? [];
  if (requires.length) out.push(`- requires ${requires.join(', ')}`);
  const who = features.map(audience);
  out.push(
    '',
    'Upgrade: first release — no VM ran on an earlier one.',
    '',
    `Rollback (onto a build without this service): refused for ${who.length ? who.join('; ') : 'every VM that uses its calls'}; every other VM restores.`,
  );
  return out;
}

/**
 * CHANGELOG.md with `section` right under the `## <version>` heading, replacing a Guest ABI
 * section already there (so a second run changes nothing). Adds the heading, after the title,
 * if changesets wrote none.
 */
export function insertGuestAbi(changelog: string, title: string, version: string, section: readonly string[]): string {
  const lines = changelog ? changelog.replace(/\r\n/g, '\n').split('\n') : [`# ${title}`, ''];
  const heading = `## ${version}`;
  let at = lines.findIndex((l) => l.trim() === heading);
  if (at < 0) {
    const titleAt = lines.findIndex((l) => /^# /.test(l));
    const where = titleAt < 0 ? 0 : titleAt + 1;
    lines.splice(where, 0, ...(where > 0 ? [''] : []), heading);
    at = where + (where > 0 ? 1 : 0);
  }
  let end = lines.findIndex((l, i) => i > at && /^## /.test(l));
  if (end < 0) end = lines.length;
  // An existing Guest ABI section in this release: from its heading to the next ### or ##.
  const start = lines.findIndex((l, i) => i > at && i < end && l.trim() === GUEST_ABI_HEADING);
  if (start >= 0) {
    let stop = lines.findIndex((l, i) => i > start && /^#{2,3} /.test(l));
    if (stop < 0) stop = lines.length;
    lines.splice(start, stop - start, ...section, '');
  } else {
    const rest = lines.slice(at + 1);
    while (rest.length && rest[0] === '') rest.shift();
    lines.splice(at + 1, lines.length - at - 1, '', ...section, ...(rest.length ? [''] : []), ...rest);
  }
  return lines.join('\n').replace(/\n*$/, '\n');
}
