import { readFileSync } from 'node:fs';
import { canonicalJson, serviceAbiFile } from '../abi/manifest.js';
import { checkRecord } from '../abi/record.js';
import { checkSignature } from '../abi/signature.js';
import type { CallDecl } from '../abi/surface.js';
import { behaviourConfigs, ProbeRunner, resultsOf, serviceBehaviourCached, type ProbeConfig } from '../behaviour/transcript.js';
import { idRegister, probesFor, type Probe } from '../behaviour/probes.js';
import { Hypervisor } from '../hypervisor.js';
import type { ServicePlugin, StateValue } from '../plugin/service.js';
import { decodeJson, encodeJson } from '../snapshot/stream.js';
import type { ConduitDefinition } from '../router/conduits.js';
import { RegisterFile } from '../machine/registers.js';
import { MemoryMachine } from './memory-machine.js';

/**
 * The conformance kit for service authors: checks a service package against the rules the
 * core relies on, using only the public plugin API, and runs its probe corpus to check that
 * what it answers is true. Returns problems; empty = conforms.
 *
 *   import { checkServiceConformance } from '@plugvisor/core/testing';
 *   expect(checkServiceConformance(myService(), { abiFile: 'abi.json' })).toEqual([]);
 *
 * Behaviour rules, checked on the probe machine under every configuration the transcript uses:
 *  - no probe throws (a handler failure is a bug, never an answer);
 *  - with its feature off, every call answers exactly the conduit's "not supported";
 *  - discovery calls (ARCH_FEATURES, PSCI_FEATURES, KVM_FEATURES, any a service declares) say
 *    "supported" exactly for the calls the VM has exposed;
 *  - a call reads only the registers its signature names and writes only its declared results
 *    (the arm64 machine transfers nothing else), and ignores the upper half of a u32 argument;
 *  - a feature on by default declares why (`legacy`): new ABI is opt-in.
 */
export interface ConformanceOptions {
  /** Services it requires (or that it should compose beside). */
  readonly companions?: readonly ServicePlugin<any>[];
  /** Path of the checked-in ABI manifest (`abi.json`) that must match the declaration. */
  readonly abiFile?: string;
  /**
   * Conduits beyond the core's smccc and xen that the service calls on: its machine backend's
   * `conduits` (e.g. x86Backend.conduits), composed into the build the kit checks.
   */
  readonly conduits?: readonly ConduitDefinition[];
}

/** Background for registers a probe does not set: a value a call must not read. */
const GARBAGE = (reg: number) => 0x5a5a_5a5a_0000_0000n | BigInt(0x5a00 + reg);

export function checkServiceConformance(service: ServicePlugin<any>, options: ConformanceOptions = {}): string[] {
  const problems: string[] = [];
  let hv: Hypervisor;
  try {
    hv = Hypervisor.compose([...(options.companions ?? []), service], { name: 'conformance', ...(options.conduits ? { conduits: options.conduits } : {}) });
  } catch (e) {
    return [`does not compose: ${(e as Error).message}`];
  }

  if (!/^\d+\.\d+\.\d+(-[\w.]+)?$/.test(service.version)) problems.push(`version '${service.version}' is not semver`);
  if (service.surface.features.length === 0) problems.push('declares no feature: every call must be gated by one');
  for (const f of service.surface.features) {
    if (f.default === 'legacy-opt-out' && !f.legacy?.trim()) {
      problems.push(`feature '${f.name}' is on by default but declares no 'legacy' reason: new ABI must be opt-in`);
    }
  }
  for (const c of service.surface.calls) {
    const conduit = hv.conduits.get(c.conduit)!;
    problems.push(...checkSignature(c.name, c.signature, [idRegister(conduit)]));
  }

  // Defaults and the empty record: a default VM's record is reproducible by the same build,
  // and turning every feature off must leave no call exposed.
  const vm = hv.createVm();
  const again = checkRecord(vm.record(), hv.catalog);
  if (again.length) problems.push(`a default VM's ABI record does not check against its own build: ${again.join('; ')}`);
  const off = hv.createVm({ features: Object.fromEntries(service.surface.features.map((f) => [f.name, false])) });
  off.attachMachine(new MemoryMachine());
  off.start();
  for (const c of service.surface.calls) {
    if (off.exposesCall(c.name)) problems.push(`call ${c.name} is exposed with every feature off`);
  }

  if (problems.length === 0) problems.push(...checkBehaviour(hv, service));

  // State: create → save → load round-trips exactly.
  if (service.surface.state && !service.state) problems.push('declares state but has no state handler');
  if (service.state && !service.surface.state) problems.push('has a state handler but declares no state in its surface');
  if (service.state && service.surface.state) {
    try {
      const s = vm.stateOf(service);
      const saved = service.state.save(s, vm);
      const wire = decodeJson(encodeJson(saved), 'state') as StateValue; // exactly what a snapshot carries
      const loaded = service.state.load(wire, service.surface.state.version, vm);
      if (canonicalJson(service.state.save(loaded, vm)) !== canonicalJson(saved)) problems.push('state does not round-trip through save/load');
    } catch (e) {
      problems.push(`state round trip failed: ${(e as Error).message}`);
    }
  }

  if (options.abiFile) {
    let onDisk = '';
    try {
      onDisk = readFileSync(options.abiFile, 'utf8');
    } catch {
      problems.push(`no ABI manifest at ${options.abiFile} (generate it with 'plugvisor abi --service ${service.name} --manifest > ${options.abiFile}' in the package's folder, or 'pnpm lint --fix' in the Plugvisor repository)`);
    }
    if (onDisk && onDisk !== serviceAbiFile(service, hv)) {
      problems.push(
        `${options.abiFile} is stale: the declared surface or the behaviour differs (regenerate it with 'plugvisor abi --service ${service.name} --manifest', or 'pnpm lint --fix' in the Plugvisor repository, and release the change)`,
      );
    }
  }
  return problems;
}

/** The behaviour rules (see above), under every configuration the service's transcript uses. */
function checkBehaviour(hv: Hypervisor, service: ServicePlugin<any>): string[] {
  const problems: string[] = [];
  const once = new Set<string>();
  const report = (p: string) => {
    if (!once.has(p)) problems.push(p);
    once.add(p);
  };

  // The corpus itself: no probe throws.
  const behaviour = serviceBehaviourCached(hv, service);
  for (const [config, t] of Object.entries(behaviour)) {
    for (const [call, probes] of Object.entries(t)) {
      for (const [label, out] of Object.entries(probes)) {
        if (out.startsWith('threw:')) report(`call ${call} probe [${label}]${config === 'default' ? '' : ` (${config})`} ${out}`);
      }
    }
  }

  const disciplined = new Set<string>();
  for (const config of behaviourConfigs(hv, service)) {
    const runner = new ProbeRunner(hv, config);
    const vm = hv.createVm(config.overrides);
    vm.attachMachine(new MemoryMachine());
    vm.start();
    const where = config.label === 'default' ? '' : ` (${config.label})`;

    for (const call of service.surface.calls) {
      const conduit = hv.conduits.get(call.conduit)!;
      const probes = probesFor(call, conduit);
      if (!runner.exposes(call)) {
        // Unexposed: the guest gets exactly the conduit's "not supported", whatever it passes.
        const expected = new RegisterFile(32);
        for (const p of probes.slice(0, 4)) {
          runner.run(call, p);
          const got = runner.machine.vcpus[0]!.regs;
          loadInto(expected, p, idRegister(conduit));
          conduit.notSupported(expected);
          if (!sameRegs(got, expected) || runner.machine.effects.length) report(`call ${call.name} with its feature off does not answer ${conduit.name}'s "not supported"${where}`);
        }
        continue;
      }
      // Register discipline is a property of the code: checked once, in the first configuration exposing the call.
      if (disciplined.has(call.name)) continue;
      disciplined.add(call.name);
      checkRegisterDiscipline(runner, call, probes, report);
    }

    // Discovery truthfulness, for every discovery call in the build (a service may answer
    // through another's discovery, as PV time does through ARCH_FEATURES).
    for (const { decl } of hv.catalog.calls.values()) {
      const d = decl.signature?.discovery;
      if (!d || !runner.exposes(decl)) continue;
      const conduit = hv.conduits.get(decl.conduit)!;
      const exposedName = (id: number) => [...hv.catalog.calls.values()].find((c) => c.decl.conduit === decl.conduit && idInCall(c.decl, id))?.decl.name ?? `0x${(id >>> 0).toString(16)}`;
      if (d.kind === 'query') {
        const candidates = new Set<number>([...(d.mustAnswer ?? []), 0x8400_00ff, 0xc600_0000, 0x8600_ff00]);
        for (const { decl: c } of hv.catalog.calls.values()) if (c.conduit === decl.conduit) candidates.add(c.id >>> 0);
        for (const id of candidates) {
          const out = runner.run(decl, { label: 'query', id: decl.id, regs: [[d.arg, BigInt(id)]], smc: false });
          if (out.startsWith('threw:')) continue; // reported with the corpus
          const x0 = runner.machine.vcpus[0]!.regs.u32[0]! | 0;
          const has = vm.exposes(conduit, id);
          if (x0 >= 0 && !has) report(`${decl.name} answers ${x0} ("supported") for ${exposedName(id)}, which the VM does not expose${where}`);
          if (x0 < 0 && has && d.mustAnswer?.includes(id)) report(`${decl.name} answers ${x0} for ${exposedName(id)}, which the VM exposes${where}`);
        }
      } else {
        runner.run(decl, { label: '-', id: decl.id, regs: [], smc: false });
        const regs = runner.machine.vcpus[0]!.regs;
        // A bit names a function number: on SMCCC the function is there under either calling
        // convention (bit 30, SMC64; SMCCC DEN0028 "Function Identifier" — KVM's DISCOVER_IMPL_*,
        // functions 64 and 65 of KVM_FEATURES, are the SMC64 ids 0xC6000040/41).
        const smc64 = decl.conduit === 'smccc' ? 0x4000_0000 : 0;
        d.words.forEach((reg, w) => {
          for (let bit = 0; bit < 32; bit++) {
            const id32 = (d.base + w * 32 + bit) >>> 0;
            const id = smc64 !== 0 && !vm.exposes(conduit, id32) && vm.exposes(conduit, (id32 | smc64) >>> 0) ? (id32 | smc64) >>> 0 : id32;
            const says = ((regs.u32[reg * 2]! >>> bit) & 1) === 1;
            if (says !== vm.exposes(conduit, id)) report(`${decl.name} bit ${w * 32 + bit} says ${says ? '' : 'not '}supported, but the VM ${says ? 'does not expose' : 'exposes'} ${exposedName(id)}${where}`);
          }
        });
      }
    }
  }
  return problems;
}

const idInCall = (c: CallDecl, id: number) => (c.last === undefined ? c.id >>> 0 === id >>> 0 : id >>> 0 >= c.id >>> 0 && id >>> 0 <= c.last >>> 0);

function loadInto(regs: RegisterFile, p: Probe, idReg: number): void {
  regs.u64.fill(0n);
  regs.set(idReg, BigInt(p.id >>> 0));
  for (const [r, v] of p.regs) regs.set(r, v);
}

const sameRegs = (a: RegisterFile, b: RegisterFile) => a.u64.every((v, i) => v === b.u64[i]);

/**
 * A call reads only its declared argument registers (the same probe with garbage in every
 * other register answers the same) and writes only its declared results; a u32 argument's
 * upper half changes nothing.
 */
function checkRegisterDiscipline(runner: ProbeRunner, call: CallDecl, probes: readonly Probe[], report: (p: string) => void): void {
  const conduit = runner.hv.conduits.get(call.conduit)!;
  const idReg = idRegister(conduit);
  const args = call.signature?.args ?? [];
  const results = new Set(resultsOf(call, conduit).map((r) => r.reg));
  for (const p of probes) {
    const clean = runner.run(call, p);
    if (clean.startsWith('threw:')) continue;
    const cleanRegs = new RegisterFile(32);
    cleanRegs.copyFrom(runner.machine.vcpus[0]!.regs);
    const dirty = runner.run(call, p, GARBAGE);
    const regs = runner.machine.vcpus[0]!.regs;
    for (let r = 0; r < 31; r++) {
      const set = p.regs.find(([reg]) => reg === r)?.[1] ?? (r === idReg ? BigInt(p.id >>> 0) : undefined);
      const dirtyBefore = set ?? GARBAGE(r);
      if (!results.has(r)) {
        if (regs.get(r) !== dirtyBefore) report(`call ${call.name} writes x${r}, which its signature does not declare as a result (probe [${p.label}])`);
        continue;
      }
      // A result the call did not write keeps the guest's value in both runs.
      const unwritten = cleanRegs.get(r) === (set ?? 0n) && regs.get(r) === dirtyBefore;
      if (!unwritten && regs.get(r) !== cleanRegs.get(r)) {
        report(`call ${call.name} reads a register its signature does not name: x${r} differs with garbage in undeclared registers (probe [${p.label}])`);
      }
    }
    if (effects(clean) !== effects(dirty)) report(`call ${call.name} reads a register its signature does not name: its effects differ with garbage in undeclared registers (probe [${p.label}])`);
  }
  // u32 arguments: the upper half is ignored. A result register the call leaves unwritten keeps
  // the guest's value (with or without the garbage), which is not a difference.
  const inputOf = (p: Probe, r: number) => p.regs.find(([reg]) => reg === r)?.[1] ?? (r === idReg ? BigInt(p.id >>> 0) : 0n);
  for (const a of args) {
    if (a.width !== 'u32') continue;
    const base = probes[0]!;
    const v = base.regs.find(([r]) => r === a.reg)![1];
    const hi: Probe = { ...base, label: `${base.label} +hi`, regs: base.regs.map(([r, x]) => [r, r === a.reg ? x | 0xa5a5_a5a5_0000_0000n : x] as const) };
    const clean = runner.run(call, base);
    const before = new RegisterFile(32);
    before.copyFrom(runner.machine.vcpus[0]!.regs);
    const dirty = runner.run(call, hi);
    const after = runner.machine.vcpus[0]!.regs;
    const differs = [...results].some((r) => {
      const unwritten = before.get(r) === inputOf(base, r) && after.get(r) === inputOf(hi, r);
      return !unwritten && before.get(r) !== after.get(r);
    });
    if (differs || effects(clean) !== effects(dirty)) report(`call ${call.name} reads the upper half of x${a.reg} (${a.name}), declared u32 (value 0x${v.toString(16)})`);
  }
}

/** The side effects and memory part of an output (everything after the registers). */
const effects = (out: string) => out.split(' | ').slice(1).join(' | ');

export type { ProbeConfig };
