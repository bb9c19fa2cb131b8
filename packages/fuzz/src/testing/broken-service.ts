/**
 * Deliberately broken services for the fuzz harness's negative tests: each answers calls the
 * fuzz guest makes, and gets one thing wrong that the guest must report.
 *
 *   clobber      a vendor-hypervisor id nobody implements (0xC6000001, an id the guest's random
 *                generator draws) answered NOT_SUPPORTED, as it should be, but x9, x19 and x29
 *                are changed (SMCCC: x4..x17 and x18..x30 are preserved)
 *   bad-return   the same id answered 0 instead of NOT_SUPPORTED
 *   stray-write  the same id answered NOT_SUPPORTED, but 8 bytes are written into guest RAM the
 *                guest never handed over (its canary)
 *   overflow     Xen xen_version(XENVER_extraversion, buf) (16 bytes, xen/include/public/
 *                version.h xen_extraversion_t) writes 17: one byte past the guest's buffer; it
 *                replaces svc-xen in the build, keeping its other hypercalls -ENOSYS
 */
import { defineService, smcccReturn, type ServicePlugin } from '@plugvisor/core';
import { RAM_BASE } from '../harness.js';

export type Breakage = 'clobber' | 'bad-return' | 'stray-write' | 'overflow';

export const BROKEN_VENDOR_ID = 0xc600_0001;
/** A canary word of the fuzz guest's RAM (fuzz.c: not the image, the stacks or the reserved window). */
export const STRAY_GPA = RAM_BASE + 0xc0_0000n;

export function createBrokenService(how: Breakage): ServicePlugin<undefined> {
  const xen = how === 'overflow';
  return defineService<undefined>({
    name: `@plugvisor/test-broken-${how}`,
    version: '0.0.0',
    description: `test-only: a service that breaks the ABI (${how})`,
    surface: {
      features: [{ name: `broken-${how}`, default: 'legacy-opt-out', description: 'test-only', legacy: 'test-only' }],
      calls: xen
        ? [
            {
              name: 'BROKEN_xen_version',
              conduit: 'xen',
              id: 17,
              feature: `broken-${how}`,
              signature: {
                args: [
                  { name: 'cmd', reg: 0, width: 'u64', kind: 'opaque' },
                  { name: 'arg', reg: 1, width: 'u64', kind: 'opaque' },
                ],
                results: [{ reg: 0 }],
              },
            },
          ]
        : [
            {
              name: 'BROKEN_VENDOR',
              conduit: 'smccc',
              id: BROKEN_VENDOR_ID,
              feature: `broken-${how}`,
              // The router writes back only declared results: "clobber" declares the registers
              // it changes, as a buggy service's signature would.
              signature: { results: how === 'clobber' ? [{ reg: 0 }, { reg: 1 }, { reg: 2 }, { reg: 3 }, { reg: 9 }, { reg: 19 }, { reg: 29 }] : [{ reg: 0 }, { reg: 1 }, { reg: 2 }, { reg: 3 }] },
            },
          ],
    },
    handlers: xen
      ? {
          BROKEN_xen_version(v) {
            const r = v.regs;
            const cmd = r.get(0);
            if (cmd === 0n) return r.set(0, 0x4_0013n); // XENVER_version: 4.19
            if (cmd === 7n) return r.set(0, r.get(1) === 0n ? 4096n : BigInt.asUintN(64, -22n)); // XENVER_pagesize
            if (cmd !== 1n) return r.set(0, BigInt.asUintN(64, -38n)); // -ENOSYS
            const dst = r.get(1);
            if (!v.machine.memory.contains(dst, 17)) return r.set(0, BigInt.asUintN(64, -14n));
            v.machine.memory.write(dst, new Uint8Array(17).fill(0x5a));
            r.set(0, 0n);
          },
        }
      : {
          BROKEN_VENDOR(v) {
            const r = v.regs;
            smcccReturn(r, how === 'bad-return' ? 0 : -1);
            if (how === 'clobber') {
              r.set(9, 0xdead_0009n);
              r.set(19, 0xdead_0019n);
              r.set(29, 0xdead_0029n);
            }
            if (how === 'stray-write') v.machine.memory.write(STRAY_GPA, new Uint8Array(8).fill(0x77));
          },
        },
  });
}
