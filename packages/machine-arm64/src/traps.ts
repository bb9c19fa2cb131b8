/**
 * The one place where this machine meets the core's trap router. Everything the machine needs
 * from @plugvisor/core's routing side is here, so adapting to a router API change touches only
 * this file.
 *
 * Guest-visible trap rules (KVM/arm64 and Xen on Arm behaviour):
 *   HVC #0       -> SMCCC conduit (w0 = function id)
 *   SMC #0       -> SMCCC conduit
 *   SMC #imm!=0  -> x0 = -1 (SMCCC NOT_SUPPORTED), nothing else (as KVM's handle_smc)
 *   HVC #imm!=0  -> by the VM's HVC personality (HvcImmediates):
 *     'kvm'     every immediate is the SMCCC conduit: KVM ignores it (Linux
 *               arch/arm64/kvm/handle_exit.c, handle_hvc → kvm_smccc_call_handler; the immediate
 *               is only traced). A build with SMCCC services and no Xen ones.
 *     'kvm-xen' HVC #0xEA1 -> Xen conduit (x16 = op), any other -> SMCCC: KVM's rule for a build
 *               that also serves Xen calls (the default build), whose Xen calls must stay reachable
 *     'xen'     HVC #0xEA1 -> Xen conduit; any other -> UNDEFINED with ELR_EL1 past the HVC: Xen's
 *               do_trap_guest_sync (HSR_EC_HVC64) sends an immediate other than 0 to
 *               do_trap_hypercall, which injects an undefined instruction for one other than
 *               XEN_HYPERCALL_TAG (xen/arch/arm/traps.c); inject_undef64_exception sets ELR_EL1 =
 *               regs->pc, which for a trapped HVC is the preferred return address, the next
 *               instruction (Arm ARM D1.10.1). A build with Xen services and no SMCCC ones.
 *     'legacy'  HVC #0xEA1 -> Xen conduit; any other -> UNDEFINED with ELR_EL1 at the HVC: what
 *               this machine did before personalities, matching neither; kept for VMs restored
 *               from snapshots that predate them
 *
 * Registers move per call (RegisterTransfer, from the core): the function-id register, then the
 * call's declared arguments and results; after the handler, its declared results go back. An id
 * the VM does not expose gets the conduit's "not supported" registers (SMCCC x0..x3, Xen x0).
 */
import { Conduits, NOT_SUPPORTED_CLASS, type Conduit, type RegisterTransfer, type VcpuContext } from '@plugvisor/core';

/** What the machine needs from a VM: the core's Vm satisfies it. */
export interface TrapRouter {
  /** Freezes the ABI; called once before the first vCPU runs. */
  start(): void;
  /**
   * Routes one call; the handler reads/writes `vcpu.regs`. Returns 0, or for a preempted call
   * (core continueCall) the bytes to move the PC back (`vcpu.trapLength`, 4): the HVC runs again.
   * A router that returns nothing never preempts.
   */
  dispatch(conduit: Conduit, vcpu: VcpuContext): number | void;
  /** After start: the conduit's compiled dispatcher, called directly (core: Vm.dispatcher). */
  dispatcher?(conduit: Conduit): (vcpu: VcpuContext) => number;
  /**
   * After start: which registers each call reads and writes (core: Vm.transfer, from the calls'
   * signatures). A router without it gets `wholesaleTransfer`.
   */
  transfer?(conduit: Conduit): RegisterTransfer;
  /** A vCPU was reset to its entry state (a CPU_ON took effect): the core's vcpuReset hook. */
  vcpuReset?(vcpu: number): void;
}

export const XEN_HVC_IMM = 0xea1;
/** What x0 gets for an SMC with a non-zero immediate (SMCCC NOT_SUPPORTED, as KVM's handle_smc); nothing else is written. */
export const SMC_UNKNOWN_IMM_X0 = -1;

/** Outcome of decoding a trapped instruction. */
export const TrapKind = Object.freeze({
  /** Route through `conduit`; write back the call's result registers. */
  ROUTE: 0,
  /** SMC with a non-zero immediate: x0 = -1 only. */
  SMC_REJECT: 1,
  /** HVC with an unknown immediate, 'legacy' personality: inject UNDEF, ELR_EL1 at the HVC. */
  UNDEF: 2,
  /** HVC with an unknown immediate, 'xen' personality: inject UNDEF, ELR_EL1 past the HVC. */
  UNDEF_PAST: 3,
});

/**
 * What an HVC with a non-zero immediate does (see the rules above): a property of
 * the VM, chosen from its build when the machine is made (`personalityOf`) or by the operator
 * (the machine option `hvcImmediates`), recorded in every snapshot's machine description and
 * restored from it; a description without it is 'legacy'.
 */
export type HvcImmediates = 'kvm' | 'kvm-xen' | 'xen' | 'legacy';
export const HVC_IMMEDIATES: readonly HvcImmediates[] = Object.freeze(['kvm', 'kvm-xen', 'xen', 'legacy']);

/** What the personality rule reads of a router: the core's Vm has it (vm.hv.services). */
interface BuildView {
  readonly hv?: { readonly services: readonly { readonly surface: { readonly calls: readonly { readonly conduit: string }[] } }[] };
}

/**
 * A build's HVC personality, from the conduits its services answer calls on: SMCCC only (or
 * nothing) 'kvm'; SMCCC and Xen 'kvm-xen' (the default build); Xen only 'xen'. A router that does
 * not say what it serves (this package's test router answers both) gets 'kvm-xen'.
 */
export function personalityOf(router: TrapRouter): Exclude<HvcImmediates, 'legacy'> {
  const services = (router as TrapRouter & BuildView).hv?.services;
  if (!services) return 'kvm-xen';
  let smccc = false;
  let xen = false;
  for (const svc of services) {
    for (const c of svc.surface.calls) {
      if (c.conduit === smcccConduit.name) smccc = true;
      else if (c.conduit === xenConduit.name) xen = true;
    }
  }
  return xen ? (smccc ? 'kvm-xen' : 'xen') : 'kvm';
}

/** Conduits by trap: looked up once, not per trap. */
export const smcccConduit: Conduit = Conduits.smccc;
export const xenConduit: Conduit = Conduits.xen;

/** Conduit for an HVC immediate under a personality, or undefined for an UNDEF. */
export function hvcConduit(imm16: number, personality: HvcImmediates): Conduit | undefined {
  if (imm16 === 0 || personality === 'kvm') return smcccConduit;
  if (imm16 === XEN_HVC_IMM) return xenConduit;
  return personality === 'kvm-xen' ? smcccConduit : undefined;
}

/** Conduit for an SMC immediate, or undefined for "x0 = -1". */
export function smcConduit(imm16: number): Conduit | undefined {
  return imm16 === 0 ? smcccConduit : undefined;
}

/** How one conduit's traps are routed, fixed when the router starts. */
export interface TrapPath {
  readonly conduit: Conduit;
  readonly dispatch: (vcpu: VcpuContext) => number;
  readonly transfer: RegisterTransfer;
}

/** x0..x17: SMCCC v1.2's argument and result registers (Xen uses x0..x4 and x16). */
const X0_X17 = 0x3ffff;

/**
 * The transfer for a router that does not say what its calls use (this package's test router):
 * x0..x17 in, the conduit's result registers out, for every call.
 */
export function wholesaleTransfer(conduit: Conduit): RegisterTransfer {
  let out = 0;
  for (const r of conduit.resultRegisters) out |= 1 << r;
  return Object.freeze({
    conduit,
    idRegister: conduit.functionIdWord >> 1,
    classOf: () => NOT_SUPPORTED_CLASS,
    readMasks: Object.freeze([X0_X17]),
    writeMasks: Object.freeze([out >>> 0]),
  });
}

/** The paths of every conduit a trap can reach, by conduit index. */
export function trapPaths(router: TrapRouter): TrapPath[] {
  const paths: TrapPath[] = [];
  for (const conduit of [smcccConduit, xenConduit]) {
    paths[conduit.index] = {
      conduit,
      dispatch: router.dispatcher ? router.dispatcher(conduit) : (vcpu) => router.dispatch(conduit, vcpu) || 0,
      transfer: router.transfer ? router.transfer(conduit) : wholesaleTransfer(conduit),
    };
  }
  return paths;
}

/** Runs before the first vCPU: freezes the VM's ABI (core: Vm.start()). */
export function startRouter(router: TrapRouter): void {
  router.start();
}
