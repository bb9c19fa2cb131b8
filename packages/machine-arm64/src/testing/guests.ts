import { readFileSync } from 'node:fs';
import { Arm64Machine } from '../machine.js';
import { TestRouter, type TestRouterOptions } from './test-router.js';
import { fileURLToPath } from 'node:url';

/** The committed test-guest images (guests/bin/NAME.elf). */
export const GUEST_BIN_DIR = fileURLToPath(new URL('../../guests/bin/', import.meta.url));

export function guestImage(name: string): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}

/**
 * A committed test guest booted on a fresh machine (16 MiB, `vcpus` vCPUs, default 1) behind the
 * package's stand-in router; `console()` is what it printed so far. The caller runs and disposes.
 */
export function bootTestGuest(name: string, opts: { vcpus?: number } & TestRouterOptions = {}) {
  let out = '';
  const { vcpus = 1, ...routerOptions } = opts;
  const m = new Arm64Machine({ vcpus, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
  const router = new TestRouter(m, { mode: 0, ignoreSystemOff: false, ...routerOptions });
  m.attach(router);
  m.boot(m.loadImage(guestImage(name)).entry);
  return { m, router, console: () => out };
}
