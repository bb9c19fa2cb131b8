/**
 * Removed guest pages (memory/holes.ts), measured beside same-run baselines:
 *  - removing pages: every other page of a 512 MiB machine's RAM above its first 16 MiB, one
 *    removeGuestPages call per page (µs/page), and one page removed after the guest has run
 *    (its engine holds translations: the drop and TLB flush included);
 *  - a guest access to a removed page (the stage 2 abort taken to EL2, injected into EL1, the
 *    guest's handler skipping the load) beside an SVC to the same handler (the machine's own
 *    exception path: the interrupt hook and arm_cpu_do_interrupt) (ns/exception);
 *  - a guest sweeping 16 pages (kept in QEMU's TLB) and 4 MiB (refilled every pass), a load and
 *    a store per page, with those 63,488 scattered holes elsewhere beside the same with none.
 * Guest: guests/src/holes-bench.c. Medians of interleaved rounds.
 */
import type { BenchRow } from '@plugvisor/core/testing';
import { Arm64Machine } from '../machine.js';
import { Layout } from '../board/layout.js';
import { TestRouter } from '../testing/test-router.js';
import { guestImage } from '../testing/guests.js';
import type { GuestPageHoles } from '../memory/holes.js';
import type { Vcpu } from '../cpu/vcpu.js';

const ROUNDS_MARK = 0x524f_554e_4453_0000n;
const HOLE_MARK = 0x484f_4c45_0000_0000n;
const PAGES_MARK = 0x5041_4745_5300_0000n;
const RAM = 512 << 20;
/** Holes from here on (the guest and its 4 MiB buffer live below). */
const HOLES_FROM = Layout.RAM_BASE + (16n << 20n);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Every other page from HOLES_FROM to the end of RAM removed; ms it took, and how many. */
function removeEveryOther(m: Arm64Machine): { ms: number; pages: number } {
  const t = performance.now();
  let pages = 0;
  for (let a = HOLES_FROM; a < Layout.RAM_BASE + BigInt(RAM); a += 0x2000n) pages += m.removeGuestPages(a, 1);
  return { ms: performance.now() - t, pages };
}

/** One run of holes-bench in `mode` with `rounds`, optionally with the scattered holes; seconds. */
function runGuest(mode: number, rounds: number, holes: boolean, pages = 1024): { s: number; removeMs?: number; pages?: number; oneMs?: number } {
  const m = new Arm64Machine({ memSize: RAM, console: () => {} });
  try {
    const router = new TestRouter(m, { mode });
    m.attach(router);
    const img = m.loadImage(guestImage('holes-bench'));
    const ram = m.memory.regions()[0]!.bytes;
    const dv = new DataView(ram.buffer, ram.byteOffset, 1 << 20);
    for (let o = 0; o + 8 <= 1 << 20; o += 8) {
      const v = dv.getBigUint64(o, true);
      if (v === ROUNDS_MARK) dv.setBigUint64(o, BigInt(rounds), true);
      else if (v === PAGES_MARK) dv.setBigUint64(o, BigInt(pages), true);
      else if (v === HOLE_MARK) dv.setBigUint64(o, HOLES_FROM + 0x2000n, true); // removed: every other page from HOLES_FROM
    }
    let extra: { removeMs?: number; pages?: number } = {};
    if (holes || mode === 1) {
      const r = removeEveryOther(m);
      extra = { removeMs: r.ms, pages: r.pages };
    }
    m.boot(img.entry);
    const t = performance.now();
    const r = m.run();
    const s = (performance.now() - t) / 1000;
    if (r.kind !== 'system-event') throw new Error(`holes-bench mode ${mode} ended with ${r.kind}`);
    // The guest reports how many exceptions its handler took (modes 1, 2): each must have happened.
    if (mode !== 0 && router.reports[0] !== BigInt(rounds)) throw new Error(`holes-bench mode ${mode}: ${String(router.reports[0])} exceptions taken, expected ${rounds}`);
    // One more page, now that the engine holds translations, and what its engine then does
    // before running again (the machine settles it before the next slice or after a hypercall).
    const inner = m as unknown as { holes: GuestPageHoles; vcpus: Vcpu[] };
    const t1 = performance.now();
    m.removeGuestPages(Layout.RAM_BASE + 0x80_0000n, 1);
    inner.holes.settle(inner.vcpus[0]!);
    return { s, ...extra, oneMs: performance.now() - t1 };
  } finally {
    m.dispose();
  }
}

export function runArm64HolesBench(options: { rounds?: number; sweeps?: number; exceptions?: number } = {}): BenchRow[] {
  const rounds = options.rounds ?? 5;
  const sweeps = options.sweeps ?? 200;
  const exceptions = options.exceptions ?? 200_000;
  const t: Record<string, number[]> = { sweep0: [], sweepN: [], small0: [], smallN: [], fault: [], svc: [], removePerPage: [], one: [] };
  runGuest(0, 2, false); // warm-up
  let pages = 0;
  for (let r = 0; r < rounds; r++) {
    t.sweep0!.push(runGuest(0, sweeps, false).s);
    const withHoles = runGuest(0, sweeps, true);
    t.sweepN!.push(withHoles.s);
    pages = withHoles.pages!;
    t.removePerPage!.push((withHoles.removeMs! * 1000) / pages);
    t.one!.push(withHoles.oneMs!);
    t.small0!.push(runGuest(0, sweeps * 1024, false, 16).s);
    t.smallN!.push(runGuest(0, sweeps * 1024, true, 16).s);
    t.fault!.push(runGuest(1, exceptions, false).s);
    t.svc!.push(runGuest(2, exceptions, false).s);
  }
  const faultNs = (median(t.fault!) / exceptions) * 1e9;
  const svcNs = (median(t.svc!) / exceptions) * 1e9;
  const sweepOps = sweeps * 1024;
  const sweep0 = (median(t.sweep0!) / sweepOps) * 1e9;
  const sweepN = (median(t.sweepN!) / sweepOps) * 1e9;
  const small0 = (median(t.small0!) / (sweeps * 1024 * 16)) * 1e9;
  const smallN = (median(t.smallN!) / (sweeps * 1024 * 16)) * 1e9;
  return [
    { name: `arm64 removeGuestPages, ${pages} scattered pages of 512 MiB, one call each (µs/page)`, value: median(t.removePerPage!), unit: 'µs' },
    { name: 'arm64 removeGuestPages, one page after the guest ran, its engine settled (ms: translations dropped, TLB flushed)', value: median(t.one!), unit: 'ms' },
    {
      name: 'arm64 guest load from a removed page: stage 2 abort injected as Xen does, handler skips it (ns/fault)',
      value: faultNs,
      unit: 'ns',
      baseline: svcNs,
      baselineName: "an SVC to the same handler (the machine's exception path: interrupt hook, arm_cpu_do_interrupt)",
      ratio: faultNs / svcNs,
    },
    {
      name: `arm64 guest sweep of 16 pages (they stay in the TLB), load+store per page, with ${pages} scattered holes (ns/page)`,
      value: smallN,
      unit: 'ns',
      baseline: small0,
      baselineName: 'same sweep, no holes (stage 2 off)',
      ratio: smallN / small0,
    },
    {
      name: `arm64 guest 4 MiB sweep (1,024 pages: a TLB refill each), load+store per page, with ${pages} scattered holes (ns/page)`,
      value: sweepN,
      unit: 'ns',
      baseline: sweep0,
      baselineName: 'same sweep, no holes (stage 2 off)',
      ratio: sweepN / sweep0,
    },
  ];
}
