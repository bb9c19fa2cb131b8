import { describe, expect, it } from 'vitest';
import { Arm64Machine } from './machine.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';

function make(vcpus: number) {
  const out: string[] = [];
  const m = new Arm64Machine({ vcpus, memSize: 16 << 20, console: (b) => out.push(Buffer.from(b).toString('latin1')) });
  const router = new TestRouter(m);
  m.attach(router);
  return { m, router, text: () => out.join('') };
}

describe('arm64 machine: vCPU state save/restore', () => {
  for (const [guest, vcpus, ats] of [
    ['exceptions', 1, [1, 3, 6, 9]],
    ['smp', 2, [1]],
  ] as const) {
    for (const at of ats) {
      it(`${guest}: saved after trap ${at} and restored into a fresh machine finishes identically`, () => {
        const ref = make(vcpus);
        ref.m.boot(ref.m.loadImage(guestImage(guest)).entry);
        const full = ref.m.run();
        expect(full.kind).toBe('system-event');
        ref.m.dispose();

        const a = make(vcpus);
        a.m.boot(a.m.loadImage(guestImage(guest)).entry);
        const first = a.m.run({ pauseAfterTraps: at });
        expect(first).toEqual({ kind: 'paused', reason: 'trap budget reached' });
        const image = a.m.image();
        // The image is plain data: copy RAM so the source can go away first.
        const copy = { ...image, memory: image.memory.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) };
        const before = a.text();
        a.m.dispose();

        const out: string[] = [];
        const b = Arm64Machine.fromImage(copy, { console: (bytes) => out.push(Buffer.from(bytes).toString('latin1')) });
        const router = new TestRouter(b);
        b.attach(router);
        const rest = b.run();
        expect(rest).toEqual(full);
        expect(before + out.join('')).toBe(ref.text());
        b.dispose();
      });
    }
  }

  it('round-trips every register through a blob', () => {
    const { m } = make(1);
    m.boot(m.loadImage(guestImage('hello')).entry);
    const blob = m.saveVcpu(0);
    m.restoreVcpu(0, blob);
    expect(Buffer.from(m.saveVcpu(0))).toEqual(Buffer.from(blob));
    expect(() => m.restoreVcpu(0, blob.subarray(0, 100))).toThrow(/wrong length|truncated/);
    const bad = Uint8Array.from(blob);
    bad[8] = 9;
    expect(() => m.restoreVcpu(0, bad)).toThrow(/version 9/);
    expect(m.describe()).toMatchObject({ board: 'plugvisor-virt', ramBase: '0x40000000', ramSize: 16 << 20, vcpus: 1 });
    m.dispose();
  });
});
