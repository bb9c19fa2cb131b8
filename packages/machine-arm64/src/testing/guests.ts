import { readFileSync } from 'node:fs';
import { Arm64Machine } from '../machine.js';
import { TestRouter, type TestRouterOptions } from './test-router.js';
import { fileURLToPath } from 'node:url';
import type { HvcImmediates } from '../traps.js';
import type { CpuOnEndianness } from '../description.js';

/** The committed test-guest images (guests/bin/NAME.elf). */
export const GUEST_BIN_DIR = fileURLToPath(new URL('../../guests/bin/', import.meta.url));

export function guestImage(name: string): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}

/**
 * A committed test guest booted on a fresh machine (16 MiB, `vcpus` vCPUs, default 1) behind the
 * package's stand-in router (which names no build: HVC personality 'kvm' unless `hvcImmediates`); `console()` is what it printed so far. The caller runs and disposes.
 */
export function bootTestGuest(name: string, opts: { vcpus?: number; hvcImmediates?: HvcImmediates; cpuOnEndianness?: CpuOnEndianness } & TestRouterOptions = {}) {
  let out = '';
  const { vcpus = 1, hvcImmediates, cpuOnEndianness, ...routerOptions } = opts;
  const m = new Arm64Machine({
    vcpus,
    memSize: 16 << 20,
    console: (b) => (out += Buffer.from(b).toString('latin1')),
    ...(hvcImmediates ? { hvcImmediates } : {}),
    ...(cpuOnEndianness ? { cpuOnEndianness } : {}),
  });
  const router = new TestRouter(m, { mode: 0, ignoreSystemOff: false, ...routerOptions });
  m.attach(router);
  m.boot(m.loadImage(guestImage(name)).entry);
  return { m, router, console: () => out };
}
