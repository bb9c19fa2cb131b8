// @plugvisor/machine-arm64: real aarch64 guest code on Unicorn 2 (libunicorn2) through koffi.
export { Arm64Machine, type Arm64MachineOptions, type Arm64MachineDescription } from './machine.js';
export type { RunResult, RunOptions } from '@plugvisor/core';
export { Layout } from './board/layout.js';
export { GuestFault, MachineError, VcpuStateError, GUEST_FAULT_EXIT_CODE, GUEST_HANG_EXIT_CODE } from './errors.js';
export { ImageError, loadElf, loadRaw, isElf, type LoadedImage } from './loader/elf.js';
export {
  ARM64_IMAGE_MAGIC,
  isArm64Image,
  parseArm64ImageHeader,
  planLinuxBoot,
  bootLinuxImage,
  virtBoard,
  type Arm64ImageHeader,
  type LinuxBootPlan,
  type LinuxBootInput,
} from './loader/linux-image.js';
export {
  buildInitramfs,
  parseInitramfs,
  CPIO_NEWC_MAGIC,
  type InitramfsFile,
  type InitramfsEntry,
} from './loader/initramfs.js';
export { boardFdt, writeFdt, FDT_MAGIC, type BoardDescription, type FdtNode, type FdtValue } from './board/fdt.js';
export { affinityOfIndex, MPIDR_AFF_MASK } from './cpu/vcpu.js';
export { SPURIOUS_INTID, MAX_INTID, DEFAULT_EDGE_INTIDS, type InterruptTrigger } from './devices/gicc.js';
export { GicDistributor, validateGicdState, GICD_MAX_CPUS, type GicdState } from './devices/gicd.js';
export { XEN_HVC_IMM, HVC_IMMEDIATES, personalityOf, type HvcImmediates, type TrapRouter } from './traps.js';
export { unicornAvailable, UnicornError } from './ffi/unicorn.js';
export { checkArm64Snapshot, machineFromPlan } from './snapshot.js';
export { arm64Backend } from './backend.js';
export { GuestPageAbsentError, GUEST_PAGE_SIZE, type HoleRun } from './memory/holes.js';
