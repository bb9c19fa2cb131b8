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

/** A backend that can run only from [0x1000, 0x3000), 4-byte aligned. */
class CheckedCpus extends FakeCpus {
  readonly asked: [number, bigint, boolean][] = [];
  entryFault(vcpu: number, entry: bigint, translated: boolean): string | undefined {
    this.asked.push([vcpu, entry, translated]);
    if (entry & 3n) return 'misaligned';
    return entry >= 0x1000n && entry < 0x3000n ? undefined : 'outside RAM';
  }
}

function checked(n: number, step: (cpu: FakeCpus, vcpu: number) => VcpuExit) {
  const cpu = new CheckedCpus(n, step);
  const rt = new MachineRuntime(cpu, n);
  cpu.runtime = rt;
  return { cpu, rt };
}

describe('machine runtime: entry points are checked once, before the backend is touched', () => {
  it('boot at an entry the backend cannot run from: the run is a guest fault naming vCPU 0 and the address; no reset, no slice', () => {
    const { cpu, rt } = checked(1, () => YIELD);
    rt.boot(0x9000n);
    const r = rt.run();
    expect(r.kind).toBe('fault');
    if (r.kind !== 'fault') return;
    expect(r.fault).toBeInstanceOf(GuestFault);
    expect(r.fault.vcpu).toBe(0);
    expect(r.fault.pc).toBe(0x9000n);
    expect(r.fault.message).toBe('guest fault on vCPU 0 at PC 0x9000: cannot start there: outside RAM');
    expect(cpu.resets).toEqual([]);
    expect(cpu.slices).toEqual([]);
  });

  it('CPU_ON to a bad entry succeeds for the caller (as KVM) and the target, now on, stops the run with its fault', () => {
    let calls = 0;
    const { cpu, rt } = checked(2, (c, v) => {
      if (v === 0 && calls++ === 0) c.runtime.powerOn(1, 0x2002n, 7n);
      return calls > 3 ? { kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } } : YIELD;
    });
    rt.boot(0x1000n);
    const r = rt.run();
    expect(r.kind === 'fault' && r.fault.message).toBe('guest fault on vCPU 1 at PC 0x2002: cannot start there: misaligned');
    expect(rt.powerState(1)).toBe('on');
    expect(cpu.resets).toEqual([[0, 0x1000n, 0n]]);
    expect(cpu.slices.every((v) => v === 0)).toBe(true);
    // Turning it off clears the fault (it can be turned on again): the run goes on.
    rt.powerOff(1);
    expect(rt.run()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
  });

  it('a reset the backend refuses with a GuestFault is the vCPU\'s fault, not an exception out of run()', () => {
    const { cpu, rt } = checked(1, () => YIELD);
    cpu.reset = () => {
      throw new GuestFault(0, 0x1000n, 'entering PSTATE 0x3c5 there failed');
    };
    rt.boot(0x1000n);
    const r = rt.run();
    expect(r.kind === 'fault' && r.fault.message).toBe('guest fault on vCPU 0 at PC 0x1000: entering PSTATE 0x3c5 there failed');
  });

  it('a restored vCPU given an entry fault reports it even when parked; the check itself is entryFault', () => {
    const { cpu, rt } = checked(1, () => YIELD);
    const fault = rt.entryFault(0, 0xffff_ffff_ffff_fff0n, true);
    expect(fault?.message).toBe('guest fault on vCPU 0 at PC 0xfffffffffffffff0: cannot start there: outside RAM');
    expect(cpu.asked.at(-1)).toEqual([0, 0xffff_ffff_ffff_fff0n, true]);
    expect(rt.entryFault(0, 0x2000n)).toBeUndefined();
    rt.restoreVcpu(0, { power: 'on', parked: true, pendingOn: null }, fault);
    const r = rt.run();
    expect(r).toEqual({ kind: 'fault', fault });
    expect(cpu.slices).toEqual([]);
  });
});
