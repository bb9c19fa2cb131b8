/**
 * The one place where this machine meets the core's trap router (as machine-arm64's traps.ts).
 *
 * The x86 hypercall conduit, `x86-port` (X86_PORT_CONDUIT; builds get it from x86Backend.conduits):
 *
 *   OUT to port 0x0600 (any width)   -> hypercall
 *     rax   function id (the high 32 bits must be 0, else "not supported")
 *     rdi, rsi, rdx, r10, r8, r9       arguments (Xen x86-64 / Linux syscall order)
 *     rax   result, written back; everything else is preserved
 *   an id nothing exposes            -> rax = -ENOSYS (-38), as Xen answers an unknown hypercall
 *
 * Port I/O because KVM_EXIT_IO is the cheapest exit to userspace (api.rst §5: "significantly
 * faster" than MMIO) and needs no instruction decoding: KVM has already advanced RIP past the
 * OUT when it exits. Registers travel through KVM's sync-regs area of kvm_run when KVM has
 * KVM_CAP_SYNC_REGS (no extra ioctl), else through KVM_GET/SET_REGS.
 *
 * The RegisterFile of an x86 vCPU holds the 18 registers in kvm_regs order (rax 0, rbx 1, rcx 2,
 * rdx 3, rsi 4, rdi 5, rsp 6, rbp 7, r8..r15 8..15, rip 16, rflags 17; `R` in cpu/structs.ts).
 */
import type { ConduitDefinition, VcpuContext } from '@plugvisor/core';
import type { RegisterFile } from '@plugvisor/core';

/** What the machine needs from a VM: the core's Vm satisfies it. */
export interface TrapRouter {
  /** Freezes the ABI; called once before the first vCPU runs. */
  start(): void;
  /**
   * Routes one call; the handler reads/writes `vcpu.regs`. Returns 0, or for a preempted call
   * (core continueCall) the bytes to move RIP back onto the OUT (`vcpu.trapLength`); a router
   * that returns nothing never preempts.
   */
  dispatch(conduit: ConduitDefinition, vcpu: VcpuContext): number | void;
  /** A vCPU was reset to its entry state (a CPU_ON took effect): the core's vcpuReset hook. */
  vcpuReset?(vcpu: number): void;
}

export const ENOSYS = 38;

/** Plugvisor's x86 I/O ports. */
export const Ports = Object.freeze({
  /** OUT: hypercall through the x86-port conduit. */
  HYPERCALL: 0x0600,
  /**
   * OUT: system event. Value (low byte): 0 = power off, 1 = reset, 2 = crash; the whole value
   * goes to the event's data. The ACPI-less way a Plugvisor x86 guest ends.
   */
  EXIT: 0x0604,
  /** COM1 16550 UART, 8 ports. */
  COM1: 0x03f8,
  COM1_END: 0x03ff,
});

export const X86_CONDUIT_NAME = 'x86-port';

/** The x86 hypercall conduit's definition: the backend descriptor's `conduits`. */
export const X86_PORT_CONDUIT: ConduitDefinition = Object.freeze({
  name: X86_CONDUIT_NAME,
  description: 'x86-64 port I/O hypercall: OUT to port 0x600, rax = function id, rdi/rsi/rdx/r10/r8/r9 arguments, result in rax',
  resultRegisters: Object.freeze([0]),
  functionIdWord: 0, // eax
  functionIdHighWord: 1, // rax >= 2^32 is no hypercall
  functionId: (regs: RegisterFile) => regs.u32[0]!,
  notSupported(regs: RegisterFile) {
    regs.setSigned(0, -ENOSYS);
  },
});

/** The x86 conduit as the trap path passes it: the VM resolves it within its build, by name. */
export const x86Conduit: ConduitDefinition = X86_PORT_CONDUIT;

/** Runs before the first vCPU: freezes the VM's ABI (core: Vm.start()). */
export function startRouter(router: TrapRouter): void {
  router.start();
}

/** Routes one trapped call. One call site for the hot path to adapt. */
export function dispatchTrap(router: TrapRouter, vcpu: VcpuContext): number {
  return router.dispatch(x86Conduit, vcpu) || 0;
}

/**
 * The dispatcher the hot path calls, after start: the VM's compiled per-conduit dispatcher
 * (core Vm.dispatcher, one call less per trap) when the router has one, else `dispatch`.
 */
export function compiledDispatch(router: TrapRouter): (vcpu: VcpuContext) => number {
  const r = router as TrapRouter & { dispatcher?: (c: ConduitDefinition) => (vcpu: VcpuContext) => number };
  if (typeof r.dispatcher === 'function') return r.dispatcher(x86Conduit);
  return (vcpu) => router.dispatch(x86Conduit, vcpu) || 0;
}
