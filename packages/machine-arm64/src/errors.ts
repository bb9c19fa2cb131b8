import { PlugvisorError } from '@plugvisor/core';

/** Exit status for a run that ended in a guest fault (see README: exit codes). */
export const GUEST_FAULT_EXIT_CODE = 10;
/** Exit status for a run where every powered-on vCPU waits for an interrupt that cannot come. */
export const GUEST_HANG_EXIT_CODE = 11;

/**
 * The guest did something the machine cannot continue from: an exception with no handler
 * (VBAR_EL1 = 0), an exception inside its own vector table, an access outside RAM and devices.
 */
export class GuestFault extends PlugvisorError {
  constructor(
    readonly vcpu: number,
    readonly pc: bigint,
    readonly reason: string,
  ) {
    super('GUEST_FAULT', `guest fault on vCPU ${vcpu} at PC 0x${pc.toString(16)}: ${reason}`);
  }
}

/** Bad use of the machine API by the host side (a VMM bug or bad operator input). */
export class MachineError extends PlugvisorError {
  constructor(message: string) {
    super('MACHINE', message);
  }
}

/** A vCPU snapshot blob was refused (bad magic, version, size). */
export class VcpuStateError extends PlugvisorError {
  constructor(message: string) {
    super('VCPU_STATE', message);
  }
}
