/**
 * Guest images for the x86 machine: ELF64 x86-64 executables (every PT_LOAD copied to its
 * p_paddr, entry e_entry) or raw binaries (copied to an address and entered there).
 */
import { PlugvisorError, type GuestMemory } from '@plugvisor/core';

export class ImageError extends PlugvisorError {
  constructor(message: string) {
    super('IMAGE', message);
  }
}

export interface LoadedImage {
  readonly entry: bigint;
  readonly segments: readonly { readonly start: bigint; readonly end: bigint }[];
}

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

export const isElf = (b: Uint8Array): boolean => b.length >= 64 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;

/** e_machine of an ELF image (62 = x86-64, 183 = aarch64), or undefined if it is not ELF. */
export function elfMachine(b: Uint8Array): number | undefined {
  if (!isElf(b)) return undefined;
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(18, true);
}

export function loadElf(bytes: Uint8Array, memory: GuestMemory): LoadedImage {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isElf(bytes)) throw new ImageError('not an ELF file');
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new ImageError('not a little-endian ELF64 file');
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64) throw new ImageError(`ELF e_machine ${machine} is not x86-64 (62)`);
  const type = dv.getUint16(16, true);
  if (type !== 2) throw new ImageError(`ELF type ${type} is not an executable (ET_EXEC)`);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phentsize < 56 || phoff + phnum * phentsize > bytes.length) throw new ImageError('program headers lie outside the file');
  const segments: { start: bigint; end: bigint }[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (dv.getUint32(o, true) !== 1) continue; // PT_LOAD
    const offset = Number(dv.getBigUint64(o + 8, true));
    const paddr = dv.getBigUint64(o + 24, true);
    const filesz = Number(dv.getBigUint64(o + 32, true));
    const memsz = Number(dv.getBigUint64(o + 40, true));
    if (offset + filesz > bytes.length) throw new ImageError(`segment ${i} lies outside the file`);
    try {
      memory.write(paddr, bytes.subarray(offset, offset + filesz));
      if (memsz > filesz) memory.write(paddr + BigInt(filesz), new Uint8Array(memsz - filesz));
    } catch {
      throw new ImageError(`segment ${i} at 0x${paddr.toString(16)}+${memsz} does not fit in guest RAM`);
    }
    segments.push({ start: paddr, end: paddr + BigInt(memsz) });
  }
  if (!segments.length) throw new ImageError('no PT_LOAD segment');
  return { entry: dv.getBigUint64(24, true), segments };
}

export function loadRaw(bytes: Uint8Array, memory: GuestMemory, address: bigint): LoadedImage {
  try {
    memory.write(address, bytes);
  } catch {
    throw new ImageError(`a ${bytes.length}-byte image at 0x${address.toString(16)} does not fit in guest RAM`);
  }
  return { entry: address, segments: [{ start: address, end: address + BigInt(bytes.length) }] };
}
