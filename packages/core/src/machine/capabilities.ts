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
 * Whether a vCPU has an interrupt pending that its interrupt controller would signal (arm64: the
 * GIC CPU interface asserts IRQ; the guest's PSTATE.I mask is not consulted). What a preemptible
 * call asks between units of work, as Xen's hypercall_preempt_check() asks
 * local_events_need_delivery() (xen/include/xen/sched.h, xen/arch/arm/include/asm/event.h).
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

/** Capability names and their interfaces. Extend by declaration merging for new abilities. */
export interface MachineCapabilities {
  'counter-clock': CounterClock;
  'interrupt-config': InterruptConfig;
  entropy: EntropySource;
  'interrupt-pending': InterruptPending;
  'guest-pages': GuestPages;
}

export type CapabilityName = keyof MachineCapabilities;

/** The machine's `name` capability, or undefined when it has none. */
export function capabilityOf<K extends CapabilityName>(machine: Machine, name: K): MachineCapabilities[K] | undefined {
  return machine.capability?.(name);
}
