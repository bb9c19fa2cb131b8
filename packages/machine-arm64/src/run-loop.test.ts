/**
 * Run-loop correctness on real guests: no slice stop may land inside a hook (Unicorn then
 * executes the trapping instruction again), and a vCPU that cannot execute from its entry point
 * is a guest fault naming the vCPU and the address, before the engine is touched.
 */
import { describe, expect, it } from 'vitest';
import { bootTestGuest } from './testing/guests.js';

const boot = bootTestGuest;

describe('arm64 run loop: a masked pending interrupt on one vCPU', () => {
  it('replays no instruction: ldr/add/str, hypercalls and console lines exact, 20 runs in a row', () => {
    const expected =
      Array.from({ length: 20 }, (_, i) => `iteration ${i * 1000}\n`).join('') + 'masked loop done: counter 20000 mismatches 0\n';
    for (let run = 0; run < 20; run++) {
      // The old 1-vCPU loop polled with uc_emu_start's timeout (2 ms; 50 µs made it within a few
      // hundred calls): a stop landing inside a hook gave counter 20001, 1 mismatch.
      const { m, router, console } = boot('masked-counter');
      const r = m.run();
      expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expect(console()).toBe(expected);
      expect(router.reports).toEqual([0n, 20000n, 1n]);
      m.dispose();
    }
  });
});
