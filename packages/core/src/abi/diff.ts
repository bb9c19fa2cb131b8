/**
 * What a change to a service's ABI manifest (abi.json) means for its version line. The rule
 * from the design: additive opt-in ABI is a minor bump; anything that changes what an
 * existing VM sees (or could see by default) is a major bump. Release tooling and CI use this
 * to check that every package's changeset bumps at least this much, and `changeset version`
 * writes the reasons into the package's CHANGELOG under "Guest ABI".
 */

import { canonicalJson } from './manifest.js';
import { formatDifference, type AbiBuild, type BehaviourDifference, type ServiceBehaviour } from './behaviour.js';
import { continuationMask, type ContinuationDecl, type ContinuationField } from './surface.js';
import { continuationText } from './record.js';

export type Bump = 'none' | 'patch' | 'minor' | 'major';
const RANK: Record<Bump, number> = { none: 0, patch: 1, minor: 2, major: 3 };
export const maxBump = (a: Bump, b: Bump): Bump => (RANK[a] >= RANK[b] ? a : b);
export const bumpAtLeast = (have: Bump, need: Bump): boolean => RANK[have] >= RANK[need];

export type AbiChangeKind = 'added' | 'removed' | 'changed';

/** One classified difference between two manifests of a service. */
export interface AbiChangeEntry {
  /** What it needs of the version line ('none': shown, changes nothing a guest sees, e.g. a rename). */
  readonly bump: Bump;
  /**
   * Which way it cuts: `added` (ABI the old release lacks: a VM that uses it cannot go back),
   * `removed` (ABI the new release lacks: a VM that used it cannot go forward), `changed` (both).
   */
  readonly kind: AbiChangeKind;
  /** What changed: `call PSCI_FEATURES`, `feature 'trng'`, `version psci`, `firmware register X`, `state`, `package`. */
  readonly subject: string;
  /** The change, naming each field old → new (ids and register values in hex). */
  readonly message: string;
  /**
   * Which VMs see it: `every VM` (on by default), `VMs with feature 'x' on`, `VMs at psci ≥ 1.3`,
   * `VMs given <register> = <value>`, `VMs that keep <state>`, `new VMs (created with defaults)`, `none`.
   */
  readonly affects: string;
  /** A changeset's waiver reason: the change is an accepted bug fix (a patch). */
  readonly waiver?: string;
}

export interface AbiChange {
  readonly bump: Bump;
  /** `${bump}: ${message}` per change that needs a bump (what lint prints). */
  readonly reasons: readonly string[];
  /** Every classified difference, renames (bump 'none') included, in manifest order. */
  readonly changes: readonly AbiChangeEntry[];
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
// Compared as canonical JSON: a manifest read from disk and one composed in memory differ in key order only.
const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);
const without = (o: Obj | undefined, ...keys: string[]) => {
  const c = { ...(o ?? {}) };
  for (const k of keys) delete c[k];
  return c;
};

/** Which VMs see a call: those with its feature on (every VM when on by default), at its version bounds. */
function callAudience(call: Obj | undefined, features: Map<string, Obj>): string {
  if (!call) return 'every VM';
  const feature = features.get(String(call.feature));
  let who = feature?.default === 'opt-in' ? `VMs with feature '${String(call.feature)}' on` : 'every VM';
  if (feature?.default !== 'opt-in' && call.feature !== undefined) who = `every VM with feature '${String(call.feature)}' (on by default)`;
  const since = call.since as Obj | undefined;
  const until = call.until as Obj | undefined;
  if (since) who += ` at ${String(since.version)} ≥ ${String(since.minimum)}`;
  if (until) who += ` at ${String(until.version)} ≤ ${String(until.maximum)}`;
  return who;
}

const callKey = (c: Obj) => `${String(c.conduit)}:${String(c.id)}:${String(c.subOf ? JSON.stringify(c.subOf) : '')}`;

/**
 * Old call name → new name for calls renamed in place: same conduit, id (and sub-op position),
 * every other field equal. A guest sees function ids, never names: a rename changes nothing.
 */
function renamedCalls(oldCalls: Map<string, Obj>, newCalls: Map<string, Obj>): Map<string, string> {
  const newByKey = new Map([...newCalls.values()].map((c) => [callKey(c), c]));
  const out = new Map<string, string>();
  for (const [name, c] of oldCalls) {
    if (newCalls.has(name)) continue;
    const d = newByKey.get(callKey(c));
    if (!d || oldCalls.has(String(d.name))) continue;
    if (same(without(c, 'name', 'signature', 'subOf'), without(d, 'name', 'signature', 'subOf'))) out.set(name, String(d.name));
  }
  return out;
}

/** A recorded behaviour with calls renamed (old name → new), so it replays against the new names. */
function renameBehaviour(b: ServiceBehaviour, renames: Map<string, string>): ServiceBehaviour {
  if (renames.size === 0) return b;
  const out: Record<string, Record<string, unknown>> = {};
  for (const [config, transcript] of Object.entries(b)) {
    out[config] = Object.fromEntries(Object.entries(transcript).map(([call, t]) => [renames.get(call) ?? call, t]));
  }
  return out as ServiceBehaviour;
}

/**
 * The probes both manifests recorded (same configuration, call and probe) whose answers differ:
 * behaviour compared without code, e.g. two ledger entries or two releases' abi.json.
 */
export function compareRecordedBehaviour(was: ServiceBehaviour, now: ServiceBehaviour): BehaviourDifference[] {
  const out: BehaviourDifference[] = [];
  for (const [config, calls] of Object.entries(was)) {
    const there = now[config];
    if (!there) continue;
    for (const [call, probes] of Object.entries(calls)) {
      const answers = there[call];
      if (!answers) continue;
      for (const [probe, output] of Object.entries(probes)) {
        const o = answers[probe];
        if (o !== undefined && o !== output) {
          out.push({ config, call, probe, was: output, now: o });
          break; // the first differing probe of each call, as a replay reports it
        }
      }
    }
  }
  return out;
}

/**
 * Did the old surface refuse every bit `now`'s fields use, for `call` (a sub-op)? True when a
 * sibling sub-op (same parent and selector) had a continuation with `otherSubOps` whose fields in
 * the selector register cover them: the router answered any non-zero value there with an error.
 */
function refusedBefore(o: Manifest['surface'], renames: Map<string, string>, call: string, now: Obj): boolean {
  const oldName = [...renames].find(([, to]) => to === call)?.[0] ?? call;
  const decl = (o.calls ?? []).find((c) => c.name === oldName);
  const sub = decl?.subOf as Obj | undefined;
  if (!sub) return false;
  let refused = 0n;
  for (const k of o.continuations ?? []) {
    if (!k.otherSubOps) continue;
    const sibling = (o.calls ?? []).find((c) => c.name === k.call)?.subOf as Obj | undefined;
    if (!sibling || sibling.call !== sub.call || sibling.selector !== sub.selector) continue;
    refused |= continuationMask(k.encoding as ContinuationField[], Number(sub.selector));
  }
  for (const f of (now.encoding as ContinuationField[] | undefined) ?? []) {
    if (f.reg !== Number(sub.selector)) return false;
    const bits = continuationMask([f], f.reg);
    if ((bits & ~refused) !== 0n) return false;
  }
  return true;
}

/**
 * Classifies old → new (both parsed abi.json manifests, or ledger entries). Every difference is
 * an entry naming its subject, its fields old → new, and the VMs it affects.
 */
export function classifyAbiChange(oldM: Manifest, newM: Manifest, options: ClassifyOptions = {}): AbiChange {
  const changes: AbiChangeEntry[] = [];
  const note = (bump: Bump, kind: AbiChangeKind, subject: string, message: string, affects: string, waiver?: string) => {
    changes.push({ bump, kind, subject, message, affects, ...(waiver ? { waiver } : {}) });
  };
  const o = oldM.surface;
  const n = newM.surface;

  const oldFeatures = byName(o.features);
  const newFeatures = byName(n.features);
  for (const [name, f] of oldFeatures) {
    const g = newFeatures.get(name);
    const subject = `feature '${name}'`;
    if (!g) note('major', 'removed', subject, `feature '${name}' removed`, f.default === 'opt-in' ? `VMs with feature '${name}' on` : 'every VM');
    else {
      if (g.default !== f.default) note('major', 'changed', subject, `feature '${name}' default ${String(f.default)} → ${String(g.default)}`, 'new VMs (created with defaults)');
      if (!same(g.register, f.register)) note('major', 'changed', subject, `feature '${name}' firmware register bit ${shown(f.register)} → ${shown(g.register)}`, 'VMs whose VMM reads or sets the register');
      if (g.description !== f.description || g.legacy !== f.legacy) note('patch', 'changed', subject, `feature '${name}' description`, 'none');
    }
  }
  const addedFeatures = new Set<string>();
  for (const [name, g] of newFeatures) {
    if (oldFeatures.has(name)) continue;
    addedFeatures.add(name);
    if (g.default === 'opt-in') note('minor', 'added', `feature '${name}'`, `new opt-in feature '${name}'`, `VMs with feature '${name}' on`);
    else note('major', 'added', `feature '${name}'`, `new feature '${name}' is on by default (new ABI must be opt-in)`, 'every VM');
  }

  const oldCalls = byName(o.calls);
  const newCalls = byName(n.calls);
  const renames = renamedCalls(oldCalls, newCalls);
  const renamedTo = new Set(renames.values());
  for (const [name, c] of oldCalls) {
    const to = renames.get(name);
    if (to) {
      note('none', 'changed', `call ${name}`, `call ${name} renamed ${to} (same conduit ${String(c.conduit)} and id ${shown(c.id)}: guests see no change)`, 'none');
      continue;
    }
    const d = newCalls.get(name);
    const subject = `call ${name}`;
    if (!d) note('major', 'removed', subject, `call ${name} (${String(c.conduit)} ${shown(c.id)}) removed`, callAudience(c, oldFeatures));
    else if (!same(without(c, 'signature'), without(d, 'signature'))) note('major', 'changed', subject, `call ${name} changed: ${fieldChanges(c, d, ['signature']).join('; ')}`, callAudience(c, oldFeatures));
    else if (!same(c.signature, d.signature)) note('patch', 'changed', subject, `call ${name}: signature changed (what it answers is checked by replaying its probes)`, 'none');
  }
  for (const [name, d] of newCalls) {
    if (oldCalls.has(name) || renamedTo.has(name)) continue;
    const subject = `call ${name}`;
    const at = `(${String(d.conduit)} ${shown(d.id)})`;
    if (addedFeatures.has(String(d.feature)) && newFeatures.get(String(d.feature))?.default === 'opt-in') {
      note('minor', 'added', subject, `new call ${name} ${at} behind new opt-in feature '${String(d.feature)}'`, callAudience(d, newFeatures));
    } else if (addedFeatures.has(String(d.feature))) {
      note('major', 'added', subject, `new call ${name} ${at} behind new feature '${String(d.feature)}', which is on by default`, callAudience(d, newFeatures));
    } else if (d.since && oldCalls.size && isNewVersionOnly(o.versions, n.versions, d.since as Obj)) {
      note('minor', 'added', subject, `new call ${name} ${at} only for the new ${String((d.since as Obj).version)} version ${String((d.since as Obj).minimum)}`, callAudience(d, newFeatures));
    } else {
      note('major', 'added', subject, `new call ${name} ${at} under existing feature '${String(d.feature)}': existing VMs would see it`, callAudience(d, newFeatures));
    }
  }

  const oldVersions = byName(o.versions);
  const newVersions = byName(n.versions);
  for (const [name, v] of oldVersions) {
    const w = newVersions.get(name);
    const subject = `version ${name}`;
    if (!w) {
      note('major', 'removed', subject, `version selector '${name}' removed`, `every VM using ${name}`);
      continue;
    }
    const values = (x: Obj) => (x.values as Obj[]).map((y) => `${String(y.name)} (${shown(y.value)})`);
    const removed = values(v).filter((x) => !values(w).includes(x));
    const added = values(w).filter((x) => !values(v).includes(x));
    if (removed.length) note('major', 'removed', subject, `${name} versions removed: ${removed.join(', ')}`, `VMs at ${name} ${removed.map((x) => x.split(' ')[0]).join(' or ')}`);
    if (added.length) note('minor', 'added', subject, `${name} versions added: ${added.join(', ')}`, `VMs given ${name} ${added.map((x) => x.split(' ')[0]).join(' or ')}`);
    if (w.default !== v.default) note('major', 'changed', subject, `${name} default version ${String(v.default)} → ${String(w.default)}`, 'new VMs (created with defaults)');
    if (!same(w.register, v.register)) note('major', 'changed', subject, `${name} firmware register ${shown(v.register)} → ${shown(w.register)}`, 'VMs whose VMM reads or sets the register');
  }
  for (const name of newVersions.keys()) if (!oldVersions.has(name)) note('minor', 'added', `version ${name}`, `new version selector '${name}'`, `VMs given a ${name} version`);

  const oldConst = byName(o.constants);
  const newConst = byName(n.constants);
  for (const [name, c] of oldConst) {
    const d = newConst.get(name);
    const subject = `firmware register ${name}`;
    if (!d) {
      note('major', 'removed', subject, `firmware register ${name} (${shown(c.id)}) removed`, 'every VM');
      continue;
    }
    // Its id or the value a new VM reads: what existing VMs see changes.
    const changed = fieldChanges(c, d, ['description', 'accepts']);
    if (changed.length) note('major', 'changed', subject, `firmware register ${name} changed: ${changed.join('; ')}`, 'every VM');
    // What an operator may write: a value accepted before and refused now breaks a VM that was
    // given it; one accepted now and not before only widens what new VMs may be given.
    const was = ((c.accepts as unknown[]) ?? []).map(shown);
    const now = ((d.accepts as unknown[]) ?? []).map(shown);
    const narrowed = was.filter((x) => !now.includes(x));
    const widened = now.filter((x) => !was.includes(x));
    if (narrowed.length) note('major', 'removed', subject, `firmware register ${name} accepts [${was.join(', ')}] → [${now.join(', ')}]: no longer ${narrowed.join(', ')}`, `VMs given ${name} = ${narrowed.join(' or ')}`);
    if (widened.length) note('minor', 'added', subject, `firmware register ${name} accepts [${was.join(', ')}] → [${now.join(', ')}]: also ${widened.join(', ')}`, `VMs given ${name} = ${widened.join(' or ')}`);
  }
  for (const [name, d] of newConst) if (!oldConst.has(name)) note('minor', 'added', `firmware register ${name}`, `new firmware register ${name} (${shown(d.id)})`, `VMs whose VMM sets ${name}`);

  if (!same(o.state, n.state)) {
    const st = (x: Obj | undefined) => (x ? `${String(x.id)} v${String(x.version)}` : 'none');
    const affects = `VMs that keep ${String((o.state ?? n.state)?.id)} state`;
    if (!o.state) note('minor', 'added', 'state', `now keeps per-VM state ${st(n.state)}`, affects);
    else if (!n.state || n.state.id !== o.state.id) note('major', 'changed', 'state', `per-VM state ${st(o.state)} → ${st(n.state)}`, affects);
    else if (Number(n.state.minReadable ?? n.state.version) > Number(o.state.version)) note('major', 'changed', 'state', `state schema ${String(o.state.version)} → ${String(n.state.version)}: cannot read schema ${String(o.state.version)}`, affects);
    else note('minor', 'added', 'state', `state schema ${String(o.state.version)} → ${String(n.state.version)} (still reads the old one)`, affects);
  }
  // Continuations, per call (a call renamed in place keeps its continuation): an encoding is
  // what a guest may hold in its registers or memory across a move, so any change for a call an
  // existing VM can issue is major; a continuation of a new call is minor.
  {
    const encodingOf = (k: Obj | undefined): string => continuationText(k as unknown as ContinuationDecl | undefined);
    const oldK = new Map((o.continuations ?? []).map((k) => [renames.get(String(k.call)) ?? String(k.call), k]));
    const newK = byName(n.continuations);
    const renamed = new Set(renames.values());
    for (const call of new Set([...oldK.keys(), ...newK.keys()])) {
      const was = oldK.get(call);
      const now = newK.get(call);
      const a = encodingOf(was);
      const b = encodingOf(now);
      const affects = `VMs with ${call} preempted in flight, or its continuation saved in guest memory`;
      if (a !== b) {
        const existed = oldCalls.has(call) || renamed.has(call);
        if (!was && !existed) note('minor', 'added', `continuation ${call}`, `new preemptible call ${call}: continuation ${b}`, `VMs that enable ${call}`);
        else if (!was && now && refusedBefore(o, renames, call, now)) {
          // Every bit the new fields use was refused before (a sibling sub-op's continuation field
          // in the same selector, with an answer for sub-ops without one): no guest can hold such
          // a value, and zero still means a first leg. Compatible for existing VMs, not for rollback.
          note('minor', 'added', `continuation ${call}`, `continuation of ${call}: not preemptible → ${b} (its field was refused before)`, `VMs moved back to a release without it while ${call} is preempted`);
        }
        else note('major', was ? (now ? 'changed' : 'removed') : 'changed', `continuation ${call}`, `continuation of ${call}: ${a} → ${b}`, affects);
      } else if (!same(was, now)) note('patch', 'changed', `continuation ${call}`, `continuation of ${call}: description only`, affects);
    }
  }

  // Behaviour: every probe the old release recorded, replayed on the new code (or, without
  // code, compared with what the new manifest recorded for the same probes).
  const recorded = oldM.behaviour ? renameBehaviour(oldM.behaviour as ServiceBehaviour, renames) : undefined;
  const differences = !recorded
    ? []
    : options.hv
      ? options.hv.behaviour.replayServiceBehaviour(recorded)
      : newM.behaviour
        ? compareRecordedBehaviour(recorded, newM.behaviour as ServiceBehaviour)
        : [];
  for (const d of differences) {
    const call = newCalls.get(d.call) ?? oldCalls.get(d.call);
    let affects = callAudience(call, newFeatures.size ? newFeatures : oldFeatures);
    if (d.config && d.config !== 'default') affects += ` (as configured: ${d.config})`;
    const waiver = options.waivers?.get(d.call);
    if (waiver) note('patch', 'changed', `call ${d.call}`, `waived: ${formatDifference(d)}`, affects, waiver);
    else note('major', 'changed', `call ${d.call}`, `behaviour changed: ${formatDifference(d)}`, affects);
  }

  const restOld = without(oldM as Obj, 'surface', 'behaviour', 'version', 'waivers');
  const restNew = without(newM as Obj, 'surface', 'behaviour', 'version', 'waivers');
  if (!same(restOld, restNew)) {
    const fields = fieldChanges(restOld, restNew, []);
    note(same(restOld.requires, restNew.requires) ? 'patch' : 'major', 'changed', 'package', `package metadata: ${fields.join('; ')}`, same(restOld.requires, restNew.requires) ? 'none' : 'every VM');
  }
  let bump: Bump = 'none';
  for (const c of changes) bump = maxBump(bump, c.bump);
  const reasons = changes.filter((c) => c.bump !== 'none').map((c) => `${c.bump}: ${c.message}${c.waiver ? ` (${c.waiver})` : ''}`);
  return { bump, reasons, changes };
}

/** True if the call's `since` names a version value the old manifest did not offer. */
function isNewVersionOnly(oldVersions: readonly Obj[] | undefined, _new: readonly Obj[] | undefined, since: Obj): boolean {
  const sel = byName(oldVersions).get(String(since.version));
  if (!sel) return true;
  return !(sel.values as Obj[]).some((v) => v.name === since.minimum);
}
