import { EM_AARCH64, loadElfImage, type GuestMemory, type LoadedImage } from '@plugvisor/core';

// The one ELF loader is the core's (packages/core/src/machine/image.ts), shared with machine-x86.
export { ImageError, isElf, loadRawImage as loadRaw, type LoadedImage } from '@plugvisor/core';

/** Loads an ELF64 little-endian AArch64 executable (PT_LOAD at p_paddr, entry e_entry). */
export function loadElf(bytes: Uint8Array, memory: GuestMemory): LoadedImage {
  return loadElfImage(bytes, memory, EM_AARCH64);
}
