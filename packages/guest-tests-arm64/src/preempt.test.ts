import { describe, expect, it } from 'vitest';
import { Hypervisor, planRestore, saveSnapshot, type ServicePlugin } from '@plugvisor/core';
import { createPreemptService, type PreemptOptions } from '@plugvisor/core/testing';
import { Arm64Machine, machineFromPlan } from '@plugvisor/machine-arm64';
import { createPsciService } from '@plugvisor/svc-psci';
import { createSmcccArchService } from '@plugvisor/svc-smccc-arch';
import { guestImage, MEM_SIZE } from './harness.js';

/**
 * A preemptible hypercall on real aarch64 code (guests/src/preempt.c): the core's test-only
 * PREEMPT_MARK does 40 units, 3 per leg; after each leg the machine rewinds the vCPU to its
 * `hvc #0xea1` with x0 = 1 | next << 6 and the guest re-executes it without knowing. The guest
 * checks every unit was done exactly once; the tests add an interrupt between legs and a
 * snapshot between legs restored into a fresh machine and VM.
 */

const PPI = 27;
const HVC_X0_AFTER_FIRST_LEG = (1n | (3n << 6n)).toString(16);

function build(options: PreemptOptions = {}): Hypervisor {
  const services: ServicePlugin<any>[] = [createSmcccArchService(), createPsciService(), createPreemptService(options)];
  return Hypervisor.compose(services, { name: 'preempt-guest' });
}

function boot(hv: Hypervisor, registerWindow?: boolean) {
  const out: string[] = [];
  const m = new Arm64Machine({ vcpus: 1, memSize: MEM_SIZE, console: (b) => out.push(Buffer.from(b).toString('latin1')), ...(registerWindow !== undefined ? { registerWindow } : {}) });
  const vm = hv.createVm({ features: { preempt: true } });
  vm.attachMachine(m);
  m.attach(vm);
  m.boot(m.loadImage(guestImage('preempt')).entry);
  return { m, vm, text: () => out.join('') };
}

describe('preemptible hypercall on arm64 (guest re-executes the HVC)', () => {
  it.each([true, false])('finishes in legs with every unit done exactly once; no interrupt, so none taken (register window: %s)', (window) => {
    let legs = 0;
    const { m, text } = boot(build({ onPreempt: () => void legs++ }), window);
    expect(m.registerTransport).toBe(window ? 'window' : 'batches');
    expect(m.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(legs).toBe(26); // 40 units, 3 a leg, twice (the second call with IRQs masked)
    expect(text()).toContain('preempt: done=40 bad=0 irqs=0 id=0 at_hvc=0 x0=0 plain=42 refused=-22');
    m.dispose();
  });

  it('an interrupt raised during a leg is taken at the rewound HVC, with the rewritten start in x0, before the next leg', () => {
    let raised = false;
    const { m, text } = boot(
      build({
        onPreempt: (vcpu) => {
          if (raised) return;
          raised = true;
          vcpu.machine.setInterrupt(vcpu.index, PPI, true);
        },
      }),
    );
    m.configureInterrupt(PPI, 'edge'); // one rising edge, one IRQ
    expect(m.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(text()).toContain(`preempt: done=40 bad=0 irqs=1 id=${PPI} at_hvc=1 x0=${HVC_X0_AFTER_FIRST_LEG} plain=42 refused=-22`);
    m.dispose();
  });

  it("an interrupt pending while the guest masks IRQs (PSTATE.I) ends no leg early, as Xen's local_events_need_delivery; it is taken once the guest unmasks", () => {
    const BUF2 = 0x40a0_0100n;
    const legsOf = new Map<bigint, number>();
    const { m, text } = boot(
      build({
        onPreempt: (vcpu) => {
          const buf = vcpu.regs.get(1);
          legsOf.set(buf, (legsOf.get(buf) ?? 0) + 1);
          // Raised during the masked call's first leg; still pending at every later check.
          if (buf === BUF2 && legsOf.get(buf) === 1) vcpu.machine.setInterrupt(vcpu.index, PPI, true);
        },
      }),
    );
    m.configureInterrupt(PPI, 'edge');
    expect(m.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    // 13 preemptions, as with no interrupt at all; were PSTATE.I ignored, every leg after the
    // first would end after one unit (37).
    expect(legsOf.get(BUF2)).toBe(13);
    expect(text()).toContain('preempt masked: done=40 bad=0 irqs_while_masked=0 irqs_after=1');
    m.dispose();
  });

  for (const pauseAt of [1, 2, 7]) {
    it(`a snapshot between legs (paused after trap ${pauseAt}) restores into a fresh machine and VM, and the call completes with each unit done once`, () => {
      const { m, vm } = boot(build());
      expect(m.run({ pauseAfterTraps: pauseAt })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
      // Between two legs: PC on the HVC, x0 = the rewritten command, the units so far done once.
      const core = (m.vcpuState(0) as unknown as { core: readonly string[] }).core.map(BigInt);
      expect(readU32(m, core[31]!)).toBe(0xd401d422); // PC
      expect(core[0]).toBe(1n | (BigInt(3 * pauseAt) << 6n));
      expect(core[16]).toBe(0x31n);
      const units = new Uint8Array(41);
      m.memory.read(0x40a0_0000n, units);
      expect([...units].filter((u) => u === 1).length).toBe(3 * pauseAt);
      expect([...units].every((u) => u <= 1)).toBe(true);
      const bytes = saveSnapshot(vm, m.image());
      m.dispose();

      const plan = planRestore(bytes, build(), { arch: 'arm64' });
      const out: string[] = [];
      const b = machineFromPlan(plan, { console: (x) => out.push(Buffer.from(x).toString('latin1')) });
      expect(b.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
      expect(out.join('')).toContain('preempt: done=40 bad=0 irqs=0 id=0 at_hvc=0 x0=0 plain=42 refused=-22');
      b.dispose();
    });
  }

  it('a pause requested inside the handler of a preempted leg takes effect between the legs, with the rewound state saved', () => {
    let machine: Arm64Machine | undefined;
    let legs = 0;
    const { m, vm } = boot(build({ onPreempt: () => void (++legs === 2 && machine!.requestPause('in handler')) }));
    machine = m;
    expect(m.run()).toEqual({ kind: 'paused', reason: 'in handler' });
    const core = (m.vcpuState(0) as unknown as { core: readonly string[] }).core.map(BigInt);
    expect(readU32(m, core[31]!)).toBe(0xd401d422);
    expect(core[0]).toBe(1n | (6n << 6n));
    const bytes = saveSnapshot(vm, m.image());
    m.dispose();
    const out: string[] = [];
    const b = machineFromPlan(planRestore(bytes, build(), { arch: 'arm64' }), { console: (x) => out.push(Buffer.from(x).toString('latin1')) });
    expect(b.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(out.join('')).toContain('preempt: done=40 bad=0 ');
    b.dispose();
  });

  it('restore of such a snapshot onto a build with another encoding, or where the call is not preemptible, is refused naming the call and both encodings', () => {
    const { m, vm } = boot(build());
    m.run({ pauseAfterTraps: 1 });
    const bytes = saveSnapshot(vm, m.image());
    m.dispose();
    const moved = build({ continuation: { call: 'PREEMPT_MARK', description: '', encoding: [{ name: 'start unit', reg: 0, shift: 8, width: 56 }], otherSubOps: { reg: 0, value: -22 } } });
    expect(() => planRestore(bytes, moved, { arch: 'arm64' })).toThrow(/PREEMPT_MARK \(xen:0x31\/0x1\).*x0\[63:6\] start unit.* → x0\[63:8\] start unit/s);
    expect(() => planRestore(bytes, build({ continuation: null, neverPreempt: true }), { arch: 'arm64' })).toThrow(/PREEMPT_MARK \(xen:0x31\/0x1\).*x0\[63:6\] start unit.* → not preemptible/s);
  });
});

function readU32(m: Arm64Machine, gpa: bigint): number {
  const b = new Uint8Array(4);
  m.memory.read(gpa, b);
  return new DataView(b.buffer).getUint32(0, true);
}
