// @plugvisor/machine-x86: real x86-64 guest code on Linux KVM (/dev/kvm) through koffi.
export { X86Machine, Exit, withApicId, type X86MachineOptions, type X86MachineDescription } from './machine.js';
export type { RunResult, RunOptions } from '@plugvisor/core';
export { Layout, CR0_LONG, CR4, EFER, SELECTOR } from './cpu/longmode.js';
export { GuestFault, MachineError, VcpuStateError, GUEST_FAULT_EXIT_CODE, GUEST_HANG_EXIT_CODE } from './errors.js';
export { ImageError, loadElf, loadRaw, isElf, elfMachine, EM_X86_64, EM_AARCH64, type LoadedImage } from './loader/elf.js';
export { x86Conduit, Ports, X86_CONDUIT_NAME, ENOSYS, type TrapRouter } from './traps.js';
export { KvmError, CAP, KVM, errnoName, hostCpuid } from './ffi/kvm.js';
export { kvmHost, kvmAvailable, kvmUnavailable, xsaveDumpOf, defaultXcr0, type KvmHostInfo } from './host.js';
export { guestCpuid } from './cpu/cpuid.js';
export { encodeVcpuState, decodeVcpuState, VCPU_MAGIC, VCPU_FORMAT, type VcpuState } from './cpu/state.js';
export { REG_NAMES, R, type Regs, type Sregs } from './cpu/structs.js';
export { checkX86Snapshot, machineFromPlan, readX86Description, cpuidProblems } from './snapshot.js';
export { pvmDetected, simdAtCpl0 } from './testing/capabilities.js';
export { x86Backend } from './backend.js';
export { X86_PORT_CONDUIT } from './traps.js';
