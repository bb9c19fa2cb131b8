import type { XenDomain } from '@plugvisor/svc-xen';
import { BUSY_BIT, EVTCHN_FIFO, LINK_MASK, LINKED_BIT, MASKED_BIT, PENDING_BIT } from './abi.js';
import type { FifoDomain } from './domain.js';

/**
 * Xen's FIFO raise path (xen/common/event_fifo.c evtchn_fifo_set_pending, lock_old_queue), step for step. Xen
 * takes queue locks because its vCPUs run in parallel; Plugvisor handles hypercalls and VMM
 * raises one at a time, so the lock/retry loop always succeeds at its first try and is left
 * out, but every guest-visible step (bit order, LINK cmpxchg, BUSY, head/ready/upcall) is
 * kept, because the guest may run on another thread against the same memory. No allocation.
 */

/** The page view holding `port`'s event word, or undefined (no page yet). */
function pageOf(f: FifoDomain, port: number): Int32Array | undefined {
  return port < f.numEvtchns ? f.pages[port >>> 10] : undefined;
}

/** try_set_link: 1 linked, 0 tail not LINKED (queue empty), -1 lost a race (retry). */
function trySetLink(page: Int32Array, idx: number, link: number): number {
  const w = Atomics.load(page, idx);
  if (!(w & LINKED_BIT)) return 0;
  const next = (w & ~(BUSY_BIT | LINK_MASK)) | link;
  return Atomics.compareExchange(page, idx, w, next) === w ? 1 : -1;
}

/**
 * evtchn_fifo_set_link: atomically point the tail word's LINK at `port` iff it is still
 * LINKED. On a lost race, set BUSY (the guest may not clear MASKED while BUSY is set) and
 * retry up to 4 times; give up reporting "linked" (Xen logs "port not linked").
 */
function setLink(page: Int32Array, idx: number, port: number): boolean {
  let rc = trySetLink(page, idx, port);
  if (rc >= 0) return rc === 1;
  Atomics.or(page, idx, BUSY_BIT);
  for (let attempt = 0; attempt < 4; attempt++) {
    rc = trySetLink(page, idx, port);
    if (rc >= 0) {
      if (rc === 0) Atomics.and(page, idx, ~BUSY_BIT);
      return rc === 1;
    }
  }
  Atomics.and(page, idx, ~BUSY_BIT);
  return true;
}

/** evtchn_fifo_set_pending(v, evtchn). */
export function fifoSetPending(d: XenDomain, f: FifoDomain, vcpu: number, port: number): void {
  const page = pageOf(f, port);
  if (page === undefined) {
    f.pending[port] = 1; // no page yet: remembered, re-raised when the page arrives
    return;
  }
  const idx = port & 1023;
  const v = f.vcpus[vcpu]!;
  const prio = f.priority[port]!;
  const last = f.lastq[port]!;
  const oldVcpu = f.vcpus[last >>> 16]!;
  const oldPrio = last & 0xff;

  // Control block not mapped: Xen drops the event before it touches PENDING ("The guest must
  // not unmask an event until the control block is initialized, so we can just drop the
  // event", xen/common/event_fifo.c evtchn_fifo_set_pending, `goto unlock`), so a later
  // unmask finds nothing pending and the event is lost. See README, "Deviations kept and fixed".
  if (v.cbView === undefined) return;
  Atomics.or(page, idx, PENDING_BIT); // was_pending only matters to SCHEDOP_poll, not modelled

  let linked = true;
  if (!(Atomics.load(page, idx) & MASKED_BIT) && !(Atomics.or(page, idx, LINKED_BIT) & LINKED_BIT)) {
    // If this event was the old queue's tail, that queue is now empty.
    if (oldVcpu.tails[oldPrio] === port) oldVcpu.tails[oldPrio] = 0;
    if (oldVcpu !== v || oldPrio !== prio) f.lastq[port] = prio | (vcpu << 16);
    linked = false;
    const tail = v.tails[prio]!;
    if (tail !== 0) {
      const tp = pageOf(f, tail);
      if (tp !== undefined) linked = setLink(tp, tail & 1023, port);
    }
    if (!linked) Atomics.store(v.cbView, f.headWord(v, prio), port);
    v.tails[prio] = port;
  }
  // A new head: mark the queue ready; upcall only when the ready bit was clear.
  if (!linked && !(Atomics.or(v.cbView, v.readyWord, 1 << prio) & (1 << prio))) d.markEventsPending(vcpu);
}

/** evtchn_fifo_clear_pending: PENDING only; the guest unlinks as it consumes. */
export function fifoClearPending(f: FifoDomain, port: number): void {
  const page = pageOf(f, port);
  if (page !== undefined) Atomics.and(page, port & 1023, ~PENDING_BIT);
}

/** evtchn_fifo_unmask: clear MASKED, relink if pending. */
export function fifoUnmask(d: XenDomain, f: FifoDomain, port: number): void {
  const page = pageOf(f, port);
  if (page === undefined) return;
  Atomics.and(page, port & 1023, ~MASKED_BIT);
  if (Atomics.load(page, port & 1023) & PENDING_BIT) fifoSetPending(d, f, d.ports.notifyVcpu[port]!, port);
}

/** evtchn_fifo_is_busy: LINKED (a closed port still in a guest queue cannot be reused). */
export function fifoIsBusy(f: FifoDomain, port: number): boolean {
  const page = pageOf(f, port);
  return page !== undefined && (Atomics.load(page, port & 1023) & LINKED_BIT) !== 0;
}

/** evtchn_fifo_init: a newly bound port starts at the default priority. */
export function fifoInit(f: FifoDomain, port: number): void {
  f.priority[port] = EVTCHN_FIFO.PRIORITY_DEFAULT;
}
