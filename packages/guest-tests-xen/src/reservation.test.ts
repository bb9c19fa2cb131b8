import { describe, expect, it } from 'vitest';
import { Hypervisor, type ServicePlugin } from '@plugvisor/core';
import { createPsciService } from '@plugvisor/svc-psci';
import { createXenService } from '@plugvisor/svc-xen';
import { boot, MEM_SIZE, RAM_BASE, runGuest, xenBuild } from './harness.js';
import { createGuestTestService } from './service.js';

/**
 * xenBuild, with the start extent of every leg of decrease_reservation noted (the legs the guest
 * cannot see).
 */
function watchedBuild(starts: bigint[]): Hypervisor {
  const xen = createXenService();
  const watched: ServicePlugin<unknown> = {
    ...xen,
    apply(hv) {
      // tapable's register interceptor wraps svc-xen's tap as it is made.
      hv.hooks.call.for('XENMEM_decrease_reservation').intercept({
        register: (tap) => {
          const fn = tap.fn as (...a: unknown[]) => unknown;
          return { ...tap, fn: (...a: unknown[]) => (starts.push((a[0] as { regs: { get(n: number): bigint } }).regs.get(0) >> 6n), fn(...a)) };
        },
      });
      xen.apply(hv);
    },
  };
  return Hypervisor.compose([createPsciService(), watched, createGuestTestService()], { name: 'xen' });
}

// guests/src/reservation.c
const TAG = { FAIL: 0xdead, CASE: 1 };
const PAGES = MEM_SIZE / 4096;
const NPAGES = 320;

/** id → [what, Xen's answer] (xen/common/memory.c for an Arm domU). */
const CASES: Record<number, [string, number]> = {
  1: ['maximum_reservation: the RAM in pages', PAGES],
  2: ['current_reservation: all of it present', PAGES],
  10: ['decrease, order 10 (> a domU\'s 9): extents done', 0],
  11: ['decrease for dom0: extents done', 0],
  12: ['decrease for a domain that does not exist', 0],
  13: ['decrease, extent array not RAM', 0],
  14: ['decrease, the struct not RAM', 0],
  15: ['increase at max_pages', 0],
  16: ['current_reservation with a start extent: -EINVAL', -22],
  17: ['pages of the area that fault after the bad calls', 0],
  20: [`decrease of ${NPAGES} pages, preempted and re-issued`, NPAGES],
  21: ['current_reservation after it', PAGES - NPAGES],
  22: ['pages of the area that fault', NPAGES],
  30: ['populate of the odd pages', NPAGES / 2],
  31: ['faults: only the even pages', NPAGES / 2],
  32: ['populate of the even pages', NPAGES / 2],
  33: ['faults plus the bytes the guest wrote before: all zero', 0],
  34: ['current_reservation is max again', 1],
};

describe('memory reservation from a real arm64 guest (svc-xen, feature memory-reservation)', () => {
  it("balloons out and back, sees the holes as data aborts, and bad reservations get Xen's result", () => {
    const starts: bigint[] = [];
    const run = boot(watchedBuild(starts), 'reservation', { features: { 'memory-reservation': true } });
    const { m, t } = run;
    // Every byte of RAM before the bad calls (sync 1) and after them (sync 2): only the guest's
    // own buffers may change — the reservation struct it rewrites, and its stack below SP.
    let before: Uint8Array | undefined;
    const changedOutside: string[] = [];
    t.onSync = (tag, resv, sp) => {
      const ram = new Uint8Array(MEM_SIZE);
      m.memory.read(RAM_BASE, ram);
      if (tag === 1) before = ram;
      if (tag === 2) {
        for (let i = 0; i < MEM_SIZE; i++) {
          if (ram[i] === before![i]) continue;
          const at = RAM_BASE + BigInt(i);
          const own = (at >= resv && at < resv + 32n) || (at >= sp - 4096n && at < sp + 256n);
          if (!own && changedOutside.length < 8) changedOutside.push(`0x${at.toString(16)}: ${before![i]} → ${ram[i]}`);
        }
      }
      return 0;
    };
    const r = runGuest(m, () => {});
    expect(t.tagged(TAG.FAIL), run.console()).toEqual([]);
    expect(r).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(run.console()).toBe('reservation: done\n');
    const got = Object.fromEntries(t.tagged(TAG.CASE).map((c) => [Number(c.a), Number(BigInt.asIntN(64, c.b))]));
    const named = (o: Record<string, number>) => Object.entries(o).map(([id, rc]) => `${id} ${CASES[Number(id)]?.[0] ?? '?'}: ${rc}`);
    expect(named(got)).toEqual(named(Object.fromEntries(Object.entries(CASES).map(([id, [, rc]]) => [id, rc]))));
    expect(t.syncs).toBe(2);
    expect(changedOutside).toEqual([]);
    expect(m.guestPageHoles()).toEqual([]); // every page came back
    // Five bad calls (one leg each; the struct-not-RAM call has x0 = 1 too), then the big
    // decrease in two legs: the HVC re-executed with x0 = 1 | 256 << 6.
    expect(starts).toEqual([0n, 0n, 0n, 0n, 0n, 0n, 256n]);
    m.dispose();
  });

  it('with the feature off the reservation cmds are -ENOSYS and nothing is removed', () => {
    const run = boot(xenBuild({ fifo: false }), 'reservation', {});
    const { m, t } = run;
    runGuest(m, () => {});
    const got = Object.fromEntries(t.tagged(TAG.CASE).map((c) => [Number(c.a), Number(BigInt.asIntN(64, c.b))]));
    expect([got[1], got[2], got[20], got[22]]).toEqual([-38, -38, -38, 0]);
    m.dispose();
  });
});
