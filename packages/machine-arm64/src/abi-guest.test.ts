/**
 * The machine's declared guest ABI (machineAbi(), abi.json) against what a real aarch64 guest
 * reads on this machine: guests/src/abi-facts.c on 2 vCPUs reports GIC identification and reset
 * state, trigger modes, the PL011's registers, CNTFRQ_EL0 and the INTID each EL1 timer raises,
 * the ID registers' sanitised fields, MPIDR of both vCPUs, the entry PSTATE, and what HVC/SMC
 * with each immediate do (conduit answers, ESR/ELR of an unknown HVC, x0/x1 after SMC #1). A code
 * change that alters any of these fails here unless the manifest changes with it (and then
 * lint asks for the version bump).
 */
import { describe, expect, it } from 'vitest';
import { flattenMachineFacts, type MachineAbi } from '@plugvisor/core';
import { machineAbi } from './abi.js';
import { HVC_IMMEDIATES, type HvcImmediates } from './traps.js';
import { bootTestGuest } from './testing/guests.js';
import { unicornAvailable } from './ffi/unicorn.js';

/** What the package's TestRouter answers on each conduit to the guest's calls: SMCCC_VERSION, Xen op 7 with arguments 1..5. */
const ROUTER_ANSWER: Record<string, string> = { smccc: '0x10001', xen: `0x${(7 * 1000 + 1 + 2 + 3 + 4 + 5).toString(16)}` };
/** The same for HVC #0xEA1 (x16 = 7, x0..x4 = 1..5): on SMCCC it is function id 1, which the router does not answer (-1). */
const EA1_ANSWER: Record<string, string> = { smccc: '0xffffffffffffffff', xen: ROUTER_ANSWER.xen! };

/** Every fact the guest must report. */
const REQUIRED_FACTS = [
  'boot.pstate',
  'gic.distributor.GICD_TYPER.2vcpu',
  'gic.distributor.GICD_IIDR',
  'gic.distributor.resetState.GICD_ICFGR1',
  'gic.cpuInterface.GICC_IIDR',
  'gic.interrupts.27.trigger',
  'gic.interrupts.30.trigger',
  'gic.interrupts.31.trigger',
  'gic.interrupts.33.trigger',
  'uart.UARTFR',
  'timer.CNTFRQ_EL0',
  'timer.physicalTimerIntid',
  'timer.virtualTimerIntid',
  'cpu.MPIDR_EL1.byVcpu.vcpu0',
  'cpu.MPIDR_EL1.byVcpu.vcpu1',
  'traps.smc.other.x0',
];

const asHex = (v: unknown): unknown => (typeof v === 'number' ? `0x${v.toString(16)}` : v);

/** Every disagreement between the guest's report and the manifest, as "path: guest X, manifest Y". */
export function mismatches(report: string, abi: MachineAbi, personality: HvcImmediates = 'kvm-xen'): string[] {
  const { facts } = flattenMachineFacts(abi.surface);
  const fact = (p: string) => asHex(facts.get(p)?.value);
  const out: string[] = [];
  const obs = new Map<string, string>();
  const seen = new Set<string>();
  for (const line of report.split('\n')) {
    const m = /^(fact|obs) ([^=]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, kind, key, value] = m as unknown as [string, string, string, string];
    if (kind === 'obs') {
      obs.set(key, value);
      continue;
    }
    seen.add(key);
    if (!facts.has(key)) out.push(`${key}: the guest read ${value}, the manifest has no such fact`);
    else if (fact(key) !== value) out.push(`${key}: the guest read ${value}, the manifest says ${String(fact(key))}`);
  }
  for (const p of REQUIRED_FACTS) if (!seen.has(p)) out.push(`${p}: not reported by the guest`);
  const expectObs = (key: string, want: unknown, why: string) => {
    if (obs.get(key) !== want) out.push(`${key}: the guest saw ${obs.get(key) ?? 'nothing'}, the manifest (${why}) implies ${String(want)}`);
  };
  if (obs.has('unexpected-exception') || obs.has('cpu-on-failed')) out.push(`guest: ${[...obs].map(([k, v]) => `${k}=${v}`).join(' ')}`);
  expectObs('done', '1', 'the guest ran to the end');
  expectObs('boot-x0', '0x0', `boot.x0 ${String(fact('boot.x0'))}`);
  expectObs('cpu-on-pstate', fact('boot.pstate'), 'boot.pstate');
  expectObs('cpu-on-context', '0x5eed', `boot.x0 ${String(fact('boot.x0'))}`);
  // trap routing: each immediate reaches the conduit the manifest names (its answer proves which)
  expectObs('hvc-0x0-x0', ROUTER_ANSWER[String(fact('traps.hvc.0x0'))], `traps.hvc.0x0 = ${String(fact('traps.hvc.0x0'))}`);
  expectObs('smc-0x0-x0', ROUTER_ANSWER[String(fact('traps.smc.0x0'))], `traps.smc.0x0 = ${String(fact('traps.smc.0x0'))}`);
  const ea1 = `traps.hvc.0xea1.${personality}`;
  const ea1Conduit = String(fact(ea1) ?? fact(`${ea1}.conduit`));
  expectObs('hvc-0xea1-x0', EA1_ANSWER[ea1Conduit], `${ea1} = ${ea1Conduit}`);
  // HVC #0x123 with x0 = SMCCC_VERSION, under the machine's personality: a conduit's answer
  // (traps.hvc.other.P names it) or UNDEFINED with the declared ESR_EL1 and ELR_EL1
  const other = `traps.hvc.other.${personality}`;
  const routed = fact(other);
  if (routed !== undefined) {
    expectObs('hvc-other-traps', '0', `${other} = ${String(routed)}`);
    expectObs('hvc-other-x0', ROUTER_ANSWER[String(routed)], `${other} = ${String(routed)}`);
  } else {
    const elr = fact(`${other}.ELR_EL1`);
    expectObs('hvc-other-traps', fact(`${other}.result`) === 'UNDEFINED' ? '1' : '0', `${other}.result ${String(fact(`${other}.result`))}`);
    expectObs('hvc-other-esr', fact(`${other}.ESR_EL1`), `${other}.ESR_EL1`);
    expectObs('hvc-other-elr-minus-hvc', elr === 'the HVC instruction' ? '0x0' : elr === 'past the HVC' ? '0x4' : '?', `${other}.ELR_EL1 ${String(elr)}`);
    expectObs('hvc-other-x0', '0x80000000', `${other}: x0 as the guest left it`);
  }
  expectObs('smc-other-x1', fact('traps.smc.other.otherRegisters') === 'unchanged' ? '0x55' : '?', 'traps.smc.other.otherRegisters');
  // sanitised ID register fields read 0
  for (const [path, f] of facts) {
    const m = /^cpu\.idRegisters\.sanitised\.([A-Z0-9_]+)\.clears$/.exec(path);
    if (!m) continue;
    const read = obs.get(m[1]!);
    if (read === undefined) out.push(`${m[1]}: not reported by the guest`);
    else if ((BigInt(read) & BigInt(f.value as string)) !== 0n) out.push(`${m[1]}: the guest read ${read}, the manifest says bits ${String(f.value)} read 0`);
  }
  return out;
}

/** Runs the guest on 2 vCPUs; `prepare` may change the machine first. */
function runGuest(prepare?: (m: ReturnType<typeof bootTestGuest>['m']) => void, hvcImmediates?: HvcImmediates): string {
  const { m, console } = bootTestGuest('abi-facts', { vcpus: 2, ...(hvcImmediates ? { hvcImmediates } : {}) });
  try {
    prepare?.(m);
    const r = m.run();
    expect(r, console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    return console();
  } finally {
    m.dispose();
  }
}

describe.skipIf(!unicornAvailable())('the declared machine ABI, read back by a real guest (guests/src/abi-facts.c)', () => {
  it('every fact the guest reads equals the manifest', () => {
    const report = runGuest();
    expect(mismatches(report, machineAbi())).toEqual([]);
    // the guest really reported: the facts the test relies on are in its output
    expect(report).toMatch(/^fact gic\.interrupts\.31\.trigger=edge$/m);
    expect(report).toMatch(/^fact timer\.virtualTimerIntid=0x1b$/m);
  });

  for (const personality of HVC_IMMEDIATES) {
    it(`HVC #0x123 under the '${personality}' personality is what the manifest declares for it`, () => {
      const report = runGuest(undefined, personality);
      expect(mismatches(report, machineAbi(), personality)).toEqual([]);
      // pinned beside the manifest: KVM answers SMCCC_VERSION; Xen and legacy inject UNDEFINED
      // (ESR_EL1 EC 0, IL), ELR_EL1 past the HVC for Xen, at it for legacy
      const obs = (k: string) => new RegExp(`^obs ${k}=(.*)$`, 'm').exec(report)?.[1];
      expect([obs('hvc-other-traps'), obs('hvc-other-x0'), obs('hvc-other-elr-minus-hvc')]).toEqual(
        personality.startsWith('kvm') ? ['0', '0x10001', '0x0'] : ['1', '0x80000000', personality === 'xen' ? '0x4' : '0x0'],
      );
      if (!personality.startsWith('kvm')) expect(obs('hvc-other-esr')).toBe('0x2000000');
      // HVC #0xEA1 (Xen op 7 with 1..5): SMCCC under 'kvm' (KVM ignores the immediate), Xen's conduit otherwise
      expect(obs('hvc-0xea1-x0')).toBe(personality === 'kvm' ? '0xffffffffffffffff' : ROUTER_ANSWER.xen);
    });
  }

  it("a guest told another personality's rule is caught: a 'xen' run against the 'legacy' facts", () => {
    const report = runGuest(undefined, 'xen');
    expect(mismatches(report, machineAbi(), 'legacy')).toEqual([
      "hvc-other-elr-minus-hvc: the guest saw 0x4, the manifest (traps.hvc.other.legacy.ELR_EL1 the HVC instruction) implies 0x0",
    ]);
  });

  it('a machine change the manifest does not declare is caught: PPI 31 made level before boot', () => {
    const report = runGuest((m) => m.configureInterrupt(31, 'level'));
    expect(mismatches(report, machineAbi())).toEqual([
      'gic.distributor.resetState.GICD_ICFGR1: the guest read 0x0, the manifest says 0x80000000',
      'gic.interrupts.31.trigger: the guest read level, the manifest says edge',
    ]);
  });

  it('a manifest change the machine does not make is caught: another CNTFRQ_EL0, HVC #0xEA1 routed to SMCCC', () => {
    const report = runGuest();
    const abi = machineAbi() as MachineAbi & { surface: { timer: Record<string, unknown>; traps: { hvc: Record<string, Record<string, unknown>> } } };
    abi.surface.timer.CNTFRQ_EL0 = 24_000_000;
    abi.surface.traps.hvc['0xea1']!['kvm-xen'] = 'smccc';
    expect(mismatches(report, abi)).toEqual([
      'timer.CNTFRQ_EL0: the guest read 0x3b9aca0, the manifest says 0x16e3600',
      "hvc-0xea1-x0: the guest saw 0x1b67, the manifest (traps.hvc.0xea1.kvm-xen = smccc) implies 0xffffffffffffffff",
    ]);
  });
});
