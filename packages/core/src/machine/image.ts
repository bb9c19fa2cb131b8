import { PlugvisorError } from '../errors.js';
import type { GuestMemory } from './memory.js';

/**
 * Guest images, for every machine: ELF64 little-endian executables (every PT_LOAD copied to its
 * p_paddr, the rest of p_memsz zeroed, entered at e_entry; the System V gABI "Program Header"
 * and "ELF Header" chapters) or raw binaries copied to an address and entered there.
 */

/** A guest image could not be loaded (operator input: reported with a clear message). */
export class ImageError extends PlugvisorError {
  constructor(message: string) {
    super('BAD_IMAGE', message);
  }
}

export interface LoadedImage {
  readonly entry: bigint;
  /** [start, end) guest-physical ranges written. */
  readonly segments: readonly { readonly start: bigint; readonly end: bigint }[];
}

/** e_machine values (gABI). */
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
const MACHINE_NAME: Record<number, string> = { [EM_X86_64]: 'x86-64', [EM_AARCH64]: 'AArch64' };
const PT_LOAD = 1;
const ET_EXEC = 2;

export function isElf(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
}

/** e_machine of an ELF image (62 = x86-64, 183 = aarch64), or undefined if it is not ELF. */
export function elfMachine(b: Uint8Array): number | undefined {
  if (!isElf(b) || b.length < 20) return undefined;
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(18, true);
}

/** Loads an ELF64 little-endian executable for `machine` (an EM_* value) into `memory`. */
export function loadElfImage(bytes: Uint8Array, memory: GuestMemory, machine: number, options: { requireExec?: boolean } = {}): LoadedImage {
  if (!isElf(bytes)) throw new ImageError('not an ELF file');
  if (bytes.length < 64) throw new ImageError('truncated ELF header');
  if (bytes[4] !== 2) throw new ImageError('not a 64-bit ELF (EI_CLASS must be ELFCLASS64)');
  if (bytes[5] !== 1) throw new ImageError('not a little-endian ELF');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const em = dv.getUint16(18, true);
  if (em !== machine) throw new ImageError(`ELF e_machine is ${em}, expected ${machine} (${MACHINE_NAME[machine] ?? 'this machine'})`);
  const type = dv.getUint16(16, true);
  if (options.requireExec && type !== ET_EXEC) throw new ImageError(`ELF type ${type} is not an executable (ET_EXEC)`);
  const entry = dv.getBigUint64(24, true);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if ((phnum > 0 && phentsize < 56) || phoff + phnum * phentsize > bytes.length) throw new ImageError('ELF program headers run past the end of the file');
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
    if (!memory.contains(paddr, memsz)) throw new ImageError(`ELF segment ${i} [0x${paddr.toString(16)}, +0x${memsz.toString(16)}) is outside guest RAM`);
    memory.write(paddr, bytes.subarray(offset, offset + filesz));
    if (memsz > filesz) memory.write(paddr + BigInt(filesz), new Uint8Array(memsz - filesz));
    segments.push({ start: paddr, end: paddr + BigInt(memsz) });
  }
  if (segments.length === 0) throw new ImageError('ELF has no loadable segment');
  return { entry, segments };
}

/** Copies a raw binary to `address`; the entry point is that address. */
export function loadRawImage(bytes: Uint8Array, memory: GuestMemory, address: bigint): LoadedImage {
  if (!memory.contains(address, bytes.length)) throw new ImageError(`raw image of ${bytes.length} bytes at 0x${address.toString(16)} does not fit in guest RAM`);
  memory.write(address, bytes);
  return { entry: address, segments: [{ start: address, end: address + BigInt(bytes.length) }] };
}
