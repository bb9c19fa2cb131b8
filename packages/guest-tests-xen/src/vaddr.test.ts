import { describe, expect, it } from 'vitest';
import { boot, MEM_SIZE, runGuest, xenBuild } from './harness.js';

// guests/src/vaddr.c: every pointer passed at its alias (VA = PA + 1 GiB, no RAM there physically).
const TAG_CASE = 1;
const EFAULT = -14;

/** id → [what, Xen's answer] — what Xen on Arm gives when it copies through the guest's translation. */
const CASES: Record<number, [string, number]> = {
  1: ['maximum_reservation, struct at its alias: the RAM in pages', MEM_SIZE / 4096],
  2: ['maximum_reservation, struct at an unmapped VA', EFAULT],
  3: ['maximum_reservation, struct at its identity address', MEM_SIZE / 4096],
  10: ['decrease_reservation, struct and extent array at their alias: extents done', 2],
  11: ['populate_physmap, the same: extents done', 2],
  12: ['the bytes of the two pages after: zero', 0],
  20: ['xen_version(extraversion) to the identity address', 0],
  21: ['xen_version(extraversion) to the alias', 0],
  22: ['the alias copy reads back the same string through the identity mapping', 1],
  23: ['xen_version(extraversion) to an unmapped VA', EFAULT],
  30: ['EVTCHNOP_alloc_unbound, struct at its alias', 0],
  31: ['the port it wrote back, read through the identity mapping', 1],
};

function run(translate: boolean) {
  const r = boot(xenBuild({ fifo: false }), 'vaddr', { features: { 'memory-reservation': true } });
  if (!translate) {
    // The machine as it was before it offered 'guest-virtual': pointers taken as physical.
    const m = r.m as unknown as { capability: (n: string) => unknown };
    const own = m.capability.bind(r.m);
    m.capability = (n) => (n === 'guest-virtual' ? undefined : own(n));
  }
  const result = runGuest(r.m);
  r.m.dispose();
  expect(result, r.console()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
  const got = Object.fromEntries(r.t.tagged(TAG_CASE).map((c) => [Number(c.a), Number(BigInt.asIntN(64, c.b))]));
  return Object.entries(got).map(([id, v]) => `${id} ${CASES[Number(id)]?.[0] ?? '?'}: ${v}`);
}

describe('hypercall pointers are guest virtual addresses (a real guest with its MMU on)', () => {
  it("svc-xen copies every argument through the calling vCPU's translation, as Xen's copy_from_guest", () => {
    expect(run(true)).toEqual(Object.entries(CASES).map(([id, [what, v]]) => `${id} ${what}: ${v}`));
  });

  it('a machine without the translation takes them as physical: the alias is no RAM (the check above can fail)', () => {
    const got = run(false);
    expect(got).toContain(`1 ${CASES[1]![0]}: ${EFAULT}`);
    expect(got).toContain(`10 ${CASES[10]![0]}: 0`);
    expect(got).toContain(`21 ${CASES[21]![0]}: ${EFAULT}`);
    expect(got).toContain(`30 ${CASES[30]![0]}: ${EFAULT}`);
  });
});
