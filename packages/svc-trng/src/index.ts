import { defineService, guestEntropy, packageVersion, smcccReturn, type CallSignature, type ResultDecl, type ServicePlugin, type VcpuContext } from '@plugvisor/core';

/**
 * Arm TRNG 1.0 (DEN0098) as KVM/arm64 serves it (Linux arch/arm64/kvm/trng.c). Entropy comes
 * from the machine's source through the core's `guestEntropy` (the host CSPRNG unless the
 * machine has its own; the behaviour-probe machine's reads as all ones, so a transcript shows
 * exactly which bits may be random). Gated by KVM_REG_ARM_STD_BMAP bit 0, on by default:
 * guests saw TRNG before the control existed (legacy-opt-out).
 */

export const KVM_REG_ARM_STD_BMAP = 0x6030_0000_0016_0000n;

export const TRNG = Object.freeze({
  VERSION: 0x8400_0050,
  FEATURES: 0x8400_0051,
  GET_UUID: 0x8400_0052,
  RND32: 0x8400_0053,
  RND64: 0xc400_0053,
});

const TRNG_V1_0 = 0x1_0000;
const NOT_SUPPORTED = -1;
const INVALID_PARAMETER = -2; // TRNG's own code, not SMCCC's −3

/** UUID 0d21e000-4384-11eb-8070-5244554e5a4c as KVM returns it: little-endian 32-bit words. */
export const TRNG_UUID_WORDS = Object.freeze([0x00e0_210d, 0xeb11_8443, 0x4452_7080, 0x4c5a_4e55]);

// One entropy buffer for every call: 24 bytes covers RND64's 192 bits; no per-call allocation.
const entropy = new Uint32Array(6);

/** Keeps the low `bits` bits of a 32-bit word (0..32). */
const low = (word: number, bits: number) => (bits >= 32 ? word >>> 0 : bits <= 0 ? 0 : (word & ((1 << bits) - 1)) >>> 0);

function rnd32(v: VcpuContext): void {
  const r = v.regs;
  const n = r.lo(1); // upper half ignored
  if (n > 96) return smcccReturn(r, INVALID_PARAMETER);
  guestEntropy(v, entropy);
  // x3 = bits 31..0, x2 = bits 63..32, x1 = bits 95..64; bits at and above N are zero.
  r.setU32(0, 0);
  r.setU32(3, low(entropy[0]!, n));
  r.setU32(2, low(entropy[1]!, n - 32));
  r.setU32(1, low(entropy[2]!, n - 64));
}

function rnd64(v: VcpuContext): void {
  const r = v.regs;
  const n = r.lo(1);
  if (n > 192) return smcccReturn(r, INVALID_PARAMETER);
  guestEntropy(v, entropy);
  // x3 = bits 63..0, x2 = bits 127..64, x1 = bits 191..128.
  r.setU32(0, 0);
  r.setHalves(3, low(entropy[1]!, n - 32), low(entropy[0]!, n));
  r.setHalves(2, low(entropy[3]!, n - 96), low(entropy[2]!, n - 64));
  r.setHalves(1, low(entropy[5]!, n - 160), low(entropy[4]!, n - 128));
}

const TRNG_IDS = [TRNG.VERSION, TRNG.FEATURES, TRNG.GET_UUID, TRNG.RND32, TRNG.RND64];
const FEATURE_IDS = new Set<bigint>(TRNG_IDS.map((x) => BigInt(x)));

/** smccc_set_retval(vcpu, val, 0, 0, 0) or the four values of the answer: every call writes x0..x3. */
const results = (...names: string[]): ResultDecl[] => [0, 1, 2, 3].map((reg) => (names[reg] ? { reg, name: names[reg] } : { reg }));

/**
 * TRNG_FEATURES(trng_func_id): KVM switches on the whole register (`switch (smccc_get_arg1())`,
 * an unsigned long), so an id with upper bits set is no TRNG call: u64. Discovery: 0 for each of
 * the five calls, which are all on the same feature (and so exposed exactly when it is).
 */
const FEATURES_SIGNATURE: CallSignature = {
  args: [{ name: 'trng_func_id', reg: 1, width: 'u64', kind: 'enum', values: [...TRNG_IDS, 0x8400_0054, 0xc400_0050, 0x1_8400_0050n] }],
  results: results('status'),
  discovery: { kind: 'query', arg: 1, mustAnswer: TRNG_IDS },
};

/**
 * TRNG_RND32/RND64(N): N is a u32 (`u32 num_bits = smccc_get_arg1()`), at most 96 / 192; the
 * random bits come back right-aligned in x3 (lowest), x2, x1, bits at and above N zero.
 */
const rndSignature = (maxBits: number): CallSignature => ({
  args: [{ name: 'num_bits', reg: 1, width: 'u32', kind: 'range', min: 0, max: maxBits }],
  results: [
    { reg: 0, name: 'status' },
    { reg: 1, name: 'bits_high', kind: 'random' },
    { reg: 2, name: 'bits_mid', kind: 'random' },
    { reg: 3, name: 'bits_low', kind: 'random' },
  ],
});

export function createTrngService(): ServicePlugin<undefined> {
  return defineService<undefined>({
    name: '@plugvisor/svc-trng',
    version: packageVersion(import.meta.url),
    description: 'Arm TRNG 1.0 (KVM/arm64 guest ABI)',
    surface: {
      features: [
        {
          name: 'trng',
          default: 'legacy-opt-out',
          description: 'Arm TRNG 1.0 firmware interface (KVM exposed it to every guest before 5.19)',
          legacy:
            'KVM served TRNG 1.0 to every arm64 guest from when it implemented it until Linux 5.19 added KVM_REG_ARM_STD_BMAP, whose bit 0 is set by default (arch/arm64/kvm/trng.c, hypercalls.c)',
          register: { id: KVM_REG_ARM_STD_BMAP, name: 'KVM_REG_ARM_STD_BMAP', bit: 0 },
        },
      ],
      calls: [
        { name: 'TRNG_VERSION', conduit: 'smccc', id: TRNG.VERSION, feature: 'trng', signature: { results: results('version') } },
        { name: 'TRNG_FEATURES', conduit: 'smccc', id: TRNG.FEATURES, feature: 'trng', signature: FEATURES_SIGNATURE },
        { name: 'TRNG_GET_UUID', conduit: 'smccc', id: TRNG.GET_UUID, feature: 'trng', signature: { results: results('uuid0', 'uuid1', 'uuid2', 'uuid3') } },
        { name: 'TRNG_RND32', conduit: 'smccc', id: TRNG.RND32, feature: 'trng', signature: rndSignature(96) },
        { name: 'TRNG_RND64', conduit: 'smccc', id: TRNG.RND64, feature: 'trng', signature: rndSignature(192) },
      ],
    },
    handlers: {
      TRNG_VERSION: (v) => smcccReturn(v.regs, TRNG_V1_0),
      // the argument is compared as the full 64-bit register
      TRNG_FEATURES: (v) => smcccReturn(v.regs, FEATURE_IDS.has(v.regs.get(1)) ? 0 : NOT_SUPPORTED),
      TRNG_GET_UUID: (v) => smcccReturn(v.regs, TRNG_UUID_WORDS[0]!, TRNG_UUID_WORDS[1]!, TRNG_UUID_WORDS[2]!, TRNG_UUID_WORDS[3]!),
      TRNG_RND32: rnd32,
      TRNG_RND64: rnd64,
    },
  });
}

export default createTrngService;
