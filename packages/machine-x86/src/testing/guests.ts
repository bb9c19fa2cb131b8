import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The committed test-guest images (guests/bin, built by guests/build.sh). */
export const GUEST_BIN_DIR = fileURLToPath(new URL('../../guests/bin/', import.meta.url));

export function guestImage(name: string): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}

/** Guest-physical address of the guests' parameter block (param0, param1: u64 each). */
export const PARAMS = 0x100008n;
