import { capabilityOf, continueCall, guestPhysicalRange, type CallHandler, type GuestPages, type VcpuContext } from '@plugvisor/core';
import { MEMOP_EXTENT_SHIFT, PAGE_SHIFT, PAGE_SIZE, XENMEM, XENMEMF, XEN_ERRNO as E, DOMU_MAX_ORDER } from '../abi.js';
import type { XenDomain } from '../domain.js';
import { GuestStruct } from '../guest-args.js';
import { ret } from '../subop.js';

/**
 * Xen's memory reservation sub-ops of memory_op, as xen/common/memory.c has them for an
 * unprivileged, auto-translated Arm guest (a domU):
 *
 *   do_memory_op                   the checks every reservation op makes before any extent, each
 *                                  answering the start extent (never an errno): the struct not
 *                                  readable, nr_extents > UINT_MAX >> MEMOP_EXTENT_SHIFT, start >=
 *                                  nr_extents, a domid other than DOMID_SELF / our own (no such
 *                                  domain, or XSM refusing a domU another's reservation),
 *                                  construct_memop_from_reservation refusing mem_flags.
 *   decrease_reservation           extent_order > max_order: nothing done; each extent's gmfn is
 *                                  read from extent_start[i] and its 2^order pages removed
 *                                  (guest_remove_page); an unreadable entry or a page not there
 *                                  ends the op at that extent (pages of it already removed stay so).
 *   populate_physmap               the same order limit (MAX_ORDER for populate-on-demand, which a
 *                                  domain may not ask for itself: it ends at the first extent);
 *                                  each extent's gpfn is read and 2^order zeroed pages are
 *                                  allocated (failing once tot_pages would pass max_pages) and
 *                                  mapped there. Arm is auto-translated, so nothing is written back.
 *   increase_reservation           the order limit; each extent allocates 2^order pages to the
 *                                  domain, unmapped; an auto-translated guest is told nothing
 *                                  (extent_start is not read or written: `!paging_mode_translate`).
 *
 * Arm's guest_handle_subrange_okay is `(1)` (xen/arch/arm/include/asm/guest_access.h): a bad
 * extent array is found entry by entry, when copying it fails. The result is the number of
 * extents done (args.nr_done). Between extents Xen asks hypercall_preempt_check(); here a leg
 * ends after EXTENT_PAGES_PER_LEG pages or as soon as the vCPU has an interrupt pending, and the
 * call continues as hypercall_create_continuation(__HYPERVISOR_memory_op, "lh", op | (done <<
 * MEMOP_EXTENT_SHIFT), arg): x0 rewritten, x1 as it was, the HVC re-executed.
 *
 * Where this differs from a real Xen, because the machine's RAM is a fixed range:
 *   - populate_physmap at a gpfn outside RAM ends the op there (Xen would map a page anywhere in
 *     the guest's physical address space; guest_physmap_add_page failing ends it the same way);
 *   - removing the page that holds the guest's registered shared_info or a vcpu_info ends the op
 *     there (Xen's page there is its own, which guest_remove_page does not free).
 * A machine without the 'guest-pages' capability cannot change the physical map: every
 * decrease and populate ends at its first extent (as Xen when guest_remove_page or the
 * allocation fails), increase still accounts pages.
 *
 * struct xen_memory_reservation (xen/include/public/memory.h, arm64, 32 bytes):
 *   extent_start u64 @0 (a guest handle to xen_pfn_t[]), nr_extents u64 @8, extent_order u32 @16,
 *   mem_flags u32 @20, domid u16 @24, padding to 32.
 */
export const RESERVATION_SIZE = 32;
/** struct xen_memory_domain {domid_t domid} (memory.h): what current/maximum_reservation read. */
export const MEMORY_DOMAIN_SIZE = 2;
/** Pages a leg may change before it yields (Xen's preempt check is time-based; this is its budget). */
export const EXTENT_PAGES_PER_LEG = 256;

const UINT_MAX = 0xffff_ffffn;
const shift = BigInt(MEMOP_EXTENT_SHIFT);

/** The domain's RAM accounting: tot_pages and max_pages as Xen keeps them for it. */
export function reservationOf(v: VcpuContext, d: XenDomain): { tot: number; max: number } {
  const pages = capabilityOf(v.machine, 'guest-pages');
  if (pages) {
    const s = pages.size();
    return { tot: s.present + d.unmappedPages, max: s.pages };
  }
  // No page control: every RAM page is present, and max_pages is RAM (xl's maxmem defaults to memory).
  let bytes = 0;
  for (const r of v.machine.memory.regions()) bytes += r.bytes.byteLength;
  const ram = Math.floor(bytes / PAGE_SIZE);
  return { tot: ram + d.unmappedPages, max: ram };
}

/**
 * copy_from_guest_offset of extent_start[i] (a xen_pfn_t), or undefined when it faults. The list
 * is a guest virtual address: each of its pages is translated once per leg (an entry that
 * straddles two pages, only if misaligned, is translated whole).
 */
function extentReader(v: VcpuContext, pages: GuestPages | undefined, list: bigint): (i: bigint) => bigint | undefined {
  const mem = v.machine.memory;
  let vpage = -1n;
  let ppage: bigint | undefined;
  return (i) => {
    const at = list + i * 8n;
    if (at + 8n > 1n << 64n) return undefined;
    let gpa: bigint | undefined;
    if ((at & 0xfffn) > 0xff8n) {
      gpa = guestPhysicalRange(v.machine, v.index, at, 8);
    } else {
      const page = at & ~0xfffn;
      if (page !== vpage) {
        vpage = page;
        ppage = guestPhysicalRange(v.machine, v.index, page, 1);
      }
      gpa = ppage === undefined ? undefined : ppage + (at - page);
    }
    if (gpa === undefined || !mem.contains(gpa, 8)) return undefined;
    if (pages && (!pages.isPresent(gpa) || !pages.isPresent(gpa + 7n))) return undefined;
    return mem.readU64(gpa);
  };
}

type Op = typeof XENMEM.increase_reservation | typeof XENMEM.decrease_reservation | typeof XENMEM.populate_physmap;

function reservationOp(op: Op): CallHandler<XenDomain> {
  return (v, b) => {
    const r = v.regs;
    const d = b.state;
    d.sync();
    const start = r.get(0) >> shift;
    const answer = (n: bigint) => r.set(0, n);
    const resv = GuestStruct.arg(v, r.get(1), RESERVATION_SIZE);
    if (!resv) return answer(start);
    const list = resv.u64(0);
    const nr = resv.u64(8);
    const order = resv.u32(16);
    const flags = resv.u32(20);
    if (nr > UINT_MAX >> shift) return answer(start); // too large to encode a continuation
    if (start >= nr) return answer(start);
    if (d.lookupDomain(resv.u16(24)) !== 'self') return answer(start); // none such, or XSM: a domU acts on itself only
    // construct_memop_from_reservation: address bits 1..PAGE_SHIFT cannot be met; a domU may
    // not ask for an exact physical node (propagate_node); a virtual node is ignored without vNUMA.
    const bits = flags & 0xff;
    if (bits !== 0 && bits <= PAGE_SHIFT) return answer(start);
    const node = ((flags >>> 8) - 1) & 0xff;
    if (!(flags & XENMEMF.vnode) && node !== 0xff && flags & XENMEMF.exact_node_request) return answer(start);
    const pod = op === XENMEM.populate_physmap && (flags & XENMEMF.populate_on_demand) !== 0;
    if (order > (pod ? MAX_ORDER : DOMU_MAX_ORDER)) return answer(start);

    const pages = capabilityOf(v.machine, 'guest-pages');
    const pending = capabilityOf(v.machine, 'interrupt-pending');
    const readExtent = extentReader(v, pages, list);
    const span = 1 << order;
    const spanBytes = BigInt(span) << BigInt(PAGE_SHIFT);
    let legPages = 0;
    for (let i = start; i < nr; i++) {
      if (i !== start && (legPages >= EXTENT_PAGES_PER_LEG || pending?.pending(v.index))) {
        return continueCall(v, { x0: BigInt(op) | (i << shift) });
      }
      if (op === XENMEM.increase_reservation) {
        const { tot, max } = reservationOf(v, d);
        if (tot + span > max) return answer(i); // alloc_domheap_pages: assign_pages refuses past max_pages
        d.unmappedPages += span;
      } else {
        const gfn = readExtent(i);
        if (gfn === undefined || !pages || pod) return answer(i);
        const gpa = gfn << BigInt(PAGE_SHIFT);
        if (gfn >= 1n << 52n) return answer(i);
        if (op === XENMEM.decrease_reservation) {
          for (let j = 0n; j < BigInt(span); j++) {
            const page = gpa + (j << BigInt(PAGE_SHIFT));
            if (!pages.isPresent(page) || d.holdsRegisteredPage(page >> BigInt(PAGE_SHIFT))) return answer(i);
            pages.remove(page, 1);
          }
        } else {
          const { tot, max } = reservationOf(v, d);
          if (tot + span > max) return answer(i);
          const s = pages.size();
          if (gpa < s.base || gpa + spanBytes > s.base + (BigInt(s.pages) << BigInt(PAGE_SHIFT))) return answer(i);
          // A mapped page there is displaced (it stays the domain's, unmapped) and a zeroed one takes its place.
          let displaced = 0;
          for (let j = 0n; j < BigInt(span); j++) {
            const page = gpa + (j << BigInt(PAGE_SHIFT));
            if (pages.isPresent(page)) {
              if (d.holdsRegisteredPage(page >> BigInt(PAGE_SHIFT))) return answer(i);
              displaced++;
            }
          }
          if (displaced) pages.remove(gpa, span);
          pages.add(gpa, span);
          d.unmappedPages += displaced;
        }
      }
      legPages += span;
    }
    answer(nr);
  };
}

export const increaseReservation = reservationOp(XENMEM.increase_reservation);
export const decreaseReservation = reservationOp(XENMEM.decrease_reservation);
export const populatePhysmap = reservationOp(XENMEM.populate_physmap);

/** Page-count queries: struct xen_memory_domain in, a page count or an errno out. */
function reservationStat(which: 'current' | 'maximum'): CallHandler<XenDomain> {
  return (v, b) => {
    const r = v.regs;
    const d = b.state;
    d.sync();
    const arg = GuestStruct.arg(v, r.get(1), MEMORY_DOMAIN_SIZE);
    if (!arg) return ret(r, -E.EFAULT);
    const dom = d.lookupDomain(arg.u16(0));
    if (dom === undefined) return ret(r, -E.ESRCH);
    if (dom === 'vmm') return ret(r, -E.EPERM); // xsm_memory_stat_reservation(XSM_TARGET): not ours
    const { tot, max } = reservationOf(v, d);
    ret(r, which === 'current' ? tot : max);
  };
}

export const currentReservation = reservationStat('current');
export const maximumReservation = reservationStat('maximum');

/** Xen's MAX_ORDER on Arm (CONFIG_PAGEALLOC_MAX_ORDER: 18 with 4 KiB pages, xen/include/xen/mm.h). */
const MAX_ORDER = 18;
