import type { Machine } from './machine.js';

/**
 * Optional machine abilities, looked up by name (`capabilityOf(machine, 'counter-clock')`), so
 * a new service's need adds a name here (or by declaration merging of MachineCapabilities in
 * the service's own package) instead of widening the Machine interface.
 */

/** The generic timer sampled with the host wall clock (KVM PTP, arch/arm64/kvm/hypercalls.c kvm_ptp_get_time). */
export interface CounterClock {
  /** Host wall clock (ns since the Unix epoch) and the guest-visible virtual or physical counter, taken together. */
  sample(counter: 'virtual' | 'physical'): { wallClockNs: bigint; counter: bigint };
}

/** An INTID's trigger mode on every vCPU (arm64: GICD_ICFGR). */
export interface InterruptConfig {
  configure(intid: number, trigger: 'level' | 'edge'): void;
}

/** Entropy for the guest (the behaviour-probe machine fixes it so random results show). */
export interface EntropySource {
  fill(out: Uint32Array): void;
}

/**
 * Whether a vCPU has an interrupt pending that it would take now: its interrupt controller
 * signals one (arm64: the GIC CPU interface asserts IRQ) and the guest does not mask it (arm64:
 * PSTATE.I clear at the trap). What a preemptible call asks between units of work, as Xen's
 * hypercall_preempt_check() asks local_events_need_delivery() (xen/include/xen/sched.h,
 * xen/arch/arm/include/asm/event.h: vcpu_event_delivery_is_enabled, then the vGIC).
 */
export interface InterruptPending {
  pending(vcpu: number): boolean;
}

/**
 * The guest's physical map at 4 KiB granularity: pages can be taken out of RAM and put back
 * zeroed, as Xen's guest_remove_page / guest_physmap_add_page do for the memory reservation
 * ops (xen/common/memory.c). While removed, a guest access to a page faults as the machine's
 * stage 2 reports it, and a service's access through `machine.memory` fails.
 */
export interface GuestPages {
  /** Removes `count` pages from `gpa` (4 KiB aligned, inside RAM); pages already gone stay so. Returns how many were removed. */
  remove(gpa: bigint, count: number): number;
  /** Puts removed pages of [gpa, gpa + count pages) back, zeroed; returns how many. */
  add(gpa: bigint, count: number): number;
  /** Is the page holding `gpa` RAM the guest has (inside RAM and not removed)? */
  isPresent(gpa: bigint): boolean;
  /** RAM's first address and size in pages, and how many of them are present now. */
  size(): { readonly base: bigint; readonly pages: number; readonly present: number };
}

/**
 * The identity registers of the machine's CPU implementation as its guest reads them at EL1:
 * MIDR_EL1 (what a guest under a hypervisor reads: VPIDR_EL2), REVIDR_EL1, AIDR_EL1 (Arm ARM
 * D23.2). What a KVM VMM reports through DISCOVER_IMPL_CPUS when the operator supplies no list
 * (Linux Documentation/virt/kvm/arm/hypercalls.rst).
 */
export interface CpuIdentity {
  read(vcpu: number): { readonly midr: bigint; readonly revidr: bigint; readonly aidr: bigint };
}

/**
 * The guest's own address translation, for hypercalls whose arguments are guest virtual
 * addresses (Xen on Arm: copy_from_guest/copy_to_guest translate through the vCPU's current
 * stage 1 and stage 2, xen/arch/arm/guestcopy.c → get_page_from_gva). `translate` gives the
 * guest-physical address of `va` as the vCPU sees it now — `va` itself while its MMU is off — or
 * undefined where the access would fault. A machine without it has no stage 1: addresses are
 * taken as guest-physical (see `guestPhysicalRange`).
 */
export interface GuestVirtual {
  translate(vcpu: number, va: bigint): bigint | undefined;
}

/** Capability names and their interfaces. Extend by declaration merging for new abilities. */
export interface MachineCapabilities {
  'counter-clock': CounterClock;
  'interrupt-config': InterruptConfig;
  entropy: EntropySource;
  'interrupt-pending': InterruptPending;
  'guest-pages': GuestPages;
  'guest-virtual': GuestVirtual;
  'cpu-identity': CpuIdentity;
}

export type CapabilityName = keyof MachineCapabilities;

/** The machine's `name` capability, or undefined when it has none. */
export function capabilityOf<K extends CapabilityName>(machine: Machine, name: K): MachineCapabilities[K] | undefined {
  return machine.capability?.(name);
}

const PAGE = 4096n;

/**
 * The guest-physical address of the `size` bytes a guest passed at virtual address `va`, as Xen's
 * copy_from_guest walks them page by page: each 4 KiB page translated ('guest-virtual'), the
 * range returned only when the pages are physically contiguous (an argument struct or array
 * entry is one object); undefined where any page would fault, or pages are scattered. On a
 * machine without the capability the address is guest-physical already.
 */
export function guestPhysicalRange(machine: Machine, vcpu: number, va: bigint, size: number): bigint | undefined {
  const gv = capabilityOf(machine, 'guest-virtual');
  if (!gv) return va;
  const start = gv.translate(vcpu, va);
  if (start === undefined || size <= 1) return start;
  const last = va + BigInt(size - 1);
  for (let page = (va / PAGE + 1n) * PAGE; page <= last; page += PAGE) {
    if (gv.translate(vcpu, page) !== start + (page - va)) return undefined;
  }
  return start;
}

/**
 * 'guest-pages' over one flat RAM buffer, for machines that run no guest code (the probe machine,
 * the MemoryMachine test double): a removed page is only a number in a set — nothing can fault
 * on it here — and its bytes are zeroed when removed and when put back, so nothing stale shows.
 * `onChange(gpa, count, removed, changed)` is told of every call that changed a page.
 */
export class FlatGuestPages implements GuestPages {
  private readonly removed = new Set<number>();

  constructor(
    private readonly ram: Uint8Array,
    private readonly base: bigint,
    private readonly onChange?: (gpa: bigint, count: number, removed: boolean) => void,
  ) {}

  remove(gpa: bigint, count: number): number {
    return this.change(gpa, count, true);
  }

  add(gpa: bigint, count: number): number {
    return this.change(gpa, count, false);
  }

  isPresent(gpa: bigint): boolean {
    const page = this.pageOf(gpa);
    return page !== undefined && !this.removed.has(page);
  }

  size(): { readonly base: bigint; readonly pages: number; readonly present: number } {
    const pages = this.ram.byteLength / 4096;
    return { base: this.base, pages, present: pages - this.removed.size };
  }

  /** Every page present again (nothing zeroed: for a machine reset that rewrites RAM anyway). */
  clear(): void {
    this.removed.clear();
  }

  private pageOf(gpa: bigint): number | undefined {
    const off = gpa - this.base;
    return off < 0n || off >= BigInt(this.ram.byteLength) ? undefined : Number(off >> 12n);
  }

  private change(gpa: bigint, count: number, remove: boolean): number {
    const first = this.pageOf(gpa);
    if ((gpa & 0xfffn) !== 0n || first === undefined || !Number.isInteger(count) || count < 0 || first + count > this.ram.byteLength / 4096) {
      throw new Error(`guest-pages: 0x${gpa.toString(16)} + ${count} pages is not inside RAM`);
    }
    let changed = 0;
    for (let p = first; p < first + count; p++) {
      if (this.removed.has(p) === remove) continue;
      if (remove) this.removed.add(p);
      else this.removed.delete(p);
      this.ram.fill(0, p * 4096, (p + 1) * 4096);
      changed++;
    }
    if (changed) this.onChange?.(gpa, count, remove);
    return changed;
  }
}
