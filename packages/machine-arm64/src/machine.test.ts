import { describe, expect, it } from 'vitest';
import type { RunResult } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { bootTestGuest } from './testing/guests.js';

const boot = bootTestGuest;

describe('arm64 machine: boot and console', () => {
  it('runs the hello guest to SYSTEM_OFF', () => {
    const { m, router, console } = boot('hello');
    const r = m.run();
    expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    expect(router.started).toBe(1);
    expect(console()).toBe('hello from plugvisor arm64\nx0=0 mpidr=80000000 el=1\nsmccc version 10001\n');
    m.dispose();
  });
});

describe('arm64 machine: vCPUs', () => {
  it('gives each vCPU a KVM-style MPIDR and finds vCPUs by affinity', () => {
    const m = new Arm64Machine({ vcpus: 20, memSize: 1 << 20, console: () => {} });
    expect(m.affinityOf(0)).toBe(0n);
    expect(m.affinityOf(1)).toBe(1n);
    expect(m.affinityOf(17)).toBe(0x101n);
    expect(m.vcpuByAffinity(0x101n)).toBe(17);
    expect(m.vcpuByAffinity(0x8000_0101n)).toBe(17); // RES1 bit 31 as read from MPIDR_EL1
    expect(m.vcpuByAffinity(0x10n)).toBe(-1);
    expect(m.powerState(0)).toBe('off');
    m.dispose();
  });

  it('schedules fairly: two vCPUs spinning on each other\'s flags both finish', () => {
    const { m, console } = boot('smp', { vcpus: 2 });
    const r = m.run();
    expect(r.kind).toBe('system-event');
    expect(console()).toBe(
      'cpu0: starting cpu1\ncpu1 up: mpidr=80000001 context=1234\ncpu0: CPU_ON returned 0\n' +
        'cpu0: cpu1 is alive\ncpu1 saw go\ncpu0: done\n',
    );
    expect(m.powerState(1)).toBe('on');
    m.dispose();
  });

  it('reports a hang when every powered-on vCPU waits in WFI with nothing pending', () => {
    const { m, console } = boot('hello', { ignoreSystemOff: true });
    const r = m.run();
    expect(r).toEqual({ kind: 'hang', message: 'all 1 powered-on vCPU(s) wait for an interrupt and none is pending' });
    expect(console()).toContain('smccc version 10001');
    m.dispose();
  });
});

describe('arm64 machine: guest faults', () => {
  const cases: [number, RegExp][] = [
    [0, /guest fault on vCPU 0 at PC 0x4000[0-9a-f]+: read from unmapped memory at 0x10000000 \(size 4\): outside RAM and devices/],
    [1, /guest fault on vCPU 0 at PC 0x4000[0-9a-f]+: unhandled synchronous exception \(ESR 0x2000000\): VBAR_EL1 is 0/],
    // A handler that faults again recurses as on hardware (the CPU model takes each UNDEF
    // itself) until its stack leaves RAM: the write below RAM's base is the fault.
    [2, /guest fault on vCPU 0 at PC 0x4000[0-9a-f]+: write to unmapped memory at 0x3fff[0-9a-f]+ \(size \d+\): outside RAM and devices/],
  ];
  for (const [mode, message] of cases) {
    it(`stops with vCPU, PC and cause (mode ${mode})`, () => {
      const { m, console } = boot('fault', { mode });
      const r = m.run();
      expect(r.kind).toBe('fault');
      if (r.kind !== 'fault') return;
      expect(r.fault.message).toMatch(message);
      expect(r.fault.vcpu).toBe(0);
      expect(console()).not.toContain('still alive');
      m.dispose();
    });
  }
});

describe('arm64 machine: traps and exception injection', () => {
  it('injects UNDEF, answers SMC #1 with -1, delivers SVC, Xen calls and IRQs honouring PSTATE.I', () => {
    // the guest's handler skips the instruction at ELR_EL1: the legacy HVC rule (traps.ts), which
    // VMs restored from snapshots taken before personalities keep
    const { m, router, console } = boot('exceptions', { hvcImmediates: 'legacy' });
    const r: RunResult = m.run();
    expect(r.kind).toBe('system-event');
    const lines = console().split('\n');
    expect(lines).toEqual([
      'daif at boot 3c0',
      expect.stringMatching(/^sync exception kind=4 EC=0 ISS=0 IL=1 spsr=[0-9a-f]*3c5$/),
      'back from bad hvc',
      'smc #1 -> x0=ffffffffffffffff',
      expect.stringMatching(/^sync exception kind=4 EC=15 ISS=42 IL=1 spsr=[0-9a-f]*3c5$/),
      'back from svc',
      'xen op 7 -> 7015',
      'masked: irqs=0',
      expect.stringMatching(/^IRQ intid=31 elr=4000[0-9a-f]+$/),
      'after wfi: irqs=1 intid=31',
      expect.stringMatching(/^IRQ intid=40 elr=4000[0-9a-f]+$/),
      'unmasked: irqs=2 intid=40',
      expect.stringMatching(/^IRQ intid=33 elr=4000[0-9a-f]+$/),
      'spin: irqs=3 intid=33',
      '',
    ]);
    // SMC #1 never reached the router; HVC #0x123 neither.
    expect(router.calls.filter((c) => c.conduit === 'xen')).toEqual([{ conduit: 'xen', id: 7, vcpu: 0 }]);
    m.dispose();
  });
});

describe('arm64 machine: hypercalls with the MMU on', () => {
  it('reads the HVC immediate through the guest\'s translation: Xen, SMCCC and UNDEF from an aliased virtual address', () => {
    const { m, router, console } = boot('mmu-alias', { hvcImmediates: 'legacy' }); // its handler skips ELR_EL1's instruction
    const r = m.run();
    expect(r, console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    // `aliased` ran 0x4000_0000 above its physical address, where RAM is not
    const at = /running at ([0-9a-f]+)/.exec(console());
    expect(BigInt(`0x${at?.[1]}`)).toBeGreaterThanOrEqual(0x8000_0000n);
    // HVC #0xEA1 reached the Xen conduit (the stand-in answers op 7 with 7015), HVC #0 SMCCC
    expect(router.calls.filter((c) => c.conduit === 'xen')).toEqual([{ conduit: 'xen', id: 7, vcpu: 0 }]);
    expect(router.reports.slice(0, 2)).toEqual([7015n, 0x10001n]);
    // HVC #0x123 was UNDEFINED at its virtual address
    expect(router.reports[2]).toBeGreaterThanOrEqual(0x8000_0000n);
    m.dispose();
  });
});
