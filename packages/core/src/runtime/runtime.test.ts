import { describe, expect, it } from 'vitest';
import { MachineRuntime, YIELD, HALT, type VcpuBackend, type VcpuExit } from './runtime.js';
import { StateError } from './persist.js';
import { checkPersistence } from '../testing/persistence.js';
import { GuestFault } from '../machine/run.js';

/**
 * A CPU double: each vCPU runs a script, one step per slice; `resets` records every reset to an
 * entry (what a real backend does to registers on CPU_ON).
 */
class FakeCpus implements VcpuBackend {
  readonly resets: [number, bigint, bigint][] = [];
  readonly slices: number[] = [];
  readonly pc: bigint[];
  irq: boolean[];
  stopped = -1;
  runtime!: MachineRuntime;
  constructor(
    n: number,
    private readonly step: (cpu: FakeCpus, vcpu: number) => VcpuExit,
  ) {
    this.pc = Array.from({ length: n }, () => 0n);
    this.irq = Array.from({ length: n }, () => false);
  }
  reset(vcpu: number, entry: bigint, context: bigint): void {
    this.resets.push([vcpu, entry, context]);
    this.pc[vcpu] = entry;
  }
  interruptPending(vcpu: number): boolean {
    return this.irq[vcpu]!;
  }
  runSlice(vcpu: number): VcpuExit {
    this.slices.push(vcpu);
    return this.step(this, vcpu);
  }
  stop(vcpu: number): void {
    this.stopped = vcpu;
  }
}

function machine(n: number, step: (cpu: FakeCpus, vcpu: number) => VcpuExit) {
  const cpu = new FakeCpus(n, step);
  const rt = new MachineRuntime(cpu, n);
  cpu.runtime = rt;
  return { cpu, rt };
}

/** vCPU 0 calls CPU_ON(1, 0x2000, 0x55) as a trap; vCPU 1, once reset, powers the machine off. */
const cpuOnGuest = (cpu: FakeCpus, v: number): VcpuExit => {
  const rt = cpu.runtime;
  if (v === 0) {
    if (rt.powerState(1) === 'off') {
      rt.powerOn(1, 0x2000n, 0x55n);
      rt.trapped();
      return YIELD;
    }
    return HALT;
  }
  if (cpu.pc[1] !== 0x2000n) return { kind: 'fault', fault: new GuestFault(1, cpu.pc[1]!, 'vCPU 1 runs without its CPU_ON reset') };
  return { kind: 'system-event', event: { kind: 'off', vcpu: 1, data: [] } };
};

describe('machine runtime', () => {
  it('applies a pending CPU_ON at the next safe point: reset to the entry, then the vCPU runs', () => {
    const { cpu, rt } = machine(2, cpuOnGuest);
    rt.boot(0x1000n);
    const resets: number[] = [];
    const r = rt.run({}, { vcpuReset: (i) => resets.push(i) });
    expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 1, data: [] } });
    expect(cpu.resets).toEqual([[0, 0x1000n, 0n], [1, 0x2000n, 0x55n]]);
    expect(resets).toEqual([1]);
  });

  it('a snapshot taken on the trap that called CPU_ON restores a vCPU that is reset to its entry (regression: x86 flattened on-pending to on)', () => {
    const a = machine(2, cpuOnGuest);
    a.rt.boot(0x1000n);
    expect(a.rt.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    expect(a.rt.powerState(1)).toBe('on-pending');
    const saved = JSON.parse(JSON.stringify([0, 1].map((i) => a.rt.saveVcpu(i))));
    expect(saved[1]).toEqual({ power: 'on-pending', parked: false, pendingOn: { entry: '0x2000', context: '0x55' } });

    const b = machine(2, cpuOnGuest);
    saved.forEach((s: unknown, i: number) => b.rt.restoreVcpu(i, s));
    const r = b.rt.run();
    expect(r.kind).toBe('system-event');
    expect(b.cpu.resets).toEqual([[1, 0x2000n, 0x55n]]);
  });

  it('parks a halted vCPU until an interrupt; reports a hang when nothing can wake it', () => {
    let woke = false;
    const { cpu, rt } = machine(1, (c) => {
      if (c.irq[0]) {
        woke = true;
        return { kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } };
      }
      return HALT;
    });
    rt.boot(0n);
    expect(rt.run().kind).toBe('hang');
    cpu.irq[0] = true;
    rt.interruptRaised(0);
    expect(rt.run().kind).toBe('system-event');
    expect(woke).toBe(true);
  });

  it('round-robins runnable vCPUs and ends with all-off', () => {
    let n = 0;
    const { cpu, rt } = machine(2, (c, v) => {
      if (v === 0 && c.runtime.powerState(1) === 'off' && n === 0) c.runtime.powerOn(1, 4n, 0n);
      if (++n >= 6) c.runtime.powerOff(v);
      return YIELD;
    });
    rt.boot(0n);
    expect(rt.run()).toEqual({ kind: 'all-off' });
    expect(cpu.slices.slice(0, 5)).toEqual([0, 1, 0, 1, 0]);
  });

  it('pause requests stop the running vCPU through the backend', () => {
    const { cpu, rt } = machine(1, (c) => {
      c.runtime.requestPause('snapshot');
      return YIELD;
    });
    rt.boot(0n);
    expect(rt.run()).toEqual({ kind: 'paused', reason: 'snapshot' });
    expect(cpu.stopped).toBe(0);
  });

  it('vCPU run state follows the persistence contract', () => {
    const make = () => {
      const { rt } = machine(2, () => YIELD);
      return { save: () => rt.saveVcpu(1), restore: (s: unknown) => rt.restoreVcpu(1, s) };
    };
    const problems = checkPersistence({
      make,
      samples: [
        { power: 'on-pending', parked: false, pendingOn: { entry: '0x40080000', context: '0xffffffffffffffff' } },
        { power: 'on', parked: true, pendingOn: null },
        { power: 'off', parked: false, pendingOn: null },
      ],
      corruptions: [
        { path: 'power', value: 'sleeping' },
        { path: 'pendingOn', value: null },
        { path: 'pendingOn.entry', value: 12 },
        { path: 'pendingOn.context', value: '0x1_0000' },
        { path: 'parked', value: 'yes' },
      ],
    });
    expect(problems).toEqual([]);
    const { rt } = machine(2, () => YIELD);
    expect(() => rt.restoreVcpu(1, { power: 'on-pending', parked: false, pendingOn: null })).toThrow(StateError);
    expect(() => rt.restoreVcpu(1, { power: 'on-pending', parked: false, pendingOn: null })).toThrow(/vCPU 1 run state: pendingOn/);
  });
});
