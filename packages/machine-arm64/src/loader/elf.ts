import { PlugvisorError, type GuestMemory } from '@plugvisor/core';

/** A guest image could not be loaded (operator input: reported with a clear message). */
export class ImageError extends PlugvisorError {
  constructor(message: string) {
    super('BAD_IMAGE', message);
  }
}

export interface LoadedImage {
  readonly entry: bigint;
  /** [start, end) guest-physical ranges written. */
  readonly segments: readonly { start: bigint; end: bigint }[];
}

const PT_LOAD = 1;
const EM_AARCH64 = 183;

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/**
 * Loads an ELF64 little-endian AArch64 executable: every PT_LOAD segment is copied to its
 * physical address (p_paddr), the rest of p_memsz is zeroed; the entry point is e_entry.
 */
export function loadElf(bytes: Uint8Array, memory: GuestMemory): LoadedImage {
  if (!isElf(bytes)) throw new ImageError('not an ELF file');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[4] !== 2) throw new ImageError('not a 64-bit ELF (EI_CLASS must be ELFCLASS64)');
  if (bytes[5] !== 1) throw new ImageError('not a little-endian ELF');
  if (bytes.length < 64) throw new ImageError('truncated ELF header');
  const machine = dv.getUint16(18, true);
  if (machine !== EM_AARCH64) throw new ImageError(`ELF e_machine is ${machine}, expected ${EM_AARCH64} (AArch64)`);
  const entry = dv.getBigUint64(24, true);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phoff + phnum * phentsize > bytes.length) throw new ImageError('ELF program headers run past the end of the file');
  const segments: { start: bigint; end: bigint }[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (dv.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = Number(dv.getBigUint64(ph + 8, true));
    const paddr = dv.getBigUint64(ph + 24, true);
    const filesz = Number(dv.getBigUint64(ph + 32, true));
    const memsz = Number(dv.getBigUint64(ph + 40, true));
    if (memsz === 0) continue;
    if (offset + filesz > bytes.length) throw new ImageError(`ELF segment ${i} runs past the end of the file`);
    if (!memory.contains(paddr, memsz)) {
      throw new ImageError(`ELF segment ${i} [0x${paddr.toString(16)}, +0x${memsz.toString(16)}) is outside guest RAM`);
    }
    memory.write(paddr, bytes.subarray(offset, offset + filesz));
    if (memsz > filesz) memory.write(paddr + BigInt(filesz), new Uint8Array(memsz - filesz));
    segments.push({ start: paddr, end: paddr + BigInt(memsz) });
  }
  if (segments.length === 0) throw new ImageError('ELF has no loadable segment');
  return { entry, segments };
}

/** Copies a raw binary to `address` (default: start of RAM); the entry point is that address. */
export function loadRaw(bytes: Uint8Array, memory: GuestMemory, address: bigint): LoadedImage {
  if (!memory.contains(address, bytes.length)) {
    throw new ImageError(`raw image of ${bytes.length} bytes at 0x${address.toString(16)} does not fit in guest RAM`);
  }
  memory.write(address, bytes);
  return { entry: address, segments: [{ start: address, end: address + BigInt(bytes.length) }] };
}
