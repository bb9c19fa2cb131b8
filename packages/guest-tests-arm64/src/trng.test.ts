/** Arm TRNG 1.0 as KVM serves it (arch/arm64/kvm/trng.c): N read as u32, N = 0 succeeds, a bad N gives −2. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fid, JUNK, TRNG_UUID } from './abi.js';
import { expectCall } from './expect.js';
import { GuestSession, NOT_SUPPORTED, neg, Script, type CallResult } from './harness.js';

const INVALID_PARAMETER = neg(2); // TRNG's own code, not SMCCC's −3
const SAMPLES = 24;
const RND32_N = [1, 8, 31, 32, 33, 40, 64, 65, 95, 96];
const RND64_N = [1, 63, 64, 65, 100, 128, 129, 191, 192];

let session: GuestSession;
let results: Map<string, CallResult>;

beforeAll(() => {
  const s = new Script()
    .call('VERSION', Fid.TRNG_VERSION, ...JUNK)
    .call('GET_UUID', Fid.TRNG_GET_UUID, ...JUNK);
  for (const id of [Fid.TRNG_VERSION, Fid.TRNG_FEATURES, Fid.TRNG_GET_UUID, Fid.TRNG_RND32, Fid.TRNG_RND64]) s.call(`FEATURES(${id.toString(16)})`, Fid.TRNG_FEATURES, id, ...JUNK.slice(1));
  // the argument is compared as the full 64-bit register (arch/arm64/kvm/trng.c)
  s.call('FEATURES(1<<32 | VERSION)', Fid.TRNG_FEATURES, (1n << 32n) | BigInt(Fid.TRNG_VERSION));
  s.call('FEATURES(0x84000054)', Fid.TRNG_FEATURES, 0x8400_0054);
  s.call('FEATURES(0xC4000050)', Fid.TRNG_FEATURES, 0xc400_0050);
  s.call('FEATURES(SMCCC_VERSION)', Fid.TRNG_FEATURES, Fid.SMCCC_VERSION);
  s.call('RND32(0)', Fid.TRNG_RND32, 0, ...JUNK.slice(1));
  s.call('RND64(0)', Fid.TRNG_RND64, 0, ...JUNK.slice(1));
  s.call('RND32(97)', Fid.TRNG_RND32, 97, ...JUNK.slice(1));
  s.call('RND32(0xffffffff)', Fid.TRNG_RND32, 0xffff_ffff);
  s.call('RND64(193)', Fid.TRNG_RND64, 193, ...JUNK.slice(1));
  // N is x1 as a u32: the upper half is ignored
  s.call('RND32(1<<32 | 97)', Fid.TRNG_RND32, (1n << 32n) | 97n);
  s.call('RND64(1<<32 | 8)', Fid.TRNG_RND64, (1n << 32n) | 8n, ...JUNK.slice(1));
  s.call('RND32(1<<32)', Fid.TRNG_RND32, 1n << 32n, ...JUNK.slice(1));
  for (const n of RND32_N) for (let i = 0; i < SAMPLES; i++) s.call(`RND32(${n})#${i}`, Fid.TRNG_RND32, n, ...JUNK.slice(1));
  for (const n of RND64_N) for (let i = 0; i < SAMPLES; i++) s.call(`RND64(${n})#${i}`, Fid.TRNG_RND64, n, ...JUNK.slice(1));
  // via SMC too (SMCCC 1.1: both conduits)
  s.via('smc', 'smc RND64(192)', Fid.TRNG_RND64, 192);
  session = GuestSession.boot({ script: s });
  session.runToEnd();
  results = session.results();
});
afterAll(() => session?.dispose());

/** Bits of a 192-bit (RND64) or 96-bit (RND32) result, least significant in x3. */
function allowed(n: number, width: 32 | 64, reg: 1 | 2 | 3): bigint {
  const lo = (3 - reg) * width; // bit index of the register's bit 0
  const bits = Math.max(0, Math.min(width, n - lo));
  return (1n << BigInt(bits)) - 1n;
}

describe('TRNG 1.0', () => {
  it('VERSION 1.0, GET_UUID as KVM\'s four little-endian words', () => {
    expectCall(results, 'VERSION', [0x1_0000n, 0n, 0n, 0n]);
    expectCall(results, 'GET_UUID', TRNG_UUID);
  });

  it('FEATURES: 0 for its five ids, −1 otherwise (argument compared as 64 bits)', () => {
    for (const id of [Fid.TRNG_VERSION, Fid.TRNG_FEATURES, Fid.TRNG_GET_UUID, Fid.TRNG_RND32, Fid.TRNG_RND64]) expectCall(results, `FEATURES(${id.toString(16)})`, [0n, 0n, 0n, 0n]);
    for (const n of ['FEATURES(1<<32 | VERSION)', 'FEATURES(0x84000054)', 'FEATURES(0xC4000050)', 'FEATURES(SMCCC_VERSION)']) expectCall(results, n, [NOT_SUPPORTED, 0n, 0n, 0n]);
  });

  it('N = 0 succeeds with no bits; N > 96 / 192 → INVALID_PARAMETER (−2), x1..x3 = 0', () => {
    expectCall(results, 'RND32(0)', [0n, 0n, 0n, 0n]);
    expectCall(results, 'RND64(0)', [0n, 0n, 0n, 0n]);
    expectCall(results, 'RND32(1<<32)', [0n, 0n, 0n, 0n]);
    for (const n of ['RND32(97)', 'RND32(0xffffffff)', 'RND64(193)', 'RND32(1<<32 | 97)']) expectCall(results, n, [INVALID_PARAMETER, 0n, 0n, 0n]);
    const r = expectCall(results, 'RND64(1<<32 | 8)', (r) => expect(r.x[0]).toBe(0n));
    expect(r.x[3]! >> 8n, 'N = 8: bits above 8 clear').toBe(0n);
    expect([r.x[1], r.x[2]]).toEqual([0n, 0n]);
  });

  for (const [width, list] of [[32, RND32_N], [64, RND64_N]] as const) {
    it(`RND${width}: bits above N are zero, the N low bits are random, least significant in x3`, () => {
      for (const n of list) {
        const seen = [0n, 0n, 0n, 0n];
        const values = new Set<string>();
        for (let i = 0; i < SAMPLES; i++) {
          const r = expectCall(results, `RND${width}(${n})#${i}`, (r) => expect(r.x[0], `RND${width}(${n}) x0`).toBe(0n));
          for (const reg of [1, 2, 3] as const) {
            expect(r.x[reg]! & ~allowed(n, width, reg), `RND${width}(${n}) x${reg} has bits above N`).toBe(0n);
            seen[reg]! |= r.x[reg]!;
          }
          values.add(r.x.join(','));
        }
        // every allowed bit turns up set at least once in 24 samples (p(miss) ≈ 2^-24 per bit)
        for (const reg of [1, 2, 3] as const) expect(seen[reg], `RND${width}(${n}) x${reg} coverage`).toBe(allowed(n, width, reg));
        if (n >= 8) expect(values.size, `RND${width}(${n}) samples differ`).toBeGreaterThan(SAMPLES / 2);
      }
    });
  }

  it('answers through SMC as through HVC', () => {
    expectCall(results, 'smc RND64(192)', (r) => expect(r.x[0]).toBe(0n));
  });
});
