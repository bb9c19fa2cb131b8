import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, type StateValue } from '@plugvisor/core';
import { MemoryMachine } from '@plugvisor/core/testing';
import { createXenService, EXTENT_PAGES_PER_LEG, xenDomain } from './index.js';
import { loadDomain, saveDomain } from './state.js';
import { XenGuest } from './testing/index.js';

/**
 * The memory reservation sub-ops (ops/reservation.ts) on core's MemoryMachine, whose
 * 'guest-pages' capability tracks removed pages. Every expected value is Xen's (xen/common/memory.c
 * do_memory_op and the three reservation functions, for a domU on Arm).
 */

const RAM = 0x4000_0000n;
const PAGES = 1024; // 4 MiB
const RESV = RAM + 0x1000n; // the struct xen_memory_reservation
const LIST = RAM + 0x2000n; // the extent array
const gfn = (page: number) => (RAM >> 12n) + BigInt(page);
const gpa = (page: number) => RAM + BigInt(page) * 4096n;
const E = { EPERM: -1, ESRCH: -3, EFAULT: -14, EINVAL: -22, ENOSYS: -38 };
const OP = { increase: 0, decrease: 1, current: 3, maximum: 4, populate: 6 };
const DOMID_SELF = 0x7ff0;

function setup(features: Record<string, boolean> = { 'memory-reservation': true }) {
  const hv = Hypervisor.compose([createXenService()], { name: 'xen-resv' });
  const vm = hv.createVm({ features });
  const m = new MemoryMachine(1, RAM, PAGES * 4096);
  vm.attachMachine(m);
  vm.start();
  // Every byte of RAM has a value, so "untouched" means something.
  for (let i = 0; i < m.ram.length; i++) m.ram[i] = (i * 7 + 3) & 0xff;
  const g = new XenGuest(vm, m);
  return { hv, vm, m, g };
}

type Resv = { list?: bigint; nr: bigint | number; order?: number; flags?: number; domid?: number };

/** Writes the reservation struct at RESV and the extents at LIST. */
function reservation(g: XenGuest, r: Resv, extents: Array<number | bigint> = []): bigint {
  extents.forEach((e, i) => g.machine.memory.writeU64(LIST + BigInt(i) * 8n, typeof e === 'bigint' ? e : gfn(e)));
  return g.struct(32, [
    [0, 8, r.list ?? LIST],
    [8, 8, BigInt(r.nr)],
    [16, 4, r.order ?? 0],
    [20, 4, r.flags ?? 0],
    [24, 2, r.domid ?? DOMID_SELF],
  ], RESV);
}

/** One leg: returns [the dispatcher's rewind (4: preempted, 0: done), x0 as a signed number]. */
function leg(g: XenGuest, cmd: bigint, arg = RESV): [number, number] {
  const v = g.machine.vcpus[0]!;
  v.regs.set(16, 12n);
  v.regs.set(0, cmd);
  v.regs.set(1, arg);
  const back = g.vm.dispatch(Conduits.xen, v);
  return [back, Number(BigInt.asIntN(64, v.regs.get(0)))];
}

/** Issues a reservation op and re-issues it until it completes, as the guest's HVC re-executes. */
function run(g: XenGuest, op: number, arg = RESV): { rc: number; legs: bigint[] } {
  const legs: bigint[] = [];
  let cmd = BigInt(op);
  for (;;) {
    const [back, rc] = leg(g, cmd, arg);
    if (back === 0) return { rc, legs };
    const v = g.machine.vcpus[0]!;
    expect(back).toBe(4);
    expect(v.regs.get(1)).toBe(arg); // arg is kept (hypercall_create_continuation "lh")
    cmd = v.regs.get(0);
    expect(cmd & 63n).toBe(BigInt(op));
    legs.push(cmd >> 6n);
  }
}

const DOMAIN = RAM + 0x6000n; // struct xen_memory_domain
const stat = (g: XenGuest, op: number, domid = DOMID_SELF, cmd = BigInt(op)) => {
  g.struct(2, [[0, 2, domid]], DOMAIN);
  return leg(g, cmd, DOMAIN)[1];
};
const present = (m: MemoryMachine, page: number) => m.capability('guest-pages')!.isPresent(gpa(page));

/** RAM outside the given pages still holds the pattern setup() wrote. */
function untouchedExcept(m: MemoryMachine, pages: number[], also: Array<[bigint, number]> = []) {
  const skip = new Set(pages);
  for (let p = 0; p < PAGES; p++) {
    if (skip.has(p)) continue;
    for (let o = 0; o < 4096; o += 61) {
      const i = p * 4096 + o;
      const a = RAM + BigInt(i);
      if (also.some(([at, n]) => a >= at && a < at + BigInt(n))) continue;
      if (m.ram[i] !== ((i * 7 + 3) & 0xff)) throw new Error(`RAM at 0x${a.toString(16)} changed`);
    }
  }
}

describe('memory reservation: feature and page counts', () => {
  it('is opt-in: off, the cmds reach memory_op\'s default (-ENOSYS) and nothing changes', () => {
    const { g, m } = setup({});
    reservation(g, { nr: 1 }, [100]);
    expect(leg(g, BigInt(OP.decrease))[1]).toBe(E.ENOSYS);
    expect(stat(g, OP.current)).toBe(E.ENOSYS);
    expect(present(m, 100)).toBe(true);
  });

  it('current/maximum_reservation: page counts for DOMID_SELF or our own id, -ESRCH/-EPERM/-EFAULT/-EINVAL otherwise', () => {
    const { g } = setup();
    expect(stat(g, OP.current)).toBe(PAGES);
    expect(stat(g, OP.maximum)).toBe(PAGES);
    expect(stat(g, OP.current, 1)).toBe(PAGES); // the guest's own domid
    expect(stat(g, OP.current, 0)).toBe(E.EPERM); // dom0 exists; XSM_TARGET refuses a domU
    expect(stat(g, OP.maximum, 5)).toBe(E.ESRCH);
    expect(leg(g, BigInt(OP.current), RAM + BigInt(PAGES) * 4096n - 1n)[1]).toBe(E.EFAULT);
    expect(stat(g, OP.current, DOMID_SELF, BigInt(OP.current) | (1n << 6n))).toBe(E.EINVAL);
  });
});

describe('memory reservation: balloon out and back', () => {
  it('decrease removes the pages (zeroed, absent), populate maps zeroed pages back, counts follow; nothing else changes', () => {
    const { g, m } = setup();
    reservation(g, { nr: 4 }, [100, 101, 300, 777]);
    expect(run(g, OP.decrease).rc).toBe(4);
    for (const p of [100, 101, 300, 777]) expect(present(m, p)).toBe(false);
    expect(present(m, 102)).toBe(true);
    expect(stat(g, OP.current)).toBe(PAGES - 4);
    expect(stat(g, OP.maximum)).toBe(PAGES);
    untouchedExcept(m, [100, 101, 300, 777], [[DOMAIN, 2], [RESV, 32], [LIST, 32]]);

    reservation(g, { nr: 2 }, [101, 777]);
    expect(run(g, OP.populate).rc).toBe(2);
    expect(present(m, 101) && present(m, 777) && !present(m, 100)).toBe(true);
    expect([...m.ram.subarray(101 * 4096, 102 * 4096)].every((b) => b === 0)).toBe(true);
    expect(stat(g, OP.current)).toBe(PAGES - 2);
    // Nothing is written back on an auto-translated guest: the extent array still holds the gfns.
    expect(m.memory.readU64(LIST)).toBe(gfn(101));
    untouchedExcept(m, [100, 101, 300, 777], [[DOMAIN, 2], [RESV, 32], [LIST, 32]]);
  });

  it('order-9 extents (the domU limit) remove and restore 512 pages each', () => {
    const { g, m } = setup();
    reservation(g, { nr: 1, order: 9 }, [512]);
    expect(run(g, OP.decrease).rc).toBe(1);
    expect(stat(g, OP.current)).toBe(PAGES - 512);
    expect(present(m, 511) && !present(m, 512) && !present(m, 1023)).toBe(true);
    expect(run(g, OP.populate).rc).toBe(1);
    expect(stat(g, OP.current)).toBe(PAGES);
  });

  it('increase_reservation allocates unmapped pages up to max_pages, without touching the extent array', () => {
    const { g, m } = setup();
    reservation(g, { nr: 3 }, [10, 11, 12]);
    expect(run(g, OP.decrease).rc).toBe(3);
    // 5 asked, 3 fit under max_pages: Xen answers the extents done.
    reservation(g, { nr: 5, list: RAM + BigInt(PAGES) * 4096n }, []);
    expect(run(g, OP.increase).rc).toBe(3);
    expect(stat(g, OP.current)).toBe(PAGES);
    expect(xenDomain(g.vm).unmappedPages).toBe(3);
    expect(present(m, 10)).toBe(false);
    // The domain is at max_pages: populating the hole fails at its first extent.
    reservation(g, { nr: 1 }, [10]);
    expect(run(g, OP.populate).rc).toBe(0);
    expect(present(m, 10)).toBe(false);
  });
});

describe('memory reservation: bad reservations get exactly Xen\'s result and leave RAM alone', () => {
  const cases: Array<[string, number, Resv, Array<number | bigint>, bigint, number]> = [
    // [what, op, reservation, extents, cmd start extent, expected x0]
    ['the struct outside RAM', OP.decrease, { nr: 2 }, [100, 101], 0n, 0],
    ['the extent array outside RAM', OP.decrease, { nr: 2, list: RAM + BigInt(PAGES) * 4096n }, [], 0n, 0],
    ['order 10, above a domU\'s max_order 9', OP.decrease, { nr: 1, order: 10 }, [0], 0n, 0],
    ['order 10 on populate', OP.populate, { nr: 1, order: 10 }, [0], 0n, 0],
    ['order 10 on increase', OP.increase, { nr: 1, order: 10 }, [], 0n, 0],
    ['nr_extents past UINT_MAX >> MEMOP_EXTENT_SHIFT', OP.decrease, { nr: 0x400_0000 }, [100], 0n, 0],
    ['a foreign domid (dom0)', OP.decrease, { nr: 1, domid: 0 }, [100], 0n, 0],
    ['a domid that does not exist', OP.populate, { nr: 1, domid: 9 }, [100], 0n, 0],
    ['a start extent at nr_extents', OP.decrease, { nr: 2 }, [100, 101], 2n, 2],
    ['a start extent past nr_extents', OP.decrease, { nr: 2 }, [100, 101], 5n, 5],
    ['address bits that cannot be met (12)', OP.populate, { nr: 1, flags: 12 }, [100], 0n, 0],
    ['an exact physical node from a domU', OP.populate, { nr: 1, flags: (1 << 8) | (1 << 17) }, [100], 0n, 0],
    ['populate-on-demand on oneself', OP.populate, { nr: 1, flags: 1 << 16 }, [100], 0n, 0],
    ['a gfn outside RAM', OP.decrease, { nr: 2 }, [0x10n, 100], 0n, 0],
    ['a gfn outside RAM, second', OP.decrease, { nr: 3 }, [100, 5000n, 101], 0n, 1],
    ['populate of a mapped page at max_pages', OP.populate, { nr: 1 }, [100], 0n, 0],
  ];
  for (const [what, op, r, extents, start, want] of cases) {
    it(`${what}: x0 = ${want}`, () => {
      const { g, m } = setup();
      reservation(g, r, extents);
      const arg = what === 'the struct outside RAM' ? RAM + BigInt(PAGES) * 4096n - 16n : RESV;
      const [back, rc] = leg(g, BigInt(op) | (start << 6n), arg);
      expect([back, rc]).toEqual([0, want]);
      const gone = what.startsWith('a gfn outside RAM, second') ? [100] : [];
      for (let p = 3; p < PAGES; p++) if (!gone.includes(p) && !present(m, p)) throw new Error(`page ${p} removed`);
      expect(stat(g, OP.current)).toBe(PAGES - gone.length);
      untouchedExcept(m, gone, [[DOMAIN, 2], [RESV, 32], [LIST, 8 * extents.length]]);
    });
  }

  it('an extent array running off the end of RAM: the entries before the edge are done, then the op ends', () => {
    const { g, m } = setup();
    const end = RAM + BigInt(PAGES) * 4096n;
    m.memory.writeU64(end - 8n, gfn(100));
    reservation(g, { nr: 3, list: end - 8n });
    expect(run(g, OP.decrease).rc).toBe(1);
    expect([present(m, 100), present(m, 101)]).toEqual([false, true]);
    untouchedExcept(m, [100], [[DOMAIN, 2], [RESV, 32], [end - 8n, 8]]);
  });

  it('an extent whose second page is already gone: the first stays removed, the extent is not counted', () => {
    const { g, m } = setup();
    reservation(g, { nr: 1 }, [201]);
    expect(run(g, OP.decrease).rc).toBe(1);
    reservation(g, { nr: 1, order: 1 }, [200]);
    expect(run(g, OP.decrease).rc).toBe(0);
    expect(present(m, 200)).toBe(false); // guest_remove_page of gfn 200 happened before 201 failed
    expect(stat(g, OP.current)).toBe(PAGES - 2);
  });

  it('the page holding the registered shared_info ends the op there', () => {
    const { g, m } = setup();
    expect(g.mapSharedInfo(gfn(8))).toBe(0);
    reservation(g, { nr: 3 }, [7, 8, 9]);
    expect(run(g, OP.decrease).rc).toBe(1);
    expect([present(m, 7), present(m, 8), present(m, 9)]).toEqual([false, true, true]);
  });

  it('a machine without the guest-pages capability: decrease and populate do nothing, counts are RAM', () => {
    const { g, m } = setup();
    (m as unknown as { capability: () => undefined }).capability = () => undefined;
    reservation(g, { nr: 2 }, [100, 101]);
    expect(run(g, OP.decrease).rc).toBe(0);
    expect(run(g, OP.populate).rc).toBe(0);
    expect(stat(g, OP.current)).toBe(PAGES);
    untouchedExcept(m, [], [[DOMAIN, 2], [RESV, 32], [LIST, 16]]);
  });
});

describe('memory reservation: preemption', () => {
  it(`a leg does at most ${EXTENT_PAGES_PER_LEG} pages; the start extent rides in cmd[63:6]; every extent is done once`, () => {
    const { g, m } = setup();
    const pages = Array.from({ length: 600 }, (_, i) => 300 + i);
    reservation(g, { nr: pages.length }, pages);
    const { rc, legs } = run(g, OP.decrease);
    expect(rc).toBe(600);
    expect(legs).toEqual([256n, 512n]);
    expect(pages.every((p) => !present(m, p))).toBe(true);
    expect(stat(g, OP.current)).toBe(PAGES - 600);
    const back = run(g, OP.populate);
    expect([back.rc, back.legs]).toEqual([600, [256n, 512n]]);
    expect(stat(g, OP.current)).toBe(PAGES);
  });

  it('a pending interrupt ends a leg after the extent in hand (hypercall_preempt_check)', () => {
    const { g, m } = setup();
    let pending = true;
    const pagesCap = m.capability('guest-pages');
    (m as unknown as { capability: (n: string) => unknown }).capability = (n) =>
      n === 'interrupt-pending' ? { pending: () => pending } : n === 'guest-pages' ? pagesCap : undefined;
    reservation(g, { nr: 3 }, [40, 41, 42]);
    expect(leg(g, BigInt(OP.decrease))).toEqual([4, 1 | (1 << 6)]);
    expect([present(m, 40), present(m, 41)]).toEqual([false, true]);
    pending = false;
    expect(leg(g, BigInt(OP.decrease) | (1n << 6n))).toEqual([0, 3]);
  });

  it('the accounting of unmapped pages travels in the snapshot state', () => {
    const { g, vm } = setup();
    reservation(g, { nr: 2 }, [10, 11]);
    run(g, OP.decrease);
    reservation(g, { nr: 2, list: 0n }, []);
    expect(run(g, OP.increase).rc).toBe(2);
    const d = xenDomain(vm);
    const saved = saveDomain(d);
    expect((saved as Record<string, unknown>).unmappedPages).toBe(2);
    expect(loadDomain(saved, vm, d.hooks).unmappedPages).toBe(2);
    expect(() => loadDomain({ ...(saved as Record<string, StateValue>), unmappedPages: -1 }, vm, d.hooks)).toThrow(/unmappedPages/);
  });
});
