import type { AbiCatalog } from './catalog.js';
import { formatDifference, type AbiBuild, type Transcript, type VmBehaviour } from './behaviour.js';
import { callExposed } from './exposure.js';
import { byCodeUnits } from './manifest.js';
import { formatContinuation, hex, type CallDecl, type ContinuationDecl, type ContinuationField } from './surface.js';
import { VmAbi } from './vm-abi.js';

/**
 * A VM's ABI record: authoritative, self-describing, JSON. It travels in every snapshot and
 * is what `plugvisor check --vm` reads. It names every feature of the build that created the
 * VM (on or off) with the exact calls each one gates, every version selection, the service
 * package versions in use and the firmware register values a VMM would read.
 */
export interface AbiRecord {
  readonly format: 1;
  readonly services: { readonly [pkg: string]: ServiceUse };
  readonly features: { readonly [name: string]: FeatureUse };
  readonly versions: { readonly [selector: string]: VersionUse };
  /** Firmware register id (hex) → value (hex), for VMMs that replay ONE_REG. */
  readonly registers: { readonly [id: string]: string };
  /**
   * What the VM's calls answer, per feature it has on: a digest and the transcript (probe →
   * output) of each call the feature gives it, as the build that created it answered them, and
   * (`ids`) each of those calls' wire identity (callId), so a destination that renamed a call in
   * place replays it under its new name. Restore and `plugvisor check` replay these probes on
   * the destination build. Records written before `ids` existed are still read (checkBehaviour).
   */
  readonly behaviour?: VmBehaviour;
  /**
   * The continuation encoding of every preemptible call the VM's enabled features give it, by
   * wire identity (callId). A guest may hold one in a vCPU or, for a descheduled task, in its own
   * memory, so restore compares these whether or not a vCPU is mid-call. Absent in records
   * written before continuations were recorded (then nothing is compared).
   */
  readonly continuations?: { readonly [callId: string]: ContinuationUse };
}

export interface ContinuationUse {
  readonly call: string;
  readonly feature: string;
  readonly encoding: readonly ContinuationField[];
  readonly otherSubOps?: { readonly reg: number; readonly value: number };
}

/** A continuation as one line for messages and comparison: fields, then the other sub-ops' answer. */
export function continuationText(k: Pick<ContinuationDecl, 'encoding' | 'otherSubOps'> | undefined): string {
  if (!k) return 'not preemptible';
  const o = k.otherSubOps;
  return `${formatContinuation(k.encoding)}${o ? `; other sub-ops answer ${o.value} in x${o.reg}` : ''}`;
}

export interface ServiceUse {
  readonly version: string;
  readonly state?: { readonly id: string; readonly version: number };
}
export interface FeatureUse {
  readonly service: string;
  readonly enabled: boolean;
  /** The calls this feature gives the VM at its selected versions, `conduit:id[..last]` or `conduit:id/value` (callId). */
  readonly calls: readonly string[];
}
export interface VersionUse {
  readonly service: string;
  readonly name: string;
  readonly value: number;
}

/**
 * A call's identity on the wire: `conduit:id[..last]`; a sub-op is its parent's id and its
 * selector value, `conduit:id/value` (Xen's EVTCHNOP_init_control: `xen:0x20/0xb`).
 */
export const callId = (c: CallDecl): string =>
  c.subOf
    ? `${c.conduit}:${hex(c.id)}/${hex(c.subOf.value)}`
    : `${c.conduit}:${hex(c.id)}${c.last !== undefined && c.last !== c.id ? `..${hex(c.last)}` : ''}`;

/**
 * The calls `feature` gives a VM whose selectors have these values: the calls it gates whose
 * since/until bounds hold (abi/exposure.ts). (A PSCI 1.1 VM's `psci` feature does not include
 * SYSTEM_OFF2.)
 */
export function exposedCalls(catalog: AbiCatalog, feature: string, versionValue: (selector: string) => number | undefined): string[] {
  return exposedDecls(catalog, feature, versionValue).map(callId).sort(byCodeUnits);
}

function exposedDecls(catalog: AbiCatalog, feature: string, versionValue: (selector: string) => number | undefined): CallDecl[] {
  const out: CallDecl[] = [];
  for (const { decl } of catalog.calls.values()) {
    if (decl.feature === feature && callExposed(decl, catalog, versionValue)) out.push(decl);
  }
  return out;
}

/** An object with its keys in code-unit order: records serialise the same whatever order a build declared things in. */
const sortedKeys = <T>(o: Readonly<Record<string, T>>): Record<string, T> =>
  Object.fromEntries(Object.keys(o).sort(byCodeUnits).map((k) => [k, o[k]!]));

/**
 * The VM's record; with `hv` (the build the VM runs on) it also carries its behaviour transcript.
 * Canonical: services, features, versions, each feature's transcript and call ids in name order,
 * registers in ascending id order (KVM_GET_REG_LIST's), so two builds that declare the same ABI
 * in another order write byte-identical records.
 */
export function recordOf(abi: VmAbi, hv?: AbiBuild): AbiRecord {
  const { catalog } = abi;
  const services: Record<string, ServiceUse> = {};
  for (const s of catalog.services.values()) {
    const st = s.surface.state;
    services[s.name] = st ? { version: s.version, state: { id: st.id, version: st.version } } : { version: s.version };
  }
  const features: Record<string, FeatureUse> = {};
  for (const [name, { service }] of catalog.features) {
    features[name] = { service: service.name, enabled: abi.isEnabled(name), calls: exposedCalls(catalog, name, (sel) => abi.versionValue(sel)) };
  }
  const versions: Record<string, VersionUse> = {};
  for (const [name, { service }] of catalog.versions) {
    versions[name] = { service: service.name, name: abi.version(name), value: abi.versionValue(name) };
  }
  const registers: Record<string, string> = {};
  for (const [id, value] of abi.registerValues()) registers[hex(id)] = hex(value);
  const continuations: Record<string, ContinuationUse> = {};
  for (const [name, f] of Object.entries(features)) {
    if (!f.enabled) continue;
    for (const decl of exposedDecls(catalog, name, (sel) => abi.versionValue(sel))) {
      const k = catalog.continuations.get(decl.name)?.decl;
      if (!k) continue;
      const encoding = [...k.encoding].sort((a, b) => a.reg - b.reg || a.shift - b.shift).map((x) => ({ name: x.name, reg: x.reg, shift: x.shift, width: x.width }));
      continuations[callId(decl)] = { call: decl.name, feature: name, encoding, ...(k.otherSubOps ? { otherSubOps: { reg: k.otherSubOps.reg, value: k.otherSubOps.value } } : {}) };
    }
  }
  const record = {
    format: 1 as const,
    services: sortedKeys(services),
    features: sortedKeys(features),
    versions: sortedKeys(versions),
    registers,
    continuations: sortedKeys(continuations),
  };
  if (!hv) return record;
  const behaviour: Record<string, VmBehaviour[string]> = {};
  for (const [feature, b] of Object.entries(hv.behaviour.vmBehaviour(abi.features(), abi.versions()))) {
    const ids: Record<string, string> = {};
    for (const call of Object.keys(b.calls)) {
      const decl = catalog.calls.get(call)?.decl;
      if (decl) ids[call] = callId(decl);
    }
    behaviour[feature] = { digest: b.digest, calls: sortedKeys(b.calls), ids: sortedKeys(ids) };
  }
  return { ...record, behaviour: sortedKeys(behaviour) };
}

/** Services whose ABI the VM uses: at least one of their features is on. */
export function servicesInUse(record: AbiRecord): Set<string> {
  const used = new Set<string>();
  for (const f of Object.values(record.features)) if (f.enabled) used.add(f.service);
  return used;
}

/** One reason a build cannot reproduce a VM's ABI; `subject` is e.g. `feature trng`, `call TRNG_RND64`, `register X`. */
export interface AbiProblem {
  readonly subject: string;
  readonly message: string;
  /** The service package the problem belongs to, when one does (`plugvisor check` groups by it). */
  readonly service?: string;
}

/**
 * Can `catalog` (the destination build) reproduce this VM's ABI exactly? Returns every
 * problem, each naming the feature, version, service or register at fault; empty = yes.
 */
export function checkRecord(record: AbiRecord, catalog: AbiCatalog, hv?: AbiBuild): string[] {
  return checkRecordDetailed(record, catalog, hv).map((p) => p.message);
}

/** `NAME (conduit:id)` when the name is known, else the bare call id. */
const callLabel = (id: string, name: string | undefined) => (name ? `${name} (${id})` : id);

/**
 * Every problem; with `hv` (the destination build, whose catalog `catalog` is) the behaviour the
 * record carries is replayed there too, and a call that answers any recorded probe differently
 * is a problem naming the call, the probe and old → new.
 *
 * The verdict comes from the ABI the VM recorded — the calls each feature it has on gives it,
 * its version selections, its firmware register values, the state it keeps, what its calls
 * answered — never from version numbers: a release whose number says "breaking" but changes
 * nothing this VM sees restores it, and one whose number says "compatible" but does is refused,
 * naming what changed (abi/versioning.ts states how version numbers are read, for people).
 */
export function checkRecordDetailed(record: AbiRecord, catalog: AbiCatalog, hv?: AbiBuild): AbiProblem[] {
  const list: AbiProblem[] = [];
  let subject = '';
  let service: string | undefined;
  const problems = { push: (message: string) => list.push({ subject, message, ...(service ? { service } : {}) }) };
  if (record.format !== 1) return [{ subject: 'record', message: `ABI record format ${String(record.format)} is not understood by this build` }];
  const used = servicesInUse(record);
  // The VM's version values; a selector it does not name stays at the destination's oldest.
  const versionValue = (sel: string) => record.versions[sel]?.value ?? catalog.versions.get(sel)?.decl.values[0]?.value;
  // Every call of the destination by wire identity, for naming calls in messages.
  const nameById = new Map([...catalog.calls.values()].map(({ decl }) => [callId(decl), decl.name]));

  for (const [name, use] of Object.entries(record.features)) {
    if (!use.enabled) continue; // off stays off: a build without it, or with it, is fine
    subject = `feature ${name}`;
    service = use.service;
    const have = catalog.features.get(name);
    if (!catalog.services.has(use.service)) {
      problems.push(`feature '${name}' is enabled in the VM but the build has no ${use.service}`);
      continue;
    }
    if (!have || have.service.name !== use.service) {
      const svc = catalog.services.get(use.service)!;
      problems.push(`feature '${name}' is enabled in the VM but ${use.service}@${svc.version} does not offer it`);
      continue;
    }
    // Calls are compared by wire identity (conduit:id): a call renamed in place is the same call.
    const now = exposedCalls(catalog, name, versionValue);
    const was = [...use.calls].sort(byCodeUnits);
    const added = now.filter((c) => !was.includes(c));
    const removed = was.filter((c) => !now.includes(c));
    if (added.length || removed.length) {
      const recordedName = new Map(Object.entries(record.behaviour?.[name]?.ids ?? {}).map(([n, id]) => [id, n]));
      problems.push(
        `feature '${name}' of ${use.service}@${have.service.version} answers different calls than the VM saw` +
          (added.length ? `; adds ${added.map((id) => callLabel(id, nameById.get(id))).join(', ')}` : '') +
          (removed.length ? `; lacks ${removed.map((id) => callLabel(id, recordedName.get(id) ?? nameById.get(id))).join(', ')}` : ''),
      );
    }
  }

  for (const pkg of used) {
    const svc = catalog.services.get(pkg);
    const was = record.services[pkg];
    if (!svc || !was) continue; // reported per feature above
    subject = `service ${pkg}`;
    service = pkg;
    if (was.state) {
      const st = svc.surface.state;
      if (!st || st.id !== was.state.id) {
        problems.push(`service ${pkg}@${svc.version} does not keep state '${was.state.id}' the VM has (it keeps ${st ? `'${st.id}'` : 'none'})`);
      } else if (was.state.version > st.version || was.state.version < (st.minReadable ?? st.version)) {
        problems.push(
          `service ${pkg}@${svc.version} reads ${st.id} state schema ${st.minReadable ?? st.version}..${st.version}; the VM's is ${was.state.version}`,
        );
      }
    }
  }

  for (const [selector, use] of Object.entries(record.versions)) {
    if (!used.has(use.service)) continue; // the service is inert for this VM
    subject = `version ${selector}`;
    service = use.service;
    const have = catalog.versions.get(selector);
    if (!have) {
      // A destination without the selector (a release from before it existed) behaves one fixed
      // way. What the VM sees at its selection is in its behaviour transcripts, so with them the
      // replay below decides: a VM at the value that release always answered moves back, one at
      // another value is refused naming the call that answers differently. Without transcripts
      // nothing can tell, and the selector's absence is the refusal.
      const replayed = hv !== undefined && Object.entries(record.features).some(([f, u]) => u.enabled && u.service === use.service && record.behaviour?.[f]);
      if (catalog.services.has(use.service) && !replayed) problems.push(`${use.service} no longer offers a ${selector} version selector`);
      continue;
    }
    const offered = have.decl.values.find((v) => v.name === use.name);
    if (!offered || offered.value !== use.value) {
      const max = have.decl.values[have.decl.values.length - 1]!;
      problems.push(
        `${selector} version ${use.name} (${hex(use.value)}) is not offered by ${have.service.name}@${have.service.version}` +
          ` (offers ${have.decl.values.map((v) => v.name).join(', ')}; maximum ${max.name})`,
      );
    }
  }

  if (record.continuations) {
    // Every preemptible call the VM has, by wire identity: the destination must use the same
    // encoding for it (a task the guest descheduled mid-call holds it in guest memory, so this
    // holds whether or not a vCPU was mid-call at the snapshot), and must preempt it at all.
    const destination = new Map<string, { decl: CallDecl; k: ContinuationDecl | undefined; owner: string }>();
    for (const [name, use] of Object.entries(record.features)) {
      if (!use.enabled || !catalog.features.has(name)) continue;
      for (const decl of exposedDecls(catalog, name, versionValue)) {
        const owned = catalog.continuations.get(decl.name);
        destination.set(callId(decl), { decl, k: owned?.decl, owner: catalog.calls.get(decl.name)!.service.name });
      }
    }
    for (const [id, was] of Object.entries(record.continuations)) {
      if (!record.features[was.feature]?.enabled) continue;
      const here = destination.get(id);
      subject = `call ${was.call}`;
      service = record.features[was.feature]!.service;
      if (!here) continue; // the call itself is missing: reported per feature above
      const a = continuationText(was);
      const b = continuationText(here.k);
      if (a !== b) {
        const svc = catalog.services.get(here.owner)!;
        problems.push(`call ${callLabel(id, here.decl.name)} of ${svc.name}@${svc.version} continues differently than the VM's: ${a} → ${b}`);
      }
    }
    // A call the VM saw finish in one leg that this build may preempt is not refused here: the VM
    // holds no continuation of it, and the first leg's registers mean what they meant (all
    // continuation bits zero); what the call answers is compared by the behaviour replay.
  }

  if (hv && record.behaviour && list.length === 0) list.push(...checkBehaviour(record, hv));

  let here: VmAbi | undefined;
  for (const [idHex, valueHex] of Object.entries(record.registers)) {
    const entry = catalog.registerById.get(BigInt(idHex));
    if (!entry || entry.kind === 'version') continue; // selections are checked above, by meaning
    subject = `register ${entry.name}`;
    service = registerOwner(catalog, entry.id);
    const value = BigInt(valueHex);
    if (entry.kind === 'constant') {
      if (!entry.decl.accepts.includes(value)) {
        problems.push(
          `${entry.name} (${idHex}) = ${valueHex} cannot be provided by this build (it provides ${hex(entry.decl.value)}; accepts ${entry.decl.accepts.map((v) => hex(v)).join(', ')})`,
        );
      }
      continue;
    }
    // A bitmap: the features are checked above by name; the bits a VMM reads must mean the same
    // (a feature moved to another bit would make a VMM's saved value select another feature).
    // Bits this build does not map are left out: a feature it lacks is reported above.
    here ??= abiFromRecord(record, catalog);
    const now = here.getOneReg(entry.id);
    const was = value & entry.mask;
    if (now !== was) {
      const differing = [...entry.bits].filter(([bit]) => (((now ^ was) >> BigInt(bit)) & 1n) === 1n);
      problems.push(
        `${entry.name} (${idHex}) = ${valueHex} in the VM → ${hex(now)} on this build for the same features` +
          ` (here ${differing.map(([bit, f]) => `bit ${bit} is '${f}'`).join(', ')})`,
      );
    }
  }
  return list;
}

/** The service declaring a firmware register (the first, for a bitmap several share). */
function registerOwner(catalog: AbiCatalog, id: bigint): string | undefined {
  for (const s of catalog.services.values()) {
    const { surface } = s;
    if (surface.constants?.some((c) => c.id === id)) return s.name;
    if (surface.features.some((f) => f.register?.id === id)) return s.name;
    if (surface.versions?.some((v) => v.register?.id === id)) return s.name;
  }
  return undefined;
}

/**
 * The recorded transcript of one feature with each call under its name in `catalog`: found by
 * the call id the record carries (a call renamed in place is found under its new name). A record
 * written before records carried ids names calls only: a name the destination lacks is matched
 * when exactly one call of the feature is left unmatched on each side (after the surface checks,
 * the feature gives the same call ids), and refused otherwise.
 */
function recordedUnderDestinationNames(
  feature: string,
  was: VmBehaviour[string],
  catalog: AbiCatalog,
  exposed: readonly CallDecl[],
): { transcript: Transcript; problem?: string } {
  const byId = new Map(exposed.map((d) => [callId(d), d.name]));
  const out: Record<string, Transcript[string]> = {};
  const unmatched: string[] = [];
  for (const [name, probes] of Object.entries(was.calls)) {
    const id = was.ids?.[name];
    const here = id !== undefined ? byId.get(id) : catalog.calls.get(name)?.decl.feature === feature ? name : undefined;
    if (here !== undefined) out[here] = probes;
    else if (id === undefined) unmatched.push(name);
    // an id the feature no longer gives: the call-set check reports it
  }
  if (unmatched.length === 0) return { transcript: out };
  const left = exposed.map((d) => d.name).filter((n) => !(n in out));
  if (unmatched.length === 1 && left.length === 1) {
    out[left[0]!] = was.calls[unmatched[0]!]!;
    return { transcript: out };
  }
  return {
    transcript: out,
    problem: `feature '${feature}': the VM's record names ${unmatched.join(', ')}, which this build does not have, without call ids (a record from an older build): cannot tell which of ${left.join(', ') || 'no call'} ${unmatched.length === 1 ? 'it is' : 'they are'}`,
  };
}

/**
 * Replays the record's behaviour on `hv` (after the surface checks passed, so every feature the
 * VM has on exists there with the same calls). Features whose digest matches are skipped.
 */
function checkBehaviour(record: AbiRecord, hv: AbiBuild): AbiProblem[] {
  const abi = abiFromRecord(record, hv.catalog);
  const features = abi.features();
  const versions = abi.versions();
  const here = hv.behaviour.vmBehaviour(features, versions);
  const out: AbiProblem[] = [];
  for (const [name, was] of Object.entries(record.behaviour ?? {})) {
    if (!record.features[name]?.enabled || here[name]?.digest === was.digest) continue;
    const owner = hv.catalog.features.get(name)?.service;
    const service = owner?.name ?? record.features[name]!.service;
    const exposed = exposedDecls(hv.catalog, name, (sel) => abi.versionValue(sel));
    const { transcript, problem } = recordedUnderDestinationNames(name, was, hv.catalog, exposed);
    if (problem) out.push({ subject: `feature ${name}`, message: problem, service });
    for (const d of hv.behaviour.replayTranscript({ label: 'vm', overrides: { features, versions } }, transcript)) {
      out.push({
        subject: `call ${d.call}`,
        message: `feature '${name}'${owner ? ` of ${owner.name}@${owner.version}` : ''} answers differently than the VM saw: ${formatDifference(d)}`,
        service,
      });
    }
  }
  return out;
}

/** The VM ABI a destination build gives a VM with this record (call checkRecord first). */
export function abiFromRecord(record: AbiRecord, catalog: AbiCatalog): VmAbi {
  const features: Record<string, boolean> = {};
  for (const [name, use] of Object.entries(record.features)) features[name] = use.enabled;
  const versions: Record<string, string> = {};
  // A selector the destination does not have is not selected there (checkRecord replays it).
  for (const [name, use] of Object.entries(record.versions)) if (catalog.versions.has(name)) versions[name] = use.name;
  return VmAbi.fromSelections(catalog, features, versions);
}
