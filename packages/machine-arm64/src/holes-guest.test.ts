import { describe, expect, it } from 'vitest';
import { Hypervisor, MachineError, planRestore, saveSnapshot, type StateValue } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { Layout } from './board/layout.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';
import { GuestPageAbsentError } from './memory/holes.js';
import { checkArm64Snapshot, machineFromPlan } from './snapshot.js';

/*
 * guests/src/holes.c: the guest removes two of its pages (TEST_REMOVE_PAGES), touches them in
 * every way below, and reports per probe [vector kind, ESR_EL1, FAR_EL1, the address touched,
 * ELR_EL1, the touching instruction's address]; then the kept pages' pattern, the pages added
 * back, that they read as zero, that they are usable, and its fault count.
 */
const EL1_SPX_SYNC = 4n; // VBAR_EL1 + 0x200: Xen's vector for an abort from EL1
const LOWER_SYNC = 8n; // VBAR_EL1 + 0x400: from EL0
// Xen's inject_abt64_exception: EC | IL, ISS 0 (xen/arch/arm/traps.c).
const DABT_EL1 = (0x25n << 26n) | (1n << 25n);
const IABT_EL1 = (0x21n << 26n) | (1n << 25n);
const DABT_EL0 = (0x24n << 26n) | (1n << 25n);
const IABT_EL0 = (0x20n << 26n) | (1n << 25n);
const PROBES = [
  { what: 'load, MMU off, EL1', kind: EL1_SPX_SYNC, esr: DABT_EL1 },
  { what: 'store, MMU off, EL1', kind: EL1_SPX_SYNC, esr: DABT_EL1 },
  { what: 'fetch, MMU off, EL1', kind: EL1_SPX_SYNC, esr: IABT_EL1 },
  { what: 'code translated before the removal, running on into a removed page', kind: EL1_SPX_SYNC, esr: IABT_EL1 },
  { what: 'load through a virtual alias, MMU on, EL1', kind: EL1_SPX_SYNC, esr: DABT_EL1 },
  { what: 'fetch through a virtual alias, MMU on, EL1', kind: EL1_SPX_SYNC, esr: IABT_EL1 },
  { what: 'load, MMU on, EL0', kind: LOWER_SYNC, esr: DABT_EL0 },
  { what: 'fetch, MMU on, EL0', kind: LOWER_SYNC, esr: IABT_EL0 },
];

function make(memSize = 16 << 20) {
  let out = '';
  const m = new Arm64Machine({ memSize, console: (b) => (out += Buffer.from(b).toString('latin1')) });
  const router = new TestRouter(m);
  m.attach(router);
  return { m, router, text: () => out };
}

/** Checks the guest's reports; returns the removed pages' address (its first report after the count). */
function checkReports(reports: readonly bigint[]): void {
  expect(reports.length).toBe(1 + PROBES.length * 6 + 5);
  expect(reports[0]).toBe(2n); // two pages removed
  PROBES.forEach((p, i) => {
    const [kind, esr, far, addr, elr, insn] = reports.slice(1 + i * 6, 7 + i * 6);
    expect({ probe: p.what, kind, esr: `0x${esr!.toString(16)}` }).toEqual({ probe: p.what, kind: p.kind, esr: `0x${p.esr.toString(16)}` });
    expect({ probe: p.what, far }).toEqual({ probe: p.what, far: addr }); // FAR_EL1: the virtual address touched
    expect({ probe: p.what, elr }).toEqual({ probe: p.what, elr: insn }); // ELR_EL1: the instruction, precisely
  });
  // The virtual aliases are not the physical addresses: FAR is virtual.
  expect(reports[1 + 4 * 6 + 2]! >= 0x8000_0000n).toBe(true);
  expect(reports.slice(1 + PROBES.length * 6)).toEqual([1n, 2n, 1n, 1n, BigInt(PROBES.length)]);
}

describe('arm64 machine: guest pages removed and added back (memory/holes.ts)', () => {
  it('a real guest touching removed pages takes the abort Xen injects, from EL1 and EL0, MMU off and on; pages come back zeroed', () => {
    const { m, router, text } = make();
    m.boot(m.loadImage(guestImage('holes')).entry);
    const r = m.run();
    expect(text()).not.toMatch(/unexpected/);
    expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    checkReports(router.reports);
    expect(m.guestPageHoles()).toEqual([]);
    m.dispose();
  });

  it('with every other page of 512 MiB removed (63,488 holes) the machine runs the same guest the same way', () => {
    const ref = make();
    ref.m.boot(ref.m.loadImage(guestImage('holes')).entry);
    ref.m.run();
    ref.m.dispose();

    const { m, router } = make(512 << 20);
    m.boot(m.loadImage(guestImage('holes')).entry);
    const t = performance.now();
    let n = 0;
    for (let a = Layout.RAM_BASE + (16n << 20n); a < Layout.RAM_BASE + (512n << 20n); a += 0x2000n) n += m.removeGuestPages(a, 1);
    const ms = performance.now() - t;
    expect(n).toBe(63488);
    expect(ms).toBeLessThan(5000);
    expect(m.guestPageHoles().length).toBe(63488);
    expect(m.isGuestPagePresent(Layout.RAM_BASE + (16n << 20n))).toBe(false);
    expect(m.isGuestPagePresent(Layout.RAM_BASE + (16n << 20n) + 0x1000n)).toBe(true);
    const r = m.run();
    expect(r.kind).toBe('system-event');
    expect(router.reports).toEqual(ref.router.reports);
    expect(m.guestPageHoles().length).toBe(63488);
    // Every hole back: the machine returns to running without stage 2.
    for (let a = Layout.RAM_BASE + (16n << 20n); a < Layout.RAM_BASE + (512n << 20n); a += 0x2000n) m.addGuestPages(a, 1);
    expect(m.guestPageHoles()).toEqual([]);
    expect(m.describe().holes).toBeUndefined();
    m.dispose();
  });

  it('on 2 vCPUs, a page one vCPU removes faults on the other from then on (its engine held the translation)', () => {
    let out = '';
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
    const router = new TestRouter(m);
    m.attach(router);
    m.boot(m.loadImage(guestImage('holes-smp')).entry);
    expect(m.run().kind).toBe('system-event');
    expect(out).toBe('');
    // guests/src/holes-smp.c: removed, then from vCPU 1 loads that succeeded after it saw the
    // removal (a stale translation on its engine), ESR, FAR, the address, loads before.
    const [removed, violations, esr, far, addr, loadedBefore] = router.reports;
    expect({ removed, violations, esr, loadedBefore }).toEqual({ removed: 1n, violations: 0n, esr: DABT_EL1, loadedBefore: 1n });
    expect(far).toBe(addr);
    m.dispose();
  });

  it('a snapshot taken with pages removed restores them exactly in a fresh machine, which finishes identically', () => {
    const ref = make();
    ref.m.boot(ref.m.loadImage(guestImage('holes')).entry);
    const full = ref.m.run();
    ref.m.dispose();

    const a = make();
    a.m.boot(a.m.loadImage(guestImage('holes')).entry);
    // The guest's first hypercall removes the pages.
    expect(a.m.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    const holes = a.m.guestPageHoles();
    expect(holes.length).toBe(1);
    expect(holes[0]!.pages).toBe(2);
    const image = a.m.image();
    const description = image.description as { holes?: unknown };
    expect(description.holes).toEqual([[`0x${holes[0]!.gpa.toString(16)}`, 2]]);
    const ram = image.memory[0]!.bytes;
    const off = Number(holes[0]!.gpa - Layout.RAM_BASE);
    // The removed pages carry no stale bytes into the snapshot; the kept ones are untouched.
    expect(ram.subarray(off, off + 2 * 4096).every((b) => b === 0)).toBe(true);
    expect(ram.subarray(off - 4096, off).some((b) => b !== 0)).toBe(true);
    const copy = { ...image, description: JSON.parse(JSON.stringify(image.description)), memory: image.memory.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) };
    const reportsBefore = [...a.router.reports];
    a.m.dispose();

    const b = Arm64Machine.fromImage(copy, { console: () => {} });
    expect(b.guestPageHoles()).toEqual(holes);
    const router = new TestRouter(b);
    b.attach(router);
    expect(b.run()).toEqual(full);
    checkReports([...reportsBefore, ...router.reports]);
    b.dispose();
  });

  it('holes travel through the snapshot stream (saveSnapshot, planRestore, machineFromPlan)', () => {
    const hv = Hypervisor.compose([], { name: 'empty' });
    const vm = hv.createVm();
    const m = new Arm64Machine({ memSize: 16 << 20, console: () => {} });
    vm.attachMachine(m);
    m.attach(vm);
    m.boot(m.loadImage(guestImage('hello')).entry);
    const base = Layout.RAM_BASE + (8n << 20n);
    for (let i = 0n; i < 64n; i += 3n) m.removeGuestPages(base + i * 0x1000n, 2);
    m.memory.writeU64(base + 0x2000n, 0xfeedn);
    const holes = m.guestPageHoles();
    const bytes = saveSnapshot(vm, m.image());
    m.dispose();
    const plan = planRestore(bytes, hv, { arch: 'arm64', checkMachine: checkArm64Snapshot });
    const r = machineFromPlan(plan, { console: () => {} });
    expect(r.guestPageHoles()).toEqual(holes);
    expect(r.memory.readU64(base + 0x2000n)).toBe(0xfeedn);
    expect(() => r.memory.readU64(base)).toThrow(GuestPageAbsentError);
    r.dispose();
  });

  it('a damaged hole list is refused naming the field; a description without one restores with no holes', () => {
    const a = make();
    a.m.boot(a.m.loadImage(guestImage('holes')).entry);
    a.m.run({ pauseAfterTraps: 1 });
    const image = a.m.image();
    a.m.dispose();
    const d = image.description as Record<string, unknown>;
    for (const [holes, why] of [
      [[['0x40001800', 1]], /holes entry 0: address 0x40001800 is not 4 KiB aligned/],
      [[['0x48000000', 1]], /holes entry 0: address 0x48000000 is outside RAM/],
      [[['0x40001000', 1], ['0x40001000', 1]], /holes entry 1: runs must be ascending/],
      ['everything', /holes must be an array/],
    ] as const) {
      const bad = { ...image, description: { ...d, holes } };
      expect(() => Arm64Machine.fromImage(bad, { console: () => {} })).toThrow(why);
      expect(checkArm64Snapshot(bad.description, bad.vcpus, [{ gpa: Layout.RAM_BASE, size: 16 << 20 } as never]).join('\n')).toMatch(why);
    }
    const { holes: _, ...old } = d;
    const m = Arm64Machine.fromImage({ ...image, description: old as StateValue }, { console: () => {} });
    expect(m.guestPageHoles()).toEqual([]);
    m.dispose();
  });

  it('services reach removed pages through machine.memory only to fail; operator input errors are one clear MachineError', () => {
    const { m } = make();
    const gpa = Layout.RAM_BASE + 0x10_0000n;
    m.memory.writeU64(gpa, 0x1122334455667788n);
    m.memory.writeU64(gpa + 0x1000n, 0x99n);
    expect(m.removeGuestPages(gpa, 1)).toBe(1);
    expect(m.removeGuestPages(gpa, 1)).toBe(0);
    expect(m.isGuestPagePresent(gpa + 0xfffn)).toBe(false);
    expect(m.memory.contains(gpa, 8)).toBe(false);
    expect(() => m.memory.readU64(gpa)).toThrow(GuestPageAbsentError);
    expect(() => m.memory.write(gpa - 4n, new Uint8Array(8))).toThrow(GuestPageAbsentError);
    expect(m.memory.readU64(gpa - 8n)).toBe(0n);
    expect(m.memory.readU64(gpa + 0x1000n)).toBe(0x99n);
    expect(m.addGuestPages(gpa, 2)).toBe(1);
    expect(m.memory.readU64(gpa)).toBe(0n); // back zeroed
    expect(m.memory.readU64(gpa + 0x1000n)).toBe(0x99n);
    expect(() => m.removeGuestPages(gpa + 1n, 1)).toThrow(MachineError);
    expect(() => m.removeGuestPages(gpa + 1n, 1)).toThrow(/removeGuestPages: address 0x40100001 is not 4 KiB aligned/);
    expect(() => m.removeGuestPages(Layout.RAM_BASE + (16n << 20n) - 0x1000n, 2)).toThrow(/\+ 2 pages is not inside RAM/);
    expect(() => m.addGuestPages(0x1000n, 1)).toThrow(/addGuestPages: 0x1000 \+ 1 pages is not inside RAM/);
    expect(() => m.removeGuestPages(gpa, 0)).toThrow(/page count must be a positive integer/);
    m.dispose();
  });
});
