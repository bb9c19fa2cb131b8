// fast-check arbitraries for XSAVE states with random register contents (tests only).
import fc from 'fast-check';
import { bit, bitsOf, componentInfo } from './components.js';
import type { XsaveComponents, XsaveState } from './codec.js';
import type { HostCapabilities } from './host.js';

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const vecs = (count: number, width: number) => fc.array(bytes(width), { minLength: count, maxLength: count });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u64s = (count: number) => fc.array(u64, { minLength: count, maxLength: count });
const nat = (bits: number) => fc.integer({ min: 0, max: 2 ** bits - 1 });

export const componentArb: { [K in keyof Omit<XsaveComponents, 'opaque'>]-?: fc.Arbitrary<NonNullable<XsaveComponents[K]>> } = {
  x87: fc.record({ fcw: nat(16), fsw: nat(16), ftw: nat(8), fop: nat(16), fip: u64, fdp: u64, st: vecs(8, 10) }),
  sse: fc.record({ xmm: vecs(16, 16) }),
  avx: fc.record({ ymmHi: vecs(16, 16) }),
  bndregs: fc.record({ bnd: fc.array(fc.record({ lower: u64, upper: u64 }), { minLength: 4, maxLength: 4 }) }),
  bndcsr: fc.record({ bndcfgu: u64, bndstatus: u64 }),
  opmask: fc.record({ k: u64s(8) }),
  zmmHi256: fc.record({ zmmHi: vecs(16, 32) }),
  hi16Zmm: fc.record({ zmm: vecs(16, 64) }),
  pkru: fc.record({ pkru: nat(32) }),
  xtileCfg: fc.record({ palette: nat(8), startRow: nat(8), colsb: fc.array(nat(16), { minLength: 16, maxLength: 16 }), rows: fc.array(nat(8), { minLength: 16, maxLength: 16 }) }),
  xtileData: fc.record({ tmm: vecs(8, 1024) }),
  apx: fc.record({ egpr: u64s(16) }),
};

/** A state with a random subset of `mask`'s components (all of them when `all`), random registers. */
export function stateArb(host: HostCapabilities, mask: bigint = host.kvmXcr0, all = false): fc.Arbitrary<XsaveState> {
  const bits = bitsOf(mask);
  return fc
    .record({
      present: all ? fc.constant(bits) : fc.subarray(bits),
      mxcsr: nat(16).map((m) => m & host.mxcsrMask),
      values: fc.record(Object.fromEntries(bits.map((n) => [String(n), host.components.get(n) && componentInfo(n).key ? componentArb[componentInfo(n).key!] : bytes(host.components.get(n)!.size)]))),
    })
    .map(({ present, mxcsr, values }) => {
      const components: XsaveComponents = {};
      for (const n of present) {
        const key = componentInfo(n).key;
        if (key) (components as Record<string, unknown>)[key] = values[String(n)];
        else (components.opaque ??= {})[n] = values[String(n)] as Uint8Array;
      }
      return { xstateBv: present.reduce((m, n) => m | bit(n), 0n), mxcsr, mxcsrMask: host.mxcsrMask, components };
    });
}
