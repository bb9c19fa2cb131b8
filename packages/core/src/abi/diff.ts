/**
 * What a change to a service's ABI manifest (abi.json) means for its version line. The rule
 * from the design: additive opt-in ABI is a minor bump; anything that changes what an
 * existing VM sees (or could see by default) is a major bump. Release tooling and CI use this
 * to check that every package's changeset bumps at least this much, and `changeset version`
 * writes the reasons into the package's CHANGELOG under "Guest ABI".
 */

import { formatDifference, type AbiBuild, type ServiceBehaviour } from './behaviour.js';

export type Bump = 'none' | 'patch' | 'minor' | 'major';
const RANK: Record<Bump, number> = { none: 0, patch: 1, minor: 2, major: 3 };
export const maxBump = (a: Bump, b: Bump): Bump => (RANK[a] >= RANK[b] ? a : b);
export const bumpAtLeast = (have: Bump, need: Bump): boolean => RANK[have] >= RANK[need];

export interface AbiChange {
  readonly bump: Bump;
  readonly reasons: readonly string[];
}

export interface ClassifyOptions {
  /**
   * A build holding the new version of the service (and what it requires): the old manifest's
   * recorded behaviour is replayed on it, probe by probe. Without it only declarations are compared.
   */
  readonly hv?: AbiBuild;
  /**
   * Call name → reason: a behaviour change of that call is a bug fix the release manager
   * accepts as a patch (a changeset's "Guest ABI waiver" line). The reason goes into the notes.
   */
  readonly waivers?: ReadonlyMap<string, string>;
}

type Obj = Record<string, unknown>;
interface Manifest {
  readonly surface: {
    readonly calls?: readonly Obj[];
    readonly features?: readonly Obj[];
    readonly versions?: readonly Obj[];
    readonly constants?: readonly Obj[];
    readonly state?: Obj;
    readonly continuations?: readonly Obj[];
  };
  readonly [k: string]: unknown;
}

const byName = (list: readonly Obj[] | undefined) => new Map((list ?? []).map((x) => [String(x.name ?? x.call), x]));

/** A manifest value as a message shows it: numbers in hex (ids, register values), absent as "none". */
function shown(v: unknown): string {
  if (v === undefined || v === null) return 'none';
  if (typeof v === 'number' && Number.isInteger(v)) return `0x${v.toString(16)}`;
  if (typeof v === 'string') return /^0x[0-9a-f]+$/i.test(v) ? v : `'${v}'`;
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && Number.isInteger(x) ? `0x${x.toString(16)}` : x));
}

/** Every field (but `skip`) that differs between a and b, as "field old → new", in field order. */
function fieldChanges(a: Obj, b: Obj, skip: readonly string[]): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !skip.includes(k)).sort();
  return keys.filter((k) => !same(a[k], b[k])).map((k) => `${k} ${shown(a[k])} → ${shown(b[k])}`);
}
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const without = (o: Obj | undefined, ...keys: string[]) => {
  const c = { ...(o ?? {}) };
  for (const k of keys) delete c[k];
  return c;
};

/** Classifies old → new (both parsed abi.json manifests). */
export function classifyAbiChange(oldM: Manifest, newM: Manifest, options: ClassifyOptions = {}): AbiChange {
  const reasons: string[] = [];
  let bump: Bump = 'none';
  const note = (b: Bump, why: string) => {
    bump = maxBump(bump, b);
    reasons.push(`${b}: ${why}`);
  };
  const o = oldM.surface;
  const n = newM.surface;

  const oldFeatures = byName(o.features);
  const newFeatures = byName(n.features);
  for (const [name, f] of oldFeatures) {
    const g = newFeatures.get(name);
    if (!g) note('major', `feature '${name}' removed`);
    else {
      if (g.default !== f.default) note('major', `feature '${name}' default ${String(f.default)} → ${String(g.default)}`);
      if (!same(g.register, f.register)) note('major', `feature '${name}' firmware register bit ${shown(f.register)} → ${shown(g.register)}`);
      if (g.description !== f.description || g.legacy !== f.legacy) note('patch', `feature '${name}' description`);
    }
  }
  const addedFeatures = new Set<string>();
  for (const [name, g] of newFeatures) {
    if (oldFeatures.has(name)) continue;
    addedFeatures.add(name);
    if (g.default === 'opt-in') note('minor', `new opt-in feature '${name}'`);
    else note('major', `new feature '${name}' is on by default (new ABI must be opt-in)`);
  }

  const oldCalls = byName(o.calls);
  const newCalls = byName(n.calls);
  for (const [name, c] of oldCalls) {
    const d = newCalls.get(name);
    if (!d) note('major', `call ${name} removed`);
    else if (!same(without(c, 'signature'), without(d, 'signature'))) note('major', `call ${name} changed: ${fieldChanges(c, d, ['signature']).join('; ')}`);
    else if (!same(c.signature, d.signature)) note('patch', `call ${name}: signature changed (what it answers is checked by replaying its probes)`);
  }
  for (const [name, d] of newCalls) {
    if (oldCalls.has(name)) continue;
    if (addedFeatures.has(String(d.feature)) && newFeatures.get(String(d.feature))?.default === 'opt-in') {
      note('minor', `new call ${name} behind new opt-in feature '${String(d.feature)}'`);
    } else if (d.since && oldCalls.size && isNewVersionOnly(o.versions, n.versions, d.since as Obj)) {
      note('minor', `new call ${name} only for the new ${String((d.since as Obj).version)} version ${String((d.since as Obj).minimum)}`);
    } else {
      note('major', `new call ${name} under existing feature '${String(d.feature)}': existing VMs would see it`);
    }
  }

  const oldVersions = byName(o.versions);
  const newVersions = byName(n.versions);
  for (const [name, v] of oldVersions) {
    const w = newVersions.get(name);
    if (!w) {
      note('major', `version selector '${name}' removed`);
      continue;
    }
    const ov = (v.values as Obj[]).map((x) => `${String(x.name)}=${String(x.value)}`);
    const nv = (w.values as Obj[]).map((x) => `${String(x.name)}=${String(x.value)}`);
    const removed = ov.filter((x) => !nv.includes(x));
    const added = nv.filter((x) => !ov.includes(x));
    if (removed.length) note('major', `${name} versions removed: ${removed.join(', ')}`);
    if (added.length) note('minor', `${name} versions added: ${added.join(', ')}`);
    if (w.default !== v.default) note('major', `${name} default version ${String(v.default)} → ${String(w.default)}`);
    if (!same(w.register, v.register)) note('major', `${name} firmware register changed`);
  }
  for (const name of newVersions.keys()) if (!oldVersions.has(name)) note('minor', `new version selector '${name}'`);

  const oldConst = byName(o.constants);
  const newConst = byName(n.constants);
  for (const [name, c] of oldConst) {
    const d = newConst.get(name);
    if (!d) {
      note('major', `firmware register ${name} removed`);
      continue;
    }
    // Its id or the value a new VM reads: what existing VMs see changes.
    const changed = fieldChanges(c, d, ['description', 'accepts']);
    if (changed.length) note('major', `firmware register ${name} changed: ${changed.join('; ')}`);
    // What an operator may write: a value accepted before and refused now breaks a VM that was
    // given it; one accepted now and not before only widens what new VMs may be given.
    const was = ((c.accepts as unknown[]) ?? []).map(String);
    const now = ((d.accepts as unknown[]) ?? []).map(String);
    const narrowed = was.filter((x) => !now.includes(x));
    const widened = now.filter((x) => !was.includes(x));
    if (narrowed.length) note('major', `firmware register ${name} no longer accepts ${narrowed.join(', ')}`);
    if (widened.length) note('minor', `firmware register ${name} also accepts ${widened.join(', ')}`);
  }
  for (const name of newConst.keys()) if (!oldConst.has(name)) note('minor', `new firmware register ${name}`);

  if (!same(o.state, n.state)) {
    if (!o.state) note('minor', 'now keeps per-VM state');
    else if (!n.state || n.state.id !== o.state.id) note('major', 'per-VM state replaced');
    else if (Number(n.state.minReadable ?? n.state.version) > Number(o.state.version)) note('major', `state schema ${String(n.state.version)} cannot read schema ${String(o.state.version)}`);
    else note('minor', `state schema ${String(o.state.version)} → ${String(n.state.version)} (still reads the old one)`);
  }
  if (!same(o.continuations, n.continuations)) note('major', 'continuation (restart) encodings changed');

  // Behaviour: every probe the old release recorded, replayed on the new code.
  if (options.hv && oldM.behaviour) {
    for (const d of options.hv.behaviour.replayServiceBehaviour(oldM.behaviour as ServiceBehaviour)) {
      const waiver = options.waivers?.get(d.call);
      if (waiver) note('patch', `waived: ${formatDifference(d)} (${waiver})`);
      else note('major', `behaviour changed: ${formatDifference(d)}`);
    }
  }

  const restOld = without(oldM as Obj, 'surface', 'behaviour');
  const restNew = without(newM as Obj, 'surface', 'behaviour');
  if (!same(restOld, restNew)) note(same(restOld.requires, restNew.requires) ? 'patch' : 'major', 'package metadata (description or requires)');
  return { bump, reasons };
}

/** True if the call's `since` names a version value the old manifest did not offer. */
function isNewVersionOnly(oldVersions: readonly Obj[] | undefined, _new: readonly Obj[] | undefined, since: Obj): boolean {
  const sel = byName(oldVersions).get(String(since.version));
  if (!sel) return true;
  return !(sel.values as Obj[]).some((v) => v.name === since.minimum);
}
