import type { GuestMemory } from '@plugvisor/core';
import { PAGE_SHIFT, PAGE_SIZE } from './abi.js';

/**
 * A guest page as the hypervisor keeps it mapped: 1024 little-endian 32-bit words over guest
 * RAM itself (zero-copy). Xen maps shared_info, vcpu_info, FIFO control blocks and event-array
 * pages globally (map_domain_page_global) and updates them with atomic bit operations; these
 * views are the same thing. They are made once, when the guest registers the page, so raising
 * an event never allocates and never leaves the page.
 */
export type PageView = Int32Array;

/** Maps guest frame `gfn` if the whole page is guest RAM; undefined otherwise (Xen: -EINVAL). */
export function mapGuestPage(memory: GuestMemory, gfn: bigint): PageView | undefined {
  if (gfn < 0n || gfn >= 1n << 52n) return undefined;
  const gpa = gfn << BigInt(PAGE_SHIFT);
  for (const r of memory.regions()) {
    const end = r.base + BigInt(r.bytes.byteLength);
    if (gpa < r.base || gpa + BigInt(PAGE_SIZE) > end) continue;
    const byteOffset = r.bytes.byteOffset + Number(gpa - r.base);
    if (byteOffset % 4 !== 0) return undefined; // a backend must give word-aligned RAM
    return new Int32Array(r.bytes.buffer, byteOffset, PAGE_SIZE / 4);
  }
  return undefined;
}

/** A page of host memory standing in for a Xen-owned page the guest has not mapped yet. */
export const hostPage = (): PageView => new Int32Array(PAGE_SIZE / 4);

// Bit helpers on a page view: word index + bit; all atomic, as Xen's guest_* bit operations.
export function testAndSetBit(view: PageView, word: number, bit: number): boolean {
  const m = 1 << bit;
  return (Atomics.or(view, word, m) & m) !== 0;
}
export function testAndClearBit(view: PageView, word: number, bit: number): boolean {
  const m = 1 << bit;
  return (Atomics.and(view, word, ~m) & m) !== 0;
}
export function testBit(view: PageView, word: number, bit: number): boolean {
  return (Atomics.load(view, word) & (1 << bit)) !== 0;
}
export function clearBit(view: PageView, word: number, bit: number): void {
  Atomics.and(view, word, ~(1 << bit));
}
export function setBit(view: PageView, word: number, bit: number): void {
  Atomics.or(view, word, 1 << bit);
}
