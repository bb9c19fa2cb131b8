/**
 * The arm64 Linux boot protocol (Linux Documentation/arch/arm64/booting.rst): recognise an
 * `Image`, place it, the device tree and an initrd in RAM, and say where vCPU 0 enters with
 * which x0.
 *
 * The Image header (booting.rst §4 "Call the kernel image"), 64 bytes, little-endian:
 *   u32 code0, code1; u64 text_offset; u64 image_size; u64 flags; u64 res2, res3, res4;
 *   u32 magic = 0x644d5241 ("ARM\x64"); u32 res5.
 * flags: bit 0 kernel endianness (1 = big-endian); bits 1-2 kernel page size (0 unspecified,
 * 1 4K, 2 16K, 3 64K); bit 3 physical placement (0: the 2 MB aligned base should be as close
 * as possible to the base of DRAM; 1: anywhere in physical memory).
 * "The Image must be placed text_offset bytes from a 2MB aligned base address anywhere in
 * usable system RAM and called there"; "At least image_size bytes from the start of the image
 * must be free for use by the kernel"; "When image_size is zero, text_offset can be assumed to
 * be 0x80000" (kernels before v3.17).
 * The DTB (booting.rst §2) "must be placed on an 8-byte boundary and must not exceed 2
 * megabytes in size", and must not share a 2 MB region that needs other attributes: it gets a
 * 2 MB region of its own above the kernel. The initrd (§3) "must reside entirely within a 1 GB
 * aligned physical memory window of up to 32 GB in size that fully covers the kernel Image".
 * Entry (§4): "x0 = physical address of device tree blob (dtb) in system RAM, x1 = 0
 * (reserved for future use), x2 = 0, x3 = 0", MMU off, interrupts masked, at EL2 or EL1 —
 * the machine's reset state (Vcpu.reset: EL1h, DAIF masked, SCTLR_EL1.M clear).
 */
import { ImageError, type GuestMemory } from '@plugvisor/core';
import { Layout } from '../board/layout.js';
import { boardFdt, type BoardDescription } from '../board/fdt.js';

export const ARM64_IMAGE_MAGIC = 0x644d5241;
export const ARM64_IMAGE_HEADER_SIZE = 64;
const SZ_2M = 2n * 1024n * 1024n;
const SZ_1G = 1024n * 1024n * 1024n;
const SZ_32G = 32n * SZ_1G;
/** booting.rst §2: the dtb "must not exceed 2 megabytes in size". */
export const MAX_DTB_SIZE = 2 * 1024 * 1024;

export interface Arm64ImageHeader {
  readonly textOffset: bigint;
  /** The effective size from image_size, or the file's length when image_size is 0 (pre-3.17). */
  readonly imageSize: bigint;
  readonly flags: bigint;
  readonly bigEndian: boolean;
  /** 0 unspecified, else 4096, 16384 or 65536. */
  readonly pageSize: number;
  /** Flags bit 3: the 2 MB aligned base may be anywhere in physical memory. */
  readonly placeAnywhere: boolean;
}

/** True if `bytes` carries the arm64 Image magic at offset 56. */
export function isArm64Image(bytes: Uint8Array): boolean {
  if (bytes.length < ARM64_IMAGE_HEADER_SIZE) return false;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(56, true) === ARM64_IMAGE_MAGIC;
}

/** Reads and checks an Image header; an ImageError (one line) names what is wrong. */
export function parseArm64ImageHeader(bytes: Uint8Array): Arm64ImageHeader {
  if (bytes.length < ARM64_IMAGE_HEADER_SIZE) throw new ImageError(`not an arm64 Linux Image: ${bytes.length} bytes, shorter than its 64-byte header`);
  if (!isArm64Image(bytes)) throw new ImageError('not an arm64 Linux Image: no "ARM\\x64" magic at offset 56 (Documentation/arch/arm64/booting.rst)');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let textOffset = dv.getBigUint64(8, true);
  const rawSize = dv.getBigUint64(16, true);
  const flags = dv.getBigUint64(24, true);
  if (rawSize === 0n) textOffset = 0x80000n; // booting.rst: "When image_size is zero, text_offset can be assumed to be 0x80000"
  if (flags & 1n) throw new ImageError('the Image is a big-endian kernel (header flags bit 0); this machine runs little-endian guests');
  if (textOffset % 4096n !== 0n || textOffset >= SZ_2M) throw new ImageError(`bad Image header: text_offset 0x${textOffset.toString(16)} is not a page-aligned offset inside a 2 MB region`);
  if (flags >> 4n !== 0n) throw new ImageError(`bad Image header: unknown flags 0x${flags.toString(16)} (bits 4-63 are reserved)`);
  const imageSize = rawSize === 0n ? BigInt(bytes.length) : rawSize;
  if (imageSize < BigInt(bytes.length)) throw new ImageError(`bad Image header: image_size 0x${imageSize.toString(16)} is smaller than the file (0x${bytes.length.toString(16)} bytes)`);
  const pageSize = [0, 4096, 16384, 65536][Number((flags >> 1n) & 3n)]!;
  return { textOffset, imageSize, flags, bigEndian: false, pageSize, placeAnywhere: (flags & 8n) !== 0n };
}

/** Where everything went, and how vCPU 0 enters. */
export interface LinuxBootPlan {
  readonly header: Arm64ImageHeader;
  /** The kernel's first byte (the entry point): a 2 MB aligned base + text_offset. */
  readonly kernel: bigint;
  readonly kernelEnd: bigint;
  readonly dtb: bigint;
  readonly dtbBytes: Uint8Array;
  readonly initrd?: { readonly start: bigint; readonly end: bigint };
  /** vCPU 0's entry point and x0 (x1..x3 are 0 after reset). */
  readonly entry: bigint;
  readonly x0: bigint;
}

export interface LinuxBootInput {
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array;
  readonly bootargs?: string;
  /** The board the tree describes, but for `bootargs` and `initrd` (filled in here). */
  readonly board: Omit<BoardDescription, 'bootargs' | 'initrd'>;
}

const alignUp = (n: bigint, a: bigint) => ((n + a - 1n) / a) * a;

/**
 * Places the kernel at the RAM base (2 MB aligned: Layout.RAM_BASE) + text_offset, the DTB at
 * the next 2 MB boundary after the kernel's image_size, the initrd at the 2 MB boundary after
 * the DTB's region; writes all three into `memory`. Refuses (ImageError) what does not fit.
 */
export function planLinuxBoot(input: LinuxBootInput, memory?: GuestMemory): LinuxBootPlan {
  const header = parseArm64ImageHeader(input.kernel);
  const { ramBase, ramSize } = input.board;
  if (ramBase % SZ_2M !== 0n) throw new ImageError(`RAM base 0x${ramBase.toString(16)} is not 2 MB aligned`);
  const ramEnd = ramBase + ramSize;
  const mib = (n: bigint) => {
    const v = Number(n);
    if (v % 2 ** 20 === 0) return `${v / 2 ** 20} MiB`;
    return v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(1)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} bytes`;
  };
  const tooBig = (what: string, need: bigint) =>
    new ImageError(`${what} does not fit in RAM: needs ${mib(need - ramBase)} of the ${mib(ramSize)} RAM (--mem)`);
  const kernel = ramBase + header.textOffset;
  const kernelEnd = kernel + header.imageSize;
  if (kernelEnd > ramEnd) throw tooBig(`the kernel (image_size ${mib(header.imageSize)})`, kernelEnd);
  const dtb = alignUp(kernelEnd, SZ_2M);
  let initrd: { start: bigint; end: bigint } | undefined;
  if (input.initrd) {
    const start = dtb + SZ_2M;
    initrd = { start, end: start + BigInt(input.initrd.length) };
    if (initrd.end > ramEnd) throw tooBig(`the initrd (${mib(BigInt(input.initrd.length))}) with the kernel`, initrd.end);
    // booting.rst §3: a 1 GB aligned window of at most 32 GB covering the kernel and the initrd.
    if (initrd.end - (ramBase / SZ_1G) * SZ_1G > SZ_32G) throw new ImageError('the initrd would lie outside the 32 GB window that covers the kernel');
  }
  const dtbBytes = boardFdt({ ...input.board, bootargs: input.bootargs ?? '', ...(initrd ? { initrd } : {}) });
  if (dtbBytes.length > MAX_DTB_SIZE) throw new ImageError(`the device tree is ${dtbBytes.length} bytes, more than booting.rst's 2 MB`);
  if (dtb + BigInt(dtbBytes.length) > ramEnd) throw tooBig('the kernel with its device tree', dtb + BigInt(dtbBytes.length));
  if (memory) {
    memory.write(kernel, input.kernel);
    memory.write(dtb, dtbBytes);
    if (initrd && input.initrd) memory.write(initrd.start, input.initrd);
  }
  return { header, kernel, kernelEnd, dtb, dtbBytes, ...(initrd ? { initrd } : {}), entry: kernel, x0: dtb };
}

/** QEMU virt's GICv2 regions (hw/arm/virt.c base_memmap: VIRT_GIC_DIST, VIRT_GIC_CPU). */
export const VIRT_GIC_DIST = Object.freeze({ base: Layout.GICD_BASE, size: BigInt(Layout.GICD_SIZE) });
export const VIRT_GIC_CPU = Object.freeze({ base: Layout.GICC_BASE, size: 0x1_0000n });

/** The board description of a machine with `ramSize` bytes of RAM and these vCPU affinities. */
export function virtBoard(ramSize: number, cpuAffinities: readonly bigint[]): Omit<BoardDescription, 'bootargs' | 'initrd'> {
  return {
    ramBase: Layout.RAM_BASE,
    ramSize: BigInt(ramSize),
    cpuAffinities,
    // The SMCCC conduit the machine routes PSCI through: HVC #0 (traps.ts).
    psciMethod: 'hvc',
    uartBase: Layout.UART_BASE,
    uartSize: BigInt(Layout.UART_SIZE),
    gicDistBase: VIRT_GIC_DIST.base,
    gicDistSize: VIRT_GIC_DIST.size,
    gicCpuBase: VIRT_GIC_CPU.base,
    gicCpuSize: VIRT_GIC_CPU.size,
  };
}

/** What bootLinuxImage needs of a machine (Arm64Machine). */
export interface LinuxBootTarget {
  readonly ramSize: number;
  readonly vcpuCount: number;
  affinityOf(vcpu: number): bigint;
  loadImage(bytes: Uint8Array, rawAddress: bigint): unknown;
  boot(entry: bigint, context: bigint): void;
  /** Count instructions from the first one (Arm64Machine.countFromStart). */
  countFromStart?(): void;
}

/**
 * Loads an Image, its generated device tree (one `cpu` node per vCPU, `reg` = the vCPU's
 * affinity) and an initrd into `machine`, and boots vCPU 0 at the kernel with x0 = the DTB.
 */
export function bootLinuxImage(machine: LinuxBootTarget, input: Omit<LinuxBootInput, 'board'>): LinuxBootPlan {
  const affinities = Array.from({ length: machine.vcpuCount }, (_, i) => machine.affinityOf(i));
  const plan = planLinuxBoot({ ...input, board: virtBoard(machine.ramSize, affinities) });
  // Through loadImage (raw at an address), so every engine drops translations of those bytes.
  machine.loadImage(input.kernel, plan.kernel);
  machine.loadImage(plan.dtbBytes, plan.dtb);
  if (plan.initrd && input.initrd) machine.loadImage(input.initrd, plan.initrd.start);
  machine.countFromStart?.();
  machine.boot(plan.entry, plan.x0);
  return plan;
}
