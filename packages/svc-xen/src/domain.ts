import { capabilityOf, type GuestMemory, type Vm } from '@plugvisor/core';
import {
  DOMID_GUEST,
  EVTCHN_2L_NR_CHANNELS,
  GUEST_EVTCHN_PPI,
  NR_VIRQS,
  PAGE_SHIFT,
  SHINFO,
  VCPU_INFO,
  virqType,
  XEN_FIDELITY,
} from './abi.js';
import { hostPage, mapGuestPage, testAndClearBit, testAndSetBit, testBit, clearBit, type PageView } from './guest-page.js';
import type { XenEvtchnHooks } from './hooks.js';
import { ECS, PortTable, allocatePort, getFreePort } from './ports.js';

const PENDING_WORD = SHINFO.EVTCHN_PENDING / 4;
const MASK_WORD = SHINFO.EVTCHN_MASK / 4;

/** Where one vCPU's vcpu_info lives: a page view and the word index of the struct in it. */
interface VcpuInfoSlot {
  view: PageView;
  word: number;
  /** Guest placement from VCPUOP_register_vcpu_info; null while unregistered. */
  gfn: bigint | null;
  offset: number;
}

/**
 * One VM as a Xen domain: its event-channel table, where shared_info and each vcpu_info live,
 * VIRQ bindings, the VMM's ports (the VMM plays the backend domain 0), and which
 * event-channel ABI is active. This is svc-xen's per-VM state.
 *
 * Pending and mask bits live where Xen keeps them: in guest memory (shared_info, vcpu_info),
 * or, before the guest has mapped shared_info or registered a vcpu_info, in host pages that
 * stand in for Xen's own (Xen's shared_info page and dummy_vcpu_info), so an event raised
 * early is not lost: mapping copies the host page into the guest frame.
 */
export class XenDomain {
  readonly ports = new PortTable();
  /** xl's max_event_channels - 1 by default (libxl: 1023). */
  maxEvtchnPort = 1023;
  sharedInfoGfn: bigint | null = null;
  /** shared_info: a host page until XENMEM_add_to_physmap maps it into guest RAM. */
  shinfo: PageView = hostPage();
  /** Xen's dummy_vcpu_info, where events for an unregistered vCPU (other than 0) go. */
  dummy: PageView = hostPage();
  vcpuInfo: VcpuInfoSlot[] = [];
  /** virq_to_evtchn, vcpu * NR_VIRQS + virq → port (0 = unbound). */
  virqToPort = new Uint32Array(0);
  /** The VMM's own ports (domain 0): index = VMM port; -1 free, 0 unbound (for us), n > 0 bound to guest port n. */
  vmmPorts: number[] = [-1];
  /** The active event-channel ABI: '2l', or the name its package set (e.g. 'fifo'). */
  abi = '2l';
  /** The active non-2-level ABI's per-domain state, so its hook taps need no lookup. */
  abiState: unknown = undefined;
  /** Incremented whenever guest pages were (re)mapped: cached views elsewhere must be remade. */
  memoryEpoch = 0;
  /**
   * Pages the domain owns that are not in its physical map (Xen's d->tot_pages counts them):
   * what XENMEM_increase_reservation allocates on an auto-translated guest, and the page a
   * populate_physmap over a mapped gfn displaces (Arm's p2m replaces the entry; the old page
   * stays the domain's). tot_pages is the machine's present RAM pages plus these (ops/reservation.ts).
   */
  unmappedPages = 0;
  /**
   * A new domain whose shared_info wallclock is still to be written (Xen's arch_domain_create
   * calls update_domain_wallclock_time): set by `create`, done at the first binding to a
   * machine, whose clock it reads. Saved while set, so a domain snapshotted before then still
   * gets it. Only with the opt-in `xen-fidelity` (README, "Deviations and limits").
   */
  wallclockPending = false;
  private mappedFor: GuestMemory | undefined;
  private vcpus = 0;

  constructor(
    readonly vm: Vm,
    readonly hooks: XenEvtchnHooks,
  ) {}

  get domid(): number {
    return DOMID_GUEST;
  }

  get vcpuCount(): number {
    this.sync();
    return this.vcpus;
  }

  /**
   * Binds the domain to the VM's machine: per-vCPU tables sized, registered pages mapped. Runs
   * at every entry point; it costs one comparison once done. A restored VM maps its pages
   * here, on first use, because state is loaded before a machine is attached.
   */
  sync(): void {
    if (this.mappedFor !== undefined && this.mappedFor === this.vm.machine.memory) return;
    const machine = this.vm.machine;
    const mem = machine.memory;
    if (this.vcpus === 0) {
      this.vcpus = machine.vcpuCount;
      this.virqToPort = new Uint32Array(this.vcpus * NR_VIRQS);
      this.rebuildVirqs(); // a restored domain's VIRQ ports
    }
    if (this.wallclockPending) {
      this.wallclockPending = false;
      if (this.vm.abi.isEnabled(XEN_FIDELITY)) this.writeWallclock();
    }
    if (this.sharedInfoGfn !== null) {
      const v = mapGuestPage(mem, this.sharedInfoGfn);
      if (v) this.shinfo = v;
      else this.sharedInfoGfn = null; // the page is no longer RAM (a different machine): Xen's page stays hidden
    }
    const slots: VcpuInfoSlot[] = [];
    for (let i = 0; i < this.vcpus; i++) {
      const prev = this.vcpuInfo[i];
      const slot: VcpuInfoSlot = prev ?? { view: this.dummy, word: 0, gfn: null, offset: 0 };
      if (slot.gfn !== null) {
        const v = mapGuestPage(mem, slot.gfn);
        if (v) slot.view = v, slot.word = slot.offset / 4;
        else slot.gfn = null;
      }
      if (slot.gfn === null) {
        // XEN_LEGACY_MAX_VCPUS = 1 on Arm: vCPU 0 starts in shared_info, the others in the dummy.
        slot.view = i === 0 ? this.shinfo : this.dummy;
        slot.word = 0;
      }
      slots.push(slot);
    }
    this.vcpuInfo = slots;
    this.mappedFor = mem;
    this.memoryEpoch++;
  }

  /**
   * update_domain_wallclock_time (xen/common/time.c), as arch_domain_create runs it on Arm
   * (xen/arch/arm/domain.c): wc_version goes odd, wc_sec/wc_nsec/wc_sec_hi are written, then
   * it goes even — version_update_begin/end (xen/include/xen/time.h) take a new domain's 0 to 1
   * and then 2, the value a guest reads. Xen writes the UTC of its system time 0 as dom0 last
   * set it (XENPF_settime64, do_settime), or 0 if dom0 never did. Here the VMM is dom0 and the
   * domain's time starts with it: the host's UTC when the domain is first bound to its machine
   * (the machine's `counter-clock`; a machine without one gives 0, as Xen before any settime).
   * A guest adds its own uptime, as Linux's xen_read_wallclock (arch/arm/xen/enlighten.c) does.
   */
  private writeWallclock(): void {
    const ns = capabilityOf(this.vm.machine, 'counter-clock')?.sample('virtual').wallClockNs ?? 0n;
    const sec = ns / 1_000_000_000n;
    const v = this.shinfo;
    const w = (off: number, x: number) => Atomics.store(v, off / 4, x | 0);
    w(SHINFO.WC_VERSION, (v[SHINFO.WC_VERSION / 4]! + 1) | 1);
    w(SHINFO.WC_SEC, Number(sec & 0xffff_ffffn));
    w(SHINFO.WC_NSEC, Number(ns % 1_000_000_000n));
    w(SHINFO.WC_SEC_HI, Number((sec >> 32n) & 0xffff_ffffn));
    w(SHINFO.WC_VERSION, v[SHINFO.WC_VERSION / 4]! + 1);
  }

  /** Pages changed (shared_info mapped, vcpu_info registered): re-derive every view. */
  remap(): void {
    this.mappedFor = undefined;
    this.sync();
  }

  // ---- limits and allocation --------------------------------------------------------------

  maxEvtchns(): number {
    return this.hooks.maxPorts.call(this) ?? EVTCHN_2L_NR_CHANNELS;
  }

  private readonly busy = (port: number): boolean => this.hooks.isBusy.call(this, port) === true;

  /** get_free_port(): lowest free port (already counted active), or a negative errno. */
  getFreePort(): number {
    return getFreePort(this.ports, this.maxEvtchnPort, this.maxEvtchns(), this.busy);
  }

  allocatePort(port: number): number {
    return allocatePort(this.ports, port, this.maxEvtchnPort, this.maxEvtchns(), this.busy);
  }

  /** check_free_port(): an error path left an allocated port FREE: uncount it. */
  releaseIfFree(port: number): void {
    if (port >= 0 && this.ports.isValid(port) && this.ports.state[port] === ECS.FREE) this.ports.active--;
  }

  /** evtchn_port_init: the port was just bound. */
  portInit(port: number): void {
    this.hooks.portInit.call(this, port);
  }

  // ---- raising -----------------------------------------------------------------------------

  /** evtchn_port_set_pending(d, vcpu, chn): only for a usable port. */
  setPending(vcpu: number, port: number): void {
    if (this.ports.state[port]! <= ECS.RESERVED) return;
    if (this.hooks.setPending.call(this, port, vcpu) === undefined) this.set2l(vcpu, port);
  }

  /** evtchn_port_clear_pending. */
  clearPending(port: number): void {
    if (this.ports.state[port]! <= ECS.RESERVED) return;
    if (this.hooks.clearPending.call(this, port) === undefined) clearBit(this.shinfo, PENDING_WORD + (port >>> 5), port & 31);
  }

  /** evtchn_port_unmask. */
  unmask(port: number): void {
    if (this.ports.state[port]! <= ECS.RESERVED) return;
    if (this.hooks.unmask.call(this, port) === undefined) this.unmask2l(port);
  }

  /** evtchn_2l_set_pending (event_2l.c). */
  private set2l(vcpu: number, port: number): void {
    const sh = this.shinfo;
    if (testAndSetBit(sh, PENDING_WORD + (port >>> 5), port & 31)) return;
    if (!testBit(sh, MASK_WORD + (port >>> 5), port & 31) && !this.testAndSetSelector(vcpu, port >>> 6)) this.markEventsPending(vcpu);
  }

  /** evtchn_2l_unmask: clear mask; if it was set and the port is pending, select and upcall. */
  private unmask2l(port: number): void {
    const sh = this.shinfo;
    const vcpu = this.ports.notifyVcpu[port]!;
    if (
      testAndClearBit(sh, MASK_WORD + (port >>> 5), port & 31) &&
      testBit(sh, PENDING_WORD + (port >>> 5), port & 31) &&
      !this.testAndSetSelector(vcpu, port >>> 6)
    )
      this.markEventsPending(vcpu);
  }

  /** Bit `sel` of the vCPU's 64-bit evtchn_pending_sel. */
  private testAndSetSelector(vcpu: number, sel: number): boolean {
    const s = this.vcpuInfo[vcpu]!;
    return testAndSetBit(s.view, s.word + VCPU_INFO.PENDING_SEL / 4 + (sel >>> 5), sel & 31);
  }

  /** Reads the 2-level pending bit of a port (FIFO's setup_ports copies it). */
  pending2l(port: number): boolean {
    return port < EVTCHN_2L_NR_CHANNELS && testBit(this.shinfo, PENDING_WORD + (port >>> 5), port & 31);
  }

  /**
   * vcpu_mark_events_pending (xen/arch/arm/domain.c): test-and-set evtchn_upcall_pending and,
   * on its 0→1 change, inject the event-channel PPI into the vCPU. Both ABIs end here.
   */
  markEventsPending(vcpu: number): void {
    const s = this.vcpuInfo[vcpu]!;
    if (testAndSetBit(s.view, s.word + VCPU_INFO.UPCALL_PENDING / 4, 0)) return;
    this.vm.machine.setInterrupt(vcpu, GUEST_EVTCHN_PPI, true);
  }

  // ---- closing -----------------------------------------------------------------------------

  /** evtchn_free: clear pending (while still usable), then FREE. */
  private freePort(port: number): void {
    this.clearPending(port);
    this.ports.free(port);
  }

  /** evtchn_close(d, port, guest): 0 or a negative errno. */
  close(port: number): number {
    const t = this.ports;
    if (!t.isValid(port)) return -22;
    switch (t.state[port]) {
      case ECS.FREE:
      case ECS.RESERVED:
        return -22;
      case ECS.VIRQ: {
        const virq = t.remotePort[port]!;
        const v = virqType(virq) !== 'vcpu' ? 0 : t.notifyVcpu[port]!;
        this.virqToPort[v * NR_VIRQS + virq] = 0;
        break;
      }
      case ECS.INTERDOMAIN: {
        const rport = t.remotePort[port]!;
        if (t.remoteDom[port] === this.domid) {
          // loopback: the other end goes back to UNBOUND, accepting us
          t.state[rport] = ECS.UNBOUND;
          t.remoteDom[rport] = this.domid;
          t.remotePort[rport] = 0;
        } else {
          this.vmmPorts[rport] = 0; // the VMM's end waits for a new binding from us
        }
        break;
      }
    }
    this.freePort(port);
    return 0;
  }

  /** evtchn_reset's loop: close every port while any is active. */
  closeAll(): void {
    for (let i = 1; this.ports.isValid(i) && this.ports.active > 0; i++) this.close(i);
  }

  // ---- binding helpers used by the ops ----------------------------------------------------

  /** The domain a guest-supplied domid names: 'self', 'vmm' (domain 0), or undefined (-ESRCH). */
  /** Is guest frame `gfn` where the guest registered shared_info or a vcpu_info (pages Xen keeps mapped)? */
  holdsRegisteredPage(gfn: bigint): boolean {
    return this.sharedInfoGfn === gfn || this.vcpuInfo.some((s) => s.gfn === gfn);
  }

  lookupDomain(domid: number): 'self' | 'vmm' | undefined {
    if (domid === 0x7ff0 || domid === this.domid) return 'self';
    if (domid === 0) return 'vmm';
    return undefined;
  }

  virqPort(vcpu: number, virq: number): number {
    return this.virqToPort[vcpu * NR_VIRQS + virq]!;
  }

  setVirqPort(vcpu: number, virq: number, port: number): void {
    this.virqToPort[vcpu * NR_VIRQS + virq] = port;
  }

  /** Rebuilds virq_to_evtchn from the port table (after a snapshot load). */
  rebuildVirqs(): void {
    const t = this.ports;
    for (let p = 1; p < t.valid; p++) {
      if (t.state[p] !== ECS.VIRQ) continue;
      const virq = t.remotePort[p]!;
      const v = virqType(virq) !== 'vcpu' ? 0 : t.notifyVcpu[p]!;
      this.virqToPort[v * NR_VIRQS + virq] = p;
    }
  }

  // ---- shared_info and vcpu_info placement ------------------------------------------------

  /**
   * XENMEM_add_to_physmap(XENMAPSPACE_shared_info, gfn): Xen's page appears at gfn. Our page is
   * the guest RAM frame itself, so the current contents (host page, or the previous frame) are
   * copied there first. 0 or a negative errno: -EBUSY if mapped already (Xen demands an unmap
   * first), -EINVAL if gfn is not a RAM page.
   */
  mapSharedInfo(gfn: bigint): number {
    this.sync();
    if (this.sharedInfoGfn !== null) return -16;
    const view = mapGuestPage(this.vm.machine.memory, gfn);
    if (!view) return -22;
    view.set(this.shinfo);
    this.sharedInfoGfn = gfn;
    this.shinfo = view;
    this.remap();
    return 0;
  }

  /**
   * VCPUOP_register_vcpu_info, after the argument checks: place vCPU `vcpu`'s vcpu_info at
   * (gfn, offset), copy the current contents (zero if it was the dummy), then set every
   * selector bit and raise an upcall so nothing pending is lost (map_guest_area).
   */
  registerVcpuInfo(vcpu: number, gfn: bigint, offset: number): number {
    this.sync();
    const slot = this.vcpuInfo[vcpu]!;
    if (slot.gfn !== null) return -16;
    const view = mapGuestPage(this.vm.machine.memory, gfn);
    if (!view) return -22;
    const word = offset / 4;
    const size = VCPU_INFO.SIZE / 4;
    if (slot.view === this.dummy) view.fill(0, word, word + size);
    else view.set(slot.view.subarray(slot.word, slot.word + size), word);
    slot.gfn = gfn;
    slot.offset = offset;
    slot.view = view;
    slot.word = word;
    Atomics.store(view, word + VCPU_INFO.PENDING_SEL / 4, -1);
    Atomics.store(view, word + VCPU_INFO.PENDING_SEL / 4 + 1, -1);
    this.markEventsPending(vcpu);
    return 0;
  }

  sharedInfoGpa(): bigint | null {
    return this.sharedInfoGfn === null ? null : this.sharedInfoGfn << BigInt(PAGE_SHIFT);
  }
}
