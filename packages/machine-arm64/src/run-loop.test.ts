/**
 * Run-loop correctness on real guests: no slice stop may land inside a hook (Unicorn then
 * executes the trapping instruction again), and a vCPU that cannot execute from its entry point
 * is a guest fault naming the vCPU and the address, before the engine is touched.
 */
import { describe, expect, it } from 'vitest';
import { Arm64Machine } from './machine.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';

function boot(name: string, opts: { vcpus?: number; sliceUs?: number } = {}) {
  let out = '';
  const m = new Arm64Machine({
    vcpus: opts.vcpus ?? 1,
    memSize: 16 << 20,
    console: (b) => (out += Buffer.from(b).toString('latin1')),
    ...(opts.sliceUs ? { sliceUs: opts.sliceUs } : {}),
  });
  const router = new TestRouter(m, {});
  m.attach(router);
  const img = m.loadImage(guestImage(name));
  m.boot(img.entry);
  return { m, router, console: () => out };
}

describe('arm64 run loop: a masked pending interrupt on one vCPU', () => {
  it('replays no instruction: ldr/add/str, hypercalls and console lines exact, 20 runs in a row', () => {
    const expected =
      Array.from({ length: 20 }, (_, i) => `iteration ${i * 1000}\n`).join('') + 'masked loop done: counter 20000 mismatches 0\n';
    for (let run = 0; run < 20; run++) {
      // sliceUs: the old 1-vCPU polling period (uc_emu_start's timeout); 50 µs made a stop land
      // inside a hook within a few hundred calls (counter 20001, 1 mismatch). Slices are counted now
      // and the option is not used.
      const { m, router, console } = boot('masked-counter', { sliceUs: 50 });
      const r = m.run();
      expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expect(console()).toBe(expected);
      expect(router.reports).toEqual([0n, 20000n, 1n]);
      m.dispose();
    }
  });
});
