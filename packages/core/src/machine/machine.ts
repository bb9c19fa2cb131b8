import { randomFillSync } from 'node:crypto';
import type { GuestMemory } from './memory.js';
import type { RegisterFile } from './registers.js';
import { capabilityOf, type CapabilityName, type MachineCapabilities } from './capabilities.js';

/**
 * What a machine backend (arm64 on Unicorn, x86-64 on KVM) offers the core and the services
 * of one VM. Services only ever act on the machine through this interface: they request
 * power changes, system events and interrupts; the backend carries them out at the next
 * safe point of its run loop.
 */

/** An architecture name ('arm64', 'x86_64', ...): each machine backend names its own. */
export type Arch = 'arm64' | 'x86_64' | (string & {});

/** PSCI-visible power state of a vCPU. */
export type VcpuPowerState = 'on' | 'off' | 'on-pending';

/** Whole-machine events a guest can request; each ends a run with its own exit code. */
export type SystemEventKind = 'off' | 'reset' | 'suspend' | 'hibernate-off' | 'crash';

export interface SystemEvent {
  readonly kind: SystemEventKind;
  /** The vCPU that asked. */
  readonly vcpu: number;
  /** Event-specific data (e.g. SYSTEM_RESET2's reset type and cookie, SYSTEM_SUSPEND's entry). */
  readonly data: readonly bigint[];
}

export interface Machine {
  readonly arch: Arch;
  readonly vcpuCount: number;
  readonly memory: GuestMemory;

  /** The affinity value (arm64 MPIDR_EL1 Aff fields, x86 APIC id) of vCPU n. */
  affinityOf(vcpu: number): bigint;
  /** vCPU index with exactly this affinity, or -1. */
  vcpuByAffinity(affinity: bigint): number;

  powerState(vcpu: number): VcpuPowerState;
  /**
   * Start a powered-off vCPU at `entry` with `context` in its first argument register, reset
   * to the architecture's entry state (arm64: EL1, MMU off, caches off, the boot vCPU's
   * endianness). The state is 'on-pending' until the backend applies it.
   */
  powerOn(vcpu: number, entry: bigint, context: bigint): void;
  /** Power off the calling vCPU; it stops at the end of the current trap. */
  powerOff(vcpu: number): void;
  /** Park the calling vCPU until it has something to do (an interrupt), like WFI. */
  idle(vcpu: number): void;

  /** Request a whole-machine event; the run ends with it after the current trap. */
  systemEvent(event: SystemEvent): void;

  /**
   * Raise (level=true) or lower an interrupt line of one vCPU: arm64 INTIDs (PPI 16–31, SPI
   * 32+), x86 vectors. Delivery honours the guest's interrupt masks. For an edge-triggered
   * INTID (board configuration; arm64 plugvisor-virt: PPI 31, Xen's event-channel PPI)
   * level=true is a rising edge that latches it pending once, also while the guest handles it,
   * and level=false does nothing.
   */
  setInterrupt(vcpu: number, intid: number, level: boolean): void;

  /**
   * Optional abilities by name (the PTP counter clock, interrupt trigger configuration,
   * entropy: machine/capabilities.ts). Services look them up with `capabilityOf`, so a new
   * service's need does not widen this interface.
   */
  capability?<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined;
}

/** Entropy for a call's random results: the machine's source if it has one, else the host CSPRNG. */
export function guestEntropy(vcpu: VcpuContext, out: Uint32Array): void {
  const source = capabilityOf(vcpu.machine, 'entropy');
  if (source) source.fill(out);
  else randomFillSync(out);
}

/** The view a hypercall handler gets of the trapping vCPU. Preallocated: never built per trap. */
export interface VcpuContext {
  readonly index: number;
  readonly regs: RegisterFile;
  readonly machine: Machine;
  /**
   * Set by the backend before each dispatch: true when the trapping instruction was SMC, false
   * for HVC (KVM's KVM_HYPERCALL_EXIT_SMC). SMCCC answers a few calls differently per conduit.
   */
  readonly viaSmc?: boolean;
  /**
   * Bytes the trapping instruction occupies before the PC the backend resumes the vCPU at
   * (arm64 HVC/SMC: 4). Set once by the backend; the dispatcher returns it for a preempted call
   * (router/continuation.ts) and the backend moves the PC back by what it returned. Undefined: the
   * backend cannot re-execute a trap, and a handler that preempts there is a service failure.
   */
  readonly trapLength?: number;
}
