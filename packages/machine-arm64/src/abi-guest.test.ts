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
import { bootTestGuest } from './testing/guests.js';
import { unicornAvailable } from './ffi/unicorn.js';

/** What the package's TestRouter answers on each conduit to the guest's calls: SMCCC_VERSION, Xen op 7 with arguments 1..5. */
const ROUTER_ANSWER: Record<string, string> = { smccc: '0x10001', xen: `0x${(7 * 1000 + 1 + 2 + 3 + 4 + 5).toString(16)}` };

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
  'traps.hvc.other.ESR_EL1',
  'traps.smc.other.x0',
];

const asHex = (v: unknown): unknown => (typeof v === 'number' ? `0x${v.toString(16)}` : v);

/** Every disagreement between the guest's report and the manifest, as "path: guest X, manifest Y". */
export function mismatches(report: string, abi: MachineAbi): string[] {
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
  expectObs('hvc-0xea1-x0', ROUTER_ANSWER[String(fact('traps.hvc.0xea1'))], `traps.hvc.0xea1 = ${String(fact('traps.hvc.0xea1'))}`);
  expectObs('hvc-other-traps', fact('traps.hvc.other.result') === 'UNDEFINED' ? '1' : '0', `traps.hvc.other.result ${String(fact('traps.hvc.other.result'))}`);
  expectObs('hvc-other-elr-minus-hvc', fact('traps.hvc.other.ELR_EL1') === 'the HVC instruction' ? '0x0' : '?', 'traps.hvc.other.ELR_EL1');
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
function runGuest(prepare?: (m: ReturnType<typeof bootTestGuest>['m']) => void): string {
  const { m, console } = bootTestGuest('abi-facts', { vcpus: 2 });
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

  it('a machine change the manifest does not declare is caught: PPI 31 made level before boot', () => {
    const report = runGuest((m) => m.configureInterrupt(31, 'level'));
    expect(mismatches(report, machineAbi())).toEqual([
      'gic.distributor.resetState.GICD_ICFGR1: the guest read 0x0, the manifest says 0x80000000',
      'gic.interrupts.31.trigger: the guest read level, the manifest says edge',
    ]);
  });

  it('a manifest change the machine does not make is caught: another CNTFRQ_EL0, HVC #0xEA1 routed to SMCCC', () => {
    const report = runGuest();
    const abi = machineAbi() as MachineAbi & { surface: { timer: Record<string, unknown>; traps: { hvc: Record<string, unknown> } } };
    abi.surface.timer.CNTFRQ_EL0 = 24_000_000;
    abi.surface.traps.hvc['0xea1'] = 'smccc';
    expect(mismatches(report, abi)).toEqual([
      'timer.CNTFRQ_EL0: the guest read 0x3b9aca0, the manifest says 0x16e3600',
      "hvc-0xea1-x0: the guest saw 0x1b67, the manifest (traps.hvc.0xea1 = smccc) implies 0x10001",
    ]);
  });
});
