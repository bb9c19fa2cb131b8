// The machine vocabulary is the core's, shared with every backend; x86 faults name RIP and
// carry KVM's exit reason (and internal-error suberror) as GuestFault detail.
export { GuestFault, MachineError, VcpuStateError } from '@plugvisor/core';

/** Exit status for a run that ended in a guest fault (the CLI's, shared with machine-arm64). */
export const GUEST_FAULT_EXIT_CODE = 10;
/** Exit status for a run where every powered-on vCPU waits for an interrupt that cannot come. */
export const GUEST_HANG_EXIT_CODE = 11;
