import { PlugvisorError } from '@plugvisor/core';

/** Exit status for a run that ended in a guest fault (the CLI's, shared with machine-arm64). */
export const GUEST_FAULT_EXIT_CODE = 10;
/** Exit status for a run where every powered-on vCPU waits for an interrupt that cannot come. */
export const GUEST_HANG_EXIT_CODE = 11;

/**
 * The guest did something the machine cannot continue from: a triple fault (KVM_EXIT_SHUTDOWN),
 * an access outside RAM and devices (MMIO exit), an instruction KVM could not emulate
 * (KVM_EXIT_INTERNAL_ERROR), a failed VM entry.
 */
export class GuestFault extends PlugvisorError {
  constructor(
    readonly vcpu: number,
    readonly rip: bigint,
    readonly reason: string,
    /** KVM's exit reason, and for internal errors its suberror. */
    readonly exitReason?: number,
    readonly suberror?: number,
  ) {
    super('GUEST_FAULT', `guest fault on vCPU ${vcpu} at RIP 0x${rip.toString(16)}: ${reason}`);
  }
}

/** Bad use of the machine API by the host side (a VMM bug or bad operator input). */
export class MachineError extends PlugvisorError {
  constructor(message: string) {
    super('MACHINE', message);
  }
}

/** A vCPU snapshot blob was refused (bad magic, version, shape) or could not be applied. */
export class VcpuStateError extends PlugvisorError {
  constructor(message: string) {
    super('VCPU_STATE', message);
  }
}
