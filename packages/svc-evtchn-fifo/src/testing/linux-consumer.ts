import type { MemoryMachine } from '@plugvisor/core/testing';
import { GUEST_EVTCHN_PPI, mapGuestPage, type PageView } from '@plugvisor/svc-xen';
import type { XenGuest } from '@plugvisor/svc-xen/testing';
import { BUSY_BIT, CONTROL_BLOCK, EVTCHN_FIFO, LINK_MASK, LINKED_BIT, MASKED_BIT, PENDING_BIT } from '../fifo/abi.js';

/**
 * A TypeScript mirror of Linux's guest side of FIFO event channels
 * (drivers/xen/events/events_fifo.c and the upcall loop of events_base.c),
 * working on guest RAM exactly as the kernel does: control block and event words through
 * atomic word operations, hypercalls with argument structs in RAM. One instance per domain;
 * `handlePort` is the IRQ handler (it gets the port after the ack cleared PENDING).
 */
export class LinuxFifoGuest {
  /** Per-vCPU control-block views (the page is zeroed by init, as clear_page). */
  readonly cb: Array<PageView | undefined> = [];
  /** Per-vCPU local copies of head[16] (Linux's per-cpu cpu_queue). */
  readonly localHead: Uint32Array[] = [];
  readonly pages: PageView[] = [];
  /** vcpu_info word index per vCPU, for evtchn_upcall_pending. */
  private readonly vcpuInfo: Array<{ view: PageView; word: number }> = [];

  constructor(
    readonly g: XenGuest,
    readonly machine: MemoryMachine,
    readonly handlePort: (vcpu: number, port: number) => void,
  ) {}

  /** Where each vCPU's vcpu_info is (the guest registered it there). */
  setVcpuInfo(vcpu: number, gfn: bigint, offset: number): void {
    this.vcpuInfo[vcpu] = { view: mapGuestPage(this.machine.memory, gfn)!, word: offset / 4 };
  }

  /** init_control_block: clear the page, zero local heads, EVTCHNOP_init_control. Returns rc. */
  initControlBlock(vcpu: number, gfn: bigint): number {
    const view = mapGuestPage(this.machine.memory, gfn)!;
    view.fill(0);
    this.localHead[vcpu] = new Uint32Array(EVTCHN_FIFO.MAX_QUEUES);
    const rc = this.g.evtchn(vcpu, 11, 24, [[0, 8, gfn], [8, 4, 0], [12, 4, vcpu]]);
    if (rc === 0) this.cb[vcpu] = view;
    return rc;
  }

  /** evtchn_fifo_setup's expansion step: fill a page with MASKED, then EVTCHNOP_expand_array. */
  expandArray(gfn: bigint, vcpu = 0): number {
    const view = mapGuestPage(this.machine.memory, gfn)!;
    view.fill(MASKED_BIT);
    const rc = this.g.evtchn(vcpu, 12, 8, [[0, 8, gfn]]);
    if (rc === 0) this.pages.push(view);
    return rc;
  }

  word(port: number): [PageView, number] {
    return [this.pages[port >>> 10]!, port & 1023];
  }

  mask(port: number): void {
    const [p, i] = this.word(port);
    Atomics.or(p, i, MASKED_BIT);
  }

  /** evtchn_fifo_unmask → clear_masked_cond; the hypercall only when the port is pending. */
  unmask(port: number, vcpu = 0): void {
    const [p, i] = this.word(port);
    let w = Atomics.load(p, i);
    for (;;) {
      if (!(w & MASKED_BIT)) return;
      if (w & PENDING_BIT) {
        this.g.evtchn(vcpu, 9, 4, [[0, 4, port]]);
        return;
      }
      const old = w & ~BUSY_BIT; // never clear MASKED while Xen holds BUSY
      const found = Atomics.compareExchange(p, i, old, old & ~MASKED_BIT);
      if (found === old) return;
      w = found;
    }
  }

  /** clear_linked: atomically clear LINKED and LINK, return the old LINK. */
  private clearLinked(p: PageView, i: number): number {
    let w = Atomics.load(p, i);
    for (;;) {
      const found = Atomics.compareExchange(p, i, w, w & ~(LINKED_BIT | LINK_MASK));
      if (found === w) return w & LINK_MASK;
      w = found;
    }
  }

  /** consume_one_event(cpu, q, &ready): returns the updated local ready mask. */
  private consumeOne(vcpu: number, cb: PageView, q: number, ready: number): number {
    const heads = this.localHead[vcpu]!;
    let head = heads[q]!;
    if (head === 0) head = Atomics.load(cb, CONTROL_BLOCK.HEAD / 4 + q) >>> 0;
    const port = head;
    const [p, i] = this.word(port);
    head = this.clearLinked(p, i);
    if (head === 0) ready &= ~(1 << q);
    const w = Atomics.load(p, i);
    if (w & PENDING_BIT && !(w & MASKED_BIT)) {
      Atomics.and(p, i, ~PENDING_BIT); // the irq ack (clear_evtchn) before the handler
      this.handlePort(vcpu, port);
    }
    heads[q] = head;
    return ready;
  }

  /** __evtchn_fifo_handle_events: drain the queues, lowest priority number first. */
  handleEvents(vcpu: number): void {
    const cb = this.cb[vcpu];
    if (cb === undefined) return;
    let ready = Atomics.exchange(cb, CONTROL_BLOCK.READY / 4, 0);
    while (ready !== 0) {
      const q = 31 - Math.clz32(ready & -ready);
      ready = this.consumeOne(vcpu, cb, q, ready);
      ready |= Atomics.exchange(cb, CONTROL_BLOCK.READY / 4, 0);
    }
  }

  /**
   * The interrupt: if PPI 31 is pending on the vCPU, take it (edge: taking it clears it) and
   * run __xen_evtchn_do_upcall: clear evtchn_upcall_pending, handle, repeat while set again.
   */
  upcall(vcpu: number): boolean {
    const irqs = this.machine.interrupts[vcpu]!;
    if (!irqs.has(GUEST_EVTCHN_PPI)) return false;
    irqs.delete(GUEST_EVTCHN_PPI);
    const vi = this.vcpuInfo[vcpu]!;
    do {
      Atomics.and(vi.view, vi.word, ~0xff); // evtchn_upcall_pending = 0
      this.handleEvents(vcpu);
    } while (Atomics.load(vi.view, vi.word) & 0xff);
    return true;
  }

  /** EVTCHNOP_set_priority. */
  setPriority(port: number, priority: number, vcpu = 0): number {
    return this.g.evtchn(vcpu, 13, 8, [[0, 4, port], [4, 4, priority]]);
  }
}

