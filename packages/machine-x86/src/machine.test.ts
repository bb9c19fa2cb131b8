import { describe, expect, it } from 'vitest';
import { X86Machine } from './machine.js';
import { kvmUnavailable } from './host.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage, PARAMS } from './testing/guests.js';
import { Exit } from './machine.js';

const noKvm = kvmUnavailable();
const d = noKvm ? describe.skip : describe;
if (noKvm) describe('x86 machine', () => it.skip(`needs /dev/kvm: ${noKvm}`, () => {}));

function boot(name: string, params: bigint[] = [], opts = {}) {
  const out: number[] = [];
  const m = new X86Machine({ memSize: 4 << 20, console: (b) => out.push(...b), ...opts });
  const img = m.loadImage(guestImage(name));
  params.forEach((p, i) => m.memory.writeU64(PARAMS + BigInt(8 * i), p));
  m.boot(img.entry);
  const router = new TestRouter();
  m.attach(router);
  return { m, router, text: () => Buffer.from(out).toString('latin1') };
}

d('x86 machine on /dev/kvm', () => {
  it('boots a 64-bit guest, prints on COM1, routes a hypercall and powers off', () => {
    const { m, router, text } = boot('hello');
    try {
      const r = m.run();
      expect(r.kind).toBe('system-event');
      if (r.kind === 'system-event') expect(r.event.kind).toBe('off');
      expect(router.calls).toEqual([{ id: 0x100, rdi: 41n }]);
      expect(text()).toBe('hello from x86-64 long mode\nhypercall 0x100 -> 000000000000007c\n');
    } finally {
      m.dispose();
    }
  });

  it('reports a triple fault as a guest fault', () => {
    const { m } = boot('triple');
    try {
      const r = m.run();
      expect(r.kind).toBe('fault');
      if (r.kind === 'fault') {
        expect(r.fault.message).toMatch(/vCPU 0/);
        expect([Exit.SHUTDOWN, Exit.INTERNAL_ERROR]).toContain(r.fault.exitReason);
      }
    } finally {
      m.dispose();
    }
  });

  it('snapshots a 2-vCPU machine (vCPU 1 off) with LAPIC and mp_state, and restores it', () => {
    const { m } = boot('hello', [], { vcpus: 2 });
    try {
      expect(m.affinityOf(1)).toBe(1n);
      expect(m.vcpuByAffinity(1n)).toBe(1);
      const image = m.image();
      expect(image.vcpus.length).toBe(2);
      const b = X86Machine.fromImage({ ...image, memory: image.memory.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) }, { console: () => {} });
      try {
        expect(b.powerState(0)).toBe('on');
        expect(b.powerState(1)).toBe('off');
        expect(b.saveVcpu(1)).toBeDefined();
      } finally {
        b.dispose();
      }
    } finally {
      m.dispose();
    }
  });

  it('runs the integer loop guest', () => {
    const { m, router, text } = boot('loop', [20n, 10n]);
    try {
      const r = m.run();
      expect(r.kind).toBe('system-event');
      expect(router.calls.length).toBe(20);
      expect(text()).toMatch(/^loop: start\nresult [0-9a-f]{16}\n$/);
    } finally {
      m.dispose();
    }
  });
});

/** A router that gives the smp guest's calls their meaning through the Machine interface. */
class SmpRouter {
  readonly ids: number[] = [];
  start(): void {}
  dispatch(_c: unknown, v: import('@plugvisor/core').VcpuContext): void {
    const r = v.regs;
    const id = r.u32[0]!;
    this.ids.push(id);
    if (id === 0x104) v.machine.powerOn(1, r.u64[5]!, r.u64[4]!);
    else if (id === 0x106) v.machine.setInterrupt(v.index, Number(r.u64[5]!), true);
    else if (id === 0x107) v.machine.powerOff(v.index);
    r.u64[0] = 0n;
  }
}

d('x86 machine: vCPUs and interrupts', () => {
  it('starts a second vCPU through powerOn, schedules both at exits, and delivers an MSI vector', () => {
    const out: number[] = [];
    const m = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: (b) => out.push(...b) });
    try {
      m.boot(m.loadImage(guestImage('smp')).entry);
      const router = new SmpRouter();
      m.attach(router);
      const r = m.run();
      expect(r.kind).toBe('system-event');
      expect(Buffer.from(out).toString('latin1')).toBe('smp ok 000000005a5a1234\nirq ok 0000000000000001\n');
      expect(router.ids[0]).toBe(0x104);
      expect(router.ids).toContain(0x107);
      expect(m.powerState(1)).toBe('off');
    } finally {
      m.dispose();
    }
  });
});

d('x86 machine: a snapshot taken on the trap that called CPU_ON', () => {
  it('restores vCPU 1 still pending, with its entry and context, and it starts there (the state used to flatten on-pending to on)', () => {
    const out: number[] = [];
    const a = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: (b) => out.push(...b) });
    let image;
    try {
      a.boot(a.loadImage(guestImage('smp')).entry);
      const router = new SmpRouter();
      a.attach(router);
      expect(a.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
      expect(router.ids).toEqual([0x104]);
      expect(a.powerState(1)).toBe('on-pending');
      image = a.image();
      image = { ...image, memory: image.memory.map((r) => ({ base: r.base, bytes: new Uint8Array(r.bytes) })) };
    } finally {
      a.dispose();
    }
    const b = X86Machine.fromImage(image, { console: (x) => out.push(...x) });
    try {
      expect(b.powerState(1)).toBe('on-pending');
      const router = new SmpRouter();
      b.attach(router);
      const r = b.run();
      expect(r.kind).toBe('system-event');
      expect(Buffer.from(out).toString('latin1')).toBe('smp ok 000000005a5a1234\nirq ok 0000000000000001\n');
    } finally {
      b.dispose();
    }
  });
});
