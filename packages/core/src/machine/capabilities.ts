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

/** Capability names and their interfaces. Extend by declaration merging for new abilities. */
export interface MachineCapabilities {
  'counter-clock': CounterClock;
  'interrupt-config': InterruptConfig;
  entropy: EntropySource;
  'interrupt-pending': InterruptPending;
}

export type CapabilityName = keyof MachineCapabilities;

/** The machine's `name` capability, or undefined when it has none. */
export function capabilityOf<K extends CapabilityName>(machine: Machine, name: K): MachineCapabilities[K] | undefined {
  return machine.capability?.(name);
}
