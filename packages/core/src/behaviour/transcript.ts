import { ServiceFailure } from '../errors.js';
import { createHash } from 'node:crypto';
import type { ResultDecl } from '../abi/signature.js';
import type { CallDecl } from '../abi/surface.js';
import type {
  BehaviourDifference,
  BehaviourOracle,
  CallTranscript,
  ProbeConfig,
  ServiceBehaviour,
  Transcript,
  VmBehaviour,
} from '../abi/behaviour.js';
import { callExposed } from '../abi/exposure.js';
import type { Hypervisor } from '../hypervisor.js';
import type { ConduitDefinition } from '../router/conduits.js';
import type { ServicePlugin } from '../plugin/service.js';
import type { Vm } from '../vm.js';
import { PROBE_RAM_BASE, ProbeMachine } from './probe-machine.js';
import { hexOf, idRegister, parseProbe, probesFor, type Probe } from './probes.js';

/**
 * Behaviour transcripts: what each call answers to each of its probes, run through the real
 * router and handlers on the probe machine. One output is one line of canonical text:
 *
 *   x0=0x0 x1=random:0xffffffff x2=0x0 x3=0x0 | power-on(1,0x0,0x0) | mem+0x1000=0a0b0c0d
 *
 * declared result registers (random ones as the bits that may be set, `time` and `host` ones
 * by kind), then the machine side effects in order, then the RAM the call changed (offsets from
 * the start of RAM). A handler that throws is recorded as `threw: …`.
 */

// The transcript types live in the ABI layer (abi/behaviour.ts), which keeps and compares them.
export { formatDifference } from '../abi/behaviour.js';
export type { BehaviourDifference, CallTranscript, ProbeConfig, ServiceBehaviour, Transcript, VmBehaviour } from '../abi/behaviour.js';

const defaultResults = (conduit: ConduitDefinition): ResultDecl[] => conduit.resultRegisters.map((reg) => ({ reg }));
export const resultsOf = (call: CallDecl, conduit: ConduitDefinition): readonly ResultDecl[] => call.signature?.results ?? defaultResults(conduit);

/** Largest memory change written out byte for byte; larger ones are summarised by length and hash. */
const MAX_MEM_BYTES = 64;

/** Canonical text of what the guest sees after the call. */
function observe(machine: ProbeMachine, results: readonly ResultDecl[], fill: Probe['fill']): string {
  const regs = machine.vcpus[0]!.regs;
  const parts: string[] = [];
  for (const r of results) {
    const v = regs.get(r.reg);
    const kind = r.kind ?? 'deterministic';
    parts.push(`x${r.reg}=${kind === 'deterministic' ? hexOf(v) : kind === 'random' ? `random:${hexOf(v)}` : kind}`);
  }
  const out = [parts.join(' '), ...machine.effects];
  const mem = memoryChanges(machine.ram, fill);
  if (mem) out.push(mem);
  return out.join(' | ');
}

/** RAM bytes that differ from what the probe set up (zeros, and the fill). */
function memoryChanges(ram: Uint8Array, fill: Probe['fill']): string {
  const start = fill ? Number(fill.gpa - PROBE_RAM_BASE) : 0;
  const end = fill ? start + fill.size : 0;
  const sample = fill?.bytes !== undefined ? Buffer.from(fill.bytes, 'hex') : undefined;
  const expected = (i: number) => (i >= start && i < end ? (sample ? sample[i - start]! : fill!.byte) : 0);
  const words = new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength >>> 2);
  const runs: string[] = [];
  let i = 0;
  while (i < ram.length) {
    // Fast path: skip zero words outside the fill.
    if ((i & 3) === 0 && (i + 4 <= start || i >= end) && words[i >>> 2] === 0) {
      i += 4;
      continue;
    }
    if (ram[i] === expected(i)) {
      i++;
      continue;
    }
    let j = i;
    while (j < ram.length && ram[j] !== expected(j)) j++;
    const bytes = ram.subarray(i, j);
    runs.push(
      bytes.length <= MAX_MEM_BYTES
        ? `mem+${hexOf(BigInt(i))}=${Buffer.from(bytes).toString('hex')}`
        : `mem+${hexOf(BigInt(i))}[${bytes.length}]#${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`,
    );
    i = j;
  }
  return runs.join(' ');
}

/**
 * Runs probes against one VM configuration, on one VM. Before a probe of a call whose service
 * keeps per-VM state, every service's state is created afresh (what a new VM starts with), so no
 * probe sees another's leftovers and a transcript does not depend on probe order.
 */
export class ProbeRunner {
  readonly machine = new ProbeMachine();
  private shared: Vm | undefined;

  constructor(
    readonly hv: Hypervisor,
    readonly config: ProbeConfig,
  ) {}

  private vm(service: ServicePlugin<any>): Vm {
    let vm = this.shared;
    if (!vm) {
      vm = this.shared = this.hv.createVm(this.config.overrides);
      vm.attachMachine(this.machine);
      vm.start();
    } else if (service.state) {
      vm.initialiseServices();
    }
    return vm;
  }

  private abi: Vm['abi'] | undefined;

  /** Is the call exposed in this configuration? */
  exposes(call: CallDecl): boolean {
    this.abi ??= this.hv.createVm(this.config.overrides).abi;
    const abi = this.abi;
    return callExposed(call, this.hv.catalog, (sel) => abi.versionValue(sel), (f) => abi.isEnabled(f));
  }

  /** Sets up the machine for a probe: registers (the rest zero) and argument memory. */
  private load(call: CallDecl, conduit: ConduitDefinition, probe: Probe, background?: (reg: number) => bigint): void {
    const m = this.machine;
    m.reset();
    const regs = m.vcpus[0]!.regs;
    if (background) for (let r = 0; r < 31; r++) regs.set(r, background(r));
    regs.set(idRegister(conduit), BigInt(probe.id >>> 0));
    for (const [r, v] of probe.regs) regs.set(r, v);
    if (probe.fill) {
      const at = Number(probe.fill.gpa - PROBE_RAM_BASE);
      if (probe.fill.bytes !== undefined) m.ram.set(Buffer.from(probe.fill.bytes, 'hex'), at);
      else m.ram.fill(probe.fill.byte, at, at + probe.fill.size);
    }
    (m.vcpus[0] as { viaSmc?: boolean }).viaSmc = probe.smc;
  }

  /** One probe: its canonical output. `background` fills the registers the probe does not set. */
  run(call: CallDecl, probe: Probe, background?: (reg: number) => bigint): string {
    const { service } = this.hv.catalog.calls.get(call.name)!;
    const conduit = this.hv.conduits.get(call.conduit)!;
    const vm = this.vm(service);
    this.load(call, conduit, probe, background);
    let rewind: number;
    try {
      rewind = vm.dispatch(conduit, this.machine.vcpus[0]!);
    } catch (thrown) {
      // The dispatcher wraps what a handler throws (router.ts): record the handler's own error.
      const e = thrown instanceof ServiceFailure ? thrown.cause : thrown;
      return `threw: ${(e as Error).name}: ${(e as Error).message}`;
    }
    const out = observe(this.machine, resultsOf(call, conduit), probe.fill);
    if (rewind === 0) return out;
    // Preempted: the continuation is behaviour too (its encoding is ABI), recorded as the
    // registers its declared fields live in, as the first leg left them.
    const fields = this.hv.catalog.continuations.get(call.name)?.decl.encoding ?? [];
    const regs = this.machine.vcpus[0]!.regs;
    const rs = [...new Set(fields.map((f) => f.reg))].sort((a, b) => a - b);
    return `${out} | continue(${rs.map((r) => `x${r}=${hexOf(regs.get(r))}`).join(' ')})`;
  }

  /** Every probe of a call. */
  transcribe(call: CallDecl): CallTranscript {
    const conduit = this.hv.conduits.get(call.conduit)!;
    const out: Record<string, string> = {};
    for (const p of probesFor(call, conduit)) out[p.label] = this.run(call, p);
    return out;
  }

  /** Replays a recorded probe label (from any build) on this one. */
  replay(call: CallDecl, label: string): string {
    return this.run(call, parseProbe(label, call));
  }
}

/**
 * The configurations a service's behaviour is recorded under: the build's default VM; each
 * other value of each of the service's version selectors; each feature of the build turned
 * the other way (a call may read another service's feature, as KVM_FEATURES does).
 */
export function behaviourConfigs(hv: Hypervisor, service: ServicePlugin<any>): ProbeConfig[] {
  const configs: ProbeConfig[] = [{ label: 'default', overrides: {} }];
  for (const sel of service.surface.versions ?? []) {
    for (const v of sel.values) if (v.name !== sel.default) configs.push({ label: `${sel.name}=${v.name}`, overrides: { versions: { [sel.name]: v.name } } });
  }
  for (const [name, { decl }] of hv.catalog.features) {
    const on = decl.default === 'opt-in';
    configs.push({ label: `${name}=${on ? 'on' : 'off'}`, overrides: { features: { [name]: on } } });
  }
  return configs;
}

/**
 * A service's behaviour in a build: the default VM's transcript of every call it exposes, then
 * for each other configuration only what differs (calls it newly exposes, probes that answer
 * differently). Calls a configuration does not expose are left out: the router answers those.
 */
export function serviceBehaviour(hv: Hypervisor, service: ServicePlugin<any>): ServiceBehaviour {
  const out: Record<string, Transcript> = {};
  let base: Transcript = {};
  for (const config of behaviourConfigs(hv, service)) {
    const runner = new ProbeRunner(hv, config);
    const t: Record<string, CallTranscript> = {};
    for (const call of service.surface.calls) {
      if (!runner.exposes(call)) continue;
      const now = runner.transcribe(call);
      if (config.label === 'default') {
        t[call.name] = now;
        continue;
      }
      const was = base[call.name];
      const diff = Object.fromEntries(Object.entries(now).filter(([label, o]) => was?.[label] !== o));
      if (Object.keys(diff).length) t[call.name] = diff;
    }
    if (config.label === 'default') base = t;
    if (config.label === 'default' || Object.keys(t).length) out[config.label] = t;
  }
  return out;
}

/** Per-build cache: transcripts are pure functions of the composed build. */
const buildCache = new WeakMap<Hypervisor, Map<string, unknown>>();
function cached<T>(hv: Hypervisor, key: string, make: () => T): T {
  let m = buildCache.get(hv);
  if (!m) buildCache.set(hv, (m = new Map()));
  if (!m.has(key)) m.set(key, make());
  return m.get(key) as T;
}

export function serviceBehaviourCached(hv: Hypervisor, service: ServicePlugin<any>): ServiceBehaviour {
  return cached(hv, `service:${service.name}`, () => serviceBehaviour(hv, service));
}

export const transcriptDigest = (t: Transcript): string => {
  const h = createHash('sha256');
  for (const call of Object.keys(t).sort()) {
    h.update(`${call}\n`);
    const c = t[call]!;
    for (const label of Object.keys(c).sort()) h.update(`${label}\t${c[label]}\n`);
  }
  return h.digest('hex');
};

/** The behaviour of a VM with these selections on this build (cached per selection). */
export function vmBehaviour(hv: Hypervisor, features: Readonly<Record<string, boolean>>, versions: Readonly<Record<string, string>>): VmBehaviour {
  const key = `vm:${JSON.stringify(Object.entries(features).sort())}:${JSON.stringify(Object.entries(versions).sort())}`;
  return cached(hv, key, () => {
    const runner = new ProbeRunner(hv, { label: 'vm', overrides: { features, versions } });
    const out: Record<string, { digest: string; calls: Transcript }> = {};
    for (const [name] of hv.catalog.features) {
      if (!features[name]) continue;
      const calls: Record<string, CallTranscript> = {};
      for (const { decl } of hv.catalog.calls.values()) {
        if (decl.feature !== name || !runner.exposes(decl)) continue;
        calls[decl.name] = runner.transcribe(decl);
      }
      out[name] = { digest: transcriptDigest(calls), calls };
    }
    return out;
  });
}


/**
 * Replays every recorded probe of `recorded` on `hv` under `config`, returning the first
 * differing probe of each call (recorded order). Calls the build does not have, or does not
 * expose, are not behaviour differences: the surface checks report those.
 */
export function replayTranscript(hv: Hypervisor, config: ProbeConfig, recorded: Transcript): BehaviourDifference[] {
  const runner = new ProbeRunner(hv, config);
  const out: BehaviourDifference[] = [];
  for (const [name, probes] of Object.entries(recorded)) {
    const call = hv.catalog.calls.get(name)?.decl;
    if (!call || !runner.exposes(call)) continue;
    for (const [label, was] of Object.entries(probes)) {
      let now: string;
      try {
        now = runner.replay(call, label);
      } catch (e) {
        now = `unreadable probe: ${(e as Error).message}`;
      }
      if (now !== was) {
        out.push({ ...(config.label !== 'vm' ? { config: config.label } : {}), call: name, probe: label, was, now });
        break;
      }
    }
  }
  return out;
}

/**
 * Replays a service's recorded behaviour (its released abi.json) on a build containing the new
 * version of the service: configurations the build can still make, each call and probe recorded.
 * A non-default configuration's transcript holds only differences, so its other probes are
 * expected to answer as in the default configuration.
 */
export function replayServiceBehaviour(hv: Hypervisor, recorded: ServiceBehaviour): BehaviourDifference[] {
  const base = recorded.default ?? {};
  const out: BehaviourDifference[] = [];
  for (const [label, diffs] of Object.entries(recorded)) {
    const overrides = parseConfigLabel(label);
    if (!overrides || !configFits(hv, overrides)) continue; // a removed version or feature: the surface diff says so
    const expect: Record<string, Record<string, string>> = {};
    for (const [call, probes] of Object.entries(base)) expect[call] = { ...probes };
    for (const [call, probes] of Object.entries(diffs)) expect[call] = { ...(expect[call] ?? {}), ...probes };
    // Calls a non-default configuration does not list may simply be unexposed there: replay only exposed ones.
    out.push(...replayTranscript(hv, { label, overrides }, label === 'default' ? base : expect));
  }
  return out;
}

/** `default`, `psci=1.0`, `trng=off` → overrides. */
export function parseConfigLabel(label: string): ProbeConfig['overrides'] | undefined {
  if (label === 'default') return {};
  const m = /^([\w.-]+)=(.+)$/.exec(label);
  if (!m) return undefined;
  if (m[2] === 'on' || m[2] === 'off') return { features: { [m[1]!]: m[2] === 'on' } };
  return { versions: { [m[1]!]: m[2]! } };
}

function configFits(hv: Hypervisor, o: ProbeConfig['overrides']): boolean {
  for (const f of Object.keys(o.features ?? {})) if (!hv.catalog.features.has(f)) return false;
  for (const [sel, v] of Object.entries(o.versions ?? {})) if (!hv.catalog.versions.get(sel)?.decl.values.some((x) => x.name === v)) return false;
  return true;
}

/** The ABI layer's view of a build's behaviour (abi/behaviour.ts), answered by the functions above. */
export function behaviourOracle(hv: Hypervisor): BehaviourOracle {
  const oracle: BehaviourOracle = {
    serviceBehaviour: (service) => serviceBehaviourCached(hv, hv.catalog.services.get(service.name) ?? (service as ServicePlugin<any>)),
    vmBehaviour: (features, versions) => vmBehaviour(hv, features, versions),
    replayTranscript: (config, recorded) => replayTranscript(hv, config, recorded),
    replayServiceBehaviour: (recorded) => replayServiceBehaviour(hv, recorded),
  };
  return Object.freeze(oracle);
}
