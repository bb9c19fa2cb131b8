/**
 * The one place where this machine meets the core's trap router. Everything the machine needs
 * from @plugvisor/core's routing side is here, so adapting to a router API change touches only
 * this file.
 *
 * Guest-visible trap rules (KVM/arm64 and Xen on Arm behaviour):
 *   HVC #0       -> SMCCC conduit (w0 = function id; results x0..x3)
 *   SMC #0       -> SMCCC conduit
 *   HVC #0xEA1   -> Xen conduit (x16 = op, x0..x4 args; result x0)
 *   SMC #imm!=0  -> x0 = -1 (SMCCC NOT_SUPPORTED), nothing else (as KVM's handle_smc)
 *   HVC #other   -> UNDEFINED: an Unknown-reason synchronous exception (EC=0) for the guest
 */
import { Conduits, type Conduit, type VcpuContext } from '@plugvisor/core';

/** What the machine needs from a VM: the core's Vm satisfies it. */
export interface TrapRouter {
  /** Freezes the ABI; called once before the first vCPU runs. */
  start(): void;
  /** Routes one call; the handler reads/writes `vcpu.regs`. */
  dispatch(conduit: Conduit, vcpu: VcpuContext): void;
  /** A vCPU was reset to its entry state (a CPU_ON took effect): the core's vcpuReset hook. */
  vcpuReset?(vcpu: number): void;
}

export const XEN_HVC_IMM = 0xea1;

/** Outcome of decoding a trapped instruction. */
export const TrapKind = Object.freeze({
  /** Route through `conduit`; write back its result registers. */
  ROUTE: 0,
  /** SMC with a non-zero immediate: x0 = -1 only. */
  SMC_REJECT: 1,
  /** HVC with an unknown immediate: inject UNDEF. */
  UNDEF: 2,
});

/** Conduits by trap: looked up once, not per trap. */
export const smcccConduit: Conduit = Conduits.smccc;
export const xenConduit: Conduit = Conduits.xen;

/** Conduit for an HVC immediate, or undefined for an UNDEF. */
export function hvcConduit(imm16: number): Conduit | undefined {
  if (imm16 === 0) return smcccConduit;
  if (imm16 === XEN_HVC_IMM) return xenConduit;
  return undefined;
}

/** Conduit for an SMC immediate, or undefined for "x0 = -1". */
export function smcConduit(imm16: number): Conduit | undefined {
  return imm16 === 0 ? smcccConduit : undefined;
}

/** Which registers a conduit's handler may have changed (written back after dispatch). */
export function resultRegisters(conduit: Conduit): readonly number[] {
  return conduit.resultRegisters;
}

/** Runs before the first vCPU: freezes the VM's ABI (core: Vm.start()). */
export function startRouter(router: TrapRouter): void {
  router.start();
}

/** Routes one trapped call. Kept as a function so the hot path has one call site to adapt. */
export function dispatchTrap(router: TrapRouter, conduit: Conduit, vcpu: VcpuContext): void {
  router.dispatch(conduit, vcpu);
}
