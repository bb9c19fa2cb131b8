import { describe, expect, it } from 'vitest';
import { boot, runGuest, xenBuild } from './harness.js';

// guests/src/deviations.c's report tags
const TAG = { FAIL: 0xdead, PHYSMAP: 1, WALLCLOCK: 2, WC_NSEC: 3, FIFO_LOST: 4, FIFO_NEXT: 5, DONE: 6 };
const E = { EPERM: 1n, EACCES: 13n, EINVAL: 22n, ENOSYS: 38n };
const PENDING = 1n << 31n;
const MASKED = 1n << 30n;
const LINKED = 1n << 29n;
const QUEUE_7 = 1n << 7n; // the default priority's ready bit (EVTCHN_FIFO_PRIORITY_DEFAULT)

function probe(features: Record<string, boolean>, fifo: boolean) {
  const run = boot(xenBuild({ fifo }), 'deviations', { features, vcpus: 2, params: [0, fifo ? 1 : 0] });
  const r = runGuest(run.m);
  run.m.dispose();
  expect(run.t.tagged(TAG.FAIL), run.console()).toEqual([]);
  expect(r).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
  expect(run.t.tagged(TAG.DONE), run.console()).toHaveLength(1);
  const one = (tag: number) => run.t.tagged(tag)[0]!;
  return { run, one };
}

describe("svc-xen's deviations from Xen on Arm, from a real guest (README, Deviations and limits)", () => {
  it('a VM without xen-fidelity keeps what svc-xen 1.0 answered: wallclock 0, dev_mmio -ENOSYS/-EPERM', () => {
    const { run, one } = probe({}, false);
    expect(one(TAG.PHYSMAP)).toMatchObject({ a: E.EINVAL, b: (E.ENOSYS << 32n) | E.EPERM });
    expect(one(TAG.WALLCLOCK)).toMatchObject({ a: 0n, b: 0n });
    expect(one(TAG.WC_NSEC)).toMatchObject({ a: 0n });
    expect(run.console()).toContain('wallclock: version 0, sec 0, nsec 0\n');
  });

  it("with xen-fidelity: Xen's answers — wc_version 2 and the host's UTC, dev_mmio -EACCES either way", () => {
    const before = BigInt(Math.floor(Date.now() / 1000));
    const { one } = probe({ 'xen-fidelity': true }, false);
    const after = BigInt(Math.ceil(Date.now() / 1000));
    expect(one(TAG.PHYSMAP)).toMatchObject({ a: E.EINVAL, b: (E.EACCES << 32n) | E.EACCES });
    const wc = one(TAG.WALLCLOCK);
    expect(wc.a).toBe(2n); // update_domain_wallclock_time on a new domain: 0 → 1 → 2
    expect(wc.b).toBeGreaterThanOrEqual(before);
    expect(wc.b).toBeLessThanOrEqual(after);
    expect(one(TAG.WC_NSEC).a).toBeLessThan(1_000_000_000n);
  });

  it('shared_info at a gfn outside RAM stays -EINVAL in both (kept: the machine has no page there)', () => {
    for (const features of [{}, { 'xen-fidelity': true }] as Record<string, boolean>[]) expect(probe(features, false).one(TAG.PHYSMAP).a).toBe(E.EINVAL);
  });
});

describe("svc-evtchn-fifo: an event for a vCPU without a control block is lost, as in Xen's evtchn_fifo_set_pending", () => {
  it('PENDING is never set, the later unmask delivers nothing, and the next event is queued on vCPU 1', () => {
    const { run, one } = probe({ 'evtchn-fifo': true }, true);
    const lost = one(TAG.FIFO_LOST);
    // the word after the send: MASKED (Linux's fresh page), not PENDING, not LINKED
    expect(lost.a & (PENDING | LINKED)).toBe(0n);
    expect(lost.a & MASKED).toBe(MASKED);
    // vCPU 1's control block after Linux's unmask: nothing ready, queue 7 empty
    expect(lost.b).toBe(0n);
    const next = one(TAG.FIFO_NEXT);
    expect(next.a & (PENDING | LINKED)).toBe(PENDING | LINKED);
    expect(next.b >> 32n).toBe(QUEUE_7);
    expect(next.b & 0xffff_ffffn).not.toBe(0n); // head[7] = the port
    expect(run.console()).toMatch(/fifo: word after send to vCPU 1 without a control block 40000000, vCPU 1 ready 0 head\[7\] 0\n/);
  });
});
