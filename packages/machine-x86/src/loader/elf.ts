import { EM_X86_64, loadElfImage, type GuestMemory, type LoadedImage } from '@plugvisor/core';

// The one ELF loader is the core's (packages/core/src/machine/image.ts), shared with machine-arm64.
export { ImageError, isElf, elfMachine, EM_X86_64, EM_AARCH64, loadRawImage as loadRaw, type LoadedImage } from '@plugvisor/core';

/** Loads an ELF64 little-endian x86-64 executable (ET_EXEC; PT_LOAD at p_paddr, entry e_entry). */
export function loadElf(bytes: Uint8Array, memory: GuestMemory): LoadedImage {
  return loadElfImage(bytes, memory, EM_X86_64, { requireExec: true });
}
