import type { AbiCatalog } from './catalog.js';
import { formatDifference, type AbiBuild, type VmBehaviour } from './behaviour.js';
import { callExposed } from './exposure.js';
import { hex, type CallDecl } from './surface.js';
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
   * output) of each call the feature gives it, as the build that created it answered them.
   * Restore and `plugvisor check` replay these probes on the destination build.
   */
  readonly behaviour?: VmBehaviour;
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
  const out: string[] = [];
  for (const { decl } of catalog.calls.values()) {
    if (decl.feature === feature && callExposed(decl, catalog, versionValue)) out.push(callId(decl));
  }
  return out.sort();
}

/** The VM's record; with `hv` (the build the VM runs on) it also carries its behaviour transcript. */
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
  const record = { format: 1 as const, services, features, versions, registers };
  return hv ? { ...record, behaviour: hv.behaviour.vmBehaviour(abi.features(), abi.versions()) } : record;
}

/** Services whose ABI the VM uses: at least one of their features is on. */
export function servicesInUse(record: AbiRecord): Set<string> {
  const used = new Set<string>();
  for (const f of Object.values(record.features)) if (f.enabled) used.add(f.service);
  return used;
}

export const major = (version: string): string => {
  const [maj, min] = version.split('.');
  return maj === '0' ? `0.${min}` : maj!; // semver: in 0.x the minor is the breaking part
};

/** One reason a build cannot reproduce a VM's ABI; `subject` is e.g. `feature trng`. */
export interface AbiProblem {
  readonly subject: string;
  readonly message: string;
}

/**
 * Can `catalog` (the destination build) reproduce this VM's ABI exactly? Returns every
 * problem, each naming the feature, version, service or register at fault; empty = yes.
 */
export function checkRecord(record: AbiRecord, catalog: AbiCatalog, hv?: AbiBuild): string[] {
  return checkRecordDetailed(record, catalog, hv).map((p) => p.message);
}

/**
 * Every problem; with `hv` (the destination build, whose catalog `catalog` is) the behaviour the
 * record carries is replayed there too, and a call that answers any recorded probe differently
 * is a problem naming the call, the probe and old → new.
 */
export function checkRecordDetailed(record: AbiRecord, catalog: AbiCatalog, hv?: AbiBuild): AbiProblem[] {
  const list: AbiProblem[] = [];
  let subject = '';
  const problems = { push: (message: string) => list.push({ subject, message }) };
  if (record.format !== 1) return [{ subject: 'record', message: `ABI record format ${String(record.format)} is not understood by this build` }];
  const used = servicesInUse(record);
  // The VM's version values; a selector it does not name stays at the destination's oldest.
  const versionValue = (sel: string) => record.versions[sel]?.value ?? catalog.versions.get(sel)?.decl.values[0]?.value;

  for (const [name, use] of Object.entries(record.features)) {
    if (!use.enabled) continue; // off stays off: a build without it, or with it, is fine
    subject = `feature ${name}`;
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
    const now = exposedCalls(catalog, name, versionValue);
    const was = [...use.calls].sort();
    const added = now.filter((c) => !was.includes(c));
    const removed = was.filter((c) => !now.includes(c));
    if (added.length || removed.length) {
      problems.push(
        `feature '${name}' of ${use.service}@${have.service.version} answers different calls than the VM saw` +
          (added.length ? `; adds ${added.join(', ')}` : '') +
          (removed.length ? `; lacks ${removed.join(', ')}` : ''),
      );
    }
  }

  for (const pkg of used) {
    const svc = catalog.services.get(pkg);
    const was = record.services[pkg];
    if (!svc || !was) continue; // reported per feature above
    subject = `service ${pkg}`;
    if (major(svc.version) !== major(was.version)) {
      problems.push(
        `service ${pkg} ${was.version} → ${svc.version} crosses a major version: the guest ABI it gives existing VMs changed`,
      );
    }
    if (was.state) {
      const st = svc.surface.state;
      if (!st || st.id !== was.state.id) {
        problems.push(`service ${pkg}@${svc.version} does not keep state '${was.state.id}' the VM has`);
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
    const have = catalog.versions.get(selector);
    if (!have) {
      if (catalog.services.has(use.service)) problems.push(`${use.service} no longer offers a ${selector} version selector`);
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

  if (hv && record.behaviour && list.length === 0) list.push(...checkBehaviour(record, hv));

  for (const [idHex, valueHex] of Object.entries(record.registers)) {
    const entry = catalog.registerById.get(BigInt(idHex));
    if (entry?.kind !== 'constant') continue; // bitmaps and versions are checked above, by meaning
    const value = BigInt(valueHex);
    subject = `register ${entry.name}`;
    if (!entry.decl.accepts.includes(value)) {
      problems.push(
        `${entry.name} (${idHex}) = ${valueHex} cannot be provided by this build (it provides ${hex(entry.decl.value)})`,
      );
    }
  }
  return list;
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
    for (const d of hv.behaviour.replayTranscript({ label: 'vm', overrides: { features, versions } }, was.calls)) {
      out.push({
        subject: `feature ${name}`,
        message: `feature '${name}'${owner ? ` of ${owner.name}@${owner.version}` : ''} answers differently than the VM saw: ${formatDifference(d)}`,
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
  for (const [name, use] of Object.entries(record.versions)) versions[name] = use.name;
  return VmAbi.fromSelections(catalog, features, versions);
}
