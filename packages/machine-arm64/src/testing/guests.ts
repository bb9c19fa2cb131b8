import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The committed test-guest images (guests/bin/NAME.elf). */
export const GUEST_BIN_DIR = fileURLToPath(new URL('../../guests/bin/', import.meta.url));

export function guestImage(name: string): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}
