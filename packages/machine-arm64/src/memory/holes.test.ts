import { describe, expect, it } from 'vitest';
import { FlatGuestMemory, GuestMemoryError } from '@plugvisor/core';
import { GuestPageAbsentError, HoleAwareMemory, PageHoles, parseHoleRuns } from './holes.js';
import { Layout } from '../board/layout.js';

/** Runs of a reference set of page numbers, ascending. */
function refRuns(set: Set<number>, pages: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let p = 0; p < pages; p++) {
    if (!set.has(p)) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === p) last[1]++;
    else out.push([p, 1]);
  }
  return out;
}

/** A deterministic PRNG (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const fail = (problem: string): never => {
  throw new Error(problem);
};

describe('PageHoles: the set of removed pages', () => {
  it('every other page of 512 MiB: 65,536 holes in 16 KiB, read back as runs in bounded time', () => {
    const pages = (512 << 20) / 4096;
    const h = new PageHoles(pages);
    const t = performance.now();
    for (let p = 0; p < pages; p += 2) expect(h.set(p, true)).toBe(true);
    const runs = h.runs();
    const ms = performance.now() - t;
    expect(h.count).toBe(65536);
    expect(runs.length).toBe(65536);
    expect(runs[0]).toEqual([0, 1]);
    expect(runs[65535]).toEqual([pages - 2, 1]);
    expect(runs.every(([p, n], i) => p === 2 * i && n === 1)).toBe(true);
    expect(h.firstPresent()).toBe(1);
    expect(h.anyIn(1, 1)).toBe(false);
    expect(h.anyIn(1, 2)).toBe(true);
    expect(ms).toBeLessThan(2000);
    // Removing a removed page changes nothing; the count follows.
    expect(h.set(0, true)).toBe(false);
    expect(h.set(0, false)).toBe(true);
    expect(h.count).toBe(65535);
  });

  it('merges touching removals into one run and splits a run when a page comes back', () => {
    const h = new PageHoles(100);
    for (let p = 10; p < 20; p++) h.set(p, true);
    for (let p = 20; p < 30; p++) h.set(p, true);
    expect(h.runs()).toEqual([[10, 20]]);
    h.set(15, false);
    expect(h.runs()).toEqual([
      [10, 5],
      [16, 14],
    ]);
    for (let p = 95; p < 100; p++) h.set(p, true);
    expect(h.runs()).toEqual([
      [10, 5],
      [16, 14],
      [95, 5],
    ]);
    for (let p = 0; p < 100; p++) h.set(p, true);
    expect(h.runs()).toEqual([[0, 100]]);
    expect(h.firstPresent()).toBe(-1);
  });

  for (const seed of [1, 2, 3, 42, 1234]) {
    it(`random removals and additions match a reference set (seed ${seed})`, () => {
      const r = rng(seed);
      const pages = 5000 + Math.floor(r() * 3000);
      const h = new PageHoles(pages);
      const ref = new Set<number>();
      for (let step = 0; step < 400; step++) {
        const first = Math.floor(r() * pages);
        const n = 1 + Math.floor(r() * Math.min(64, pages - first));
        const remove = r() < 0.6;
        for (let p = first; p < first + n; p++) {
          h.set(p, remove);
          if (remove) ref.add(p);
          else ref.delete(p);
        }
        if (step % 50 === 0) expect(h.runs()).toEqual(refRuns(ref, pages));
        const q = Math.floor(r() * pages);
        const len = 1 + Math.floor(r() * 40);
        let any = false;
        for (let p = q; p < Math.min(pages, q + len); p++) any ||= ref.has(p);
        expect(h.anyIn(q, Math.min(len, pages - q))).toBe(any);
      }
      expect(h.count).toBe(ref.size);
      expect(h.runs()).toEqual(refRuns(ref, pages));
      let first = 0;
      while (ref.has(first)) first++;
      expect(h.firstPresent()).toBe(first < pages ? first : -1);
    });
  }
});

describe('parseHoleRuns: the snapshot form', () => {
  const ram = 1 << 20; // 256 pages
  it('accepts ascending, apart, page-aligned runs inside RAM', () => {
    expect(parseHoleRuns([['0x40000000', 1], ['0x40002000', 3], ['0x400ff000', 1]], ram, fail)).toEqual([
      [0, 1],
      [2, 3],
      [255, 1],
    ]);
    expect(parseHoleRuns([], ram, fail)).toEqual([]);
  });
  it.each([
    [[['0x40000800', 1]], /entry 0: address 0x40000800 is not 4 KiB aligned/],
    [[['0x3ffff000', 1]], /entry 0: address 0x3ffff000 is outside RAM/],
    [[['0x40100000', 1]], /entry 0: address 0x40100000 is outside RAM/],
    [[['0x400ff000', 2]], /entry 0: 2 pages from 0x400ff000 do not fit in RAM/],
    [[['0x40000000', 0]], /entry 0: 0 pages/],
    [[['0x40000000', 1.5]], /entry 0: 1.5 pages/],
    [[['0x40002000', 1], ['0x40000000', 1]], /entry 1: runs must be ascending, apart and not overlapping/],
    [[['0x40000000', 2], ['0x40001000', 1]], /entry 1: runs must be ascending/],
    [[['0x40000000', 1], ['0x40001000', 1]], /entry 1: runs must be ascending, apart/],
    [[['0X40000000', 1]], /entry 0 must be \["0x<guest-physical address>", <pages>\]/],
    [[[1073741824, 1]], /entry 0 must be/],
    [[['0x40000000']], /entry 0 must be/],
    [{}, /must be an array/],
    [Array.from({ length: 129 }, (_, i) => [`0x${(0x4000_0000 + i * 0x2000).toString(16)}`, 1]), /at most 128/],
  ] as const)('refuses %j', (value, message) => {
    expect(() => parseHoleRuns(value, ram, fail)).toThrow(message);
  });
});

describe('HoleAwareMemory: services never touch a removed page', () => {
  function make() {
    const bytes = new Uint8Array(4 * 4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
    const holes = new PageHoles(4);
    const mem = new HoleAwareMemory(new FlatGuestMemory([{ base: Layout.RAM_BASE, bytes }]), holes);
    return { bytes, holes, mem };
  }
  const page = (n: number) => Layout.RAM_BASE + BigInt(n * 4096);

  it('with no holes it is the flat memory', () => {
    const { mem, bytes } = make();
    expect(mem.contains(page(0), 4 * 4096)).toBe(true);
    expect(mem.readU32(page(1))).toBe(new DataView(bytes.buffer).getUint32(4096, true));
    expect(() => mem.readU32(page(4))).toThrow(GuestMemoryError);
  });

  it('refuses any access touching a removed page, changing nothing, and allows the rest', () => {
    const { mem, bytes, holes } = make();
    holes.set(2, true);
    const before = Uint8Array.from(bytes);
    expect(mem.contains(page(2), 1)).toBe(false);
    expect(mem.contains(page(1), 4096)).toBe(true);
    expect(mem.contains(page(1) + 4095n, 2)).toBe(false);
    expect(() => mem.readU64(page(2) + 8n)).toThrow(GuestPageAbsentError);
    expect(() => mem.readU64(page(2) + 8n)).toThrow(/touches a page removed from the guest/);
    expect(() => mem.write(page(1) + 4000n, new Uint8Array(200))).toThrow(GuestPageAbsentError);
    expect(() => mem.writeU32(page(2), 1)).toThrow(GuestPageAbsentError);
    expect(() => mem.orU32(page(2) + 4n, 1)).toThrow(GuestPageAbsentError);
    expect(() => mem.andU32(page(2) + 4n, 1)).toThrow(GuestPageAbsentError);
    expect(() => mem.cmpxchgU32(page(2) + 4n, 0, 1)).toThrow(GuestPageAbsentError);
    expect(() => mem.read(page(3) - 1n, new Uint8Array(2))).toThrow(GuestPageAbsentError);
    expect(Buffer.from(bytes).equals(Buffer.from(before))).toBe(true);
    mem.writeU32(page(3), 0xdeadbeef);
    expect(mem.readU32(page(3))).toBe(0xdeadbeef);
    const b = new Uint8Array(8);
    mem.read(page(1) + 8n, b);
    expect([...b]).toEqual([...before.subarray(4096 + 8, 4096 + 16)]);
  });
});
