import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stateArb } from './arbitraries.test-helper.js';
import { AMD_EPYC_PKRU, INTEL_SKYLAKE_SP, INTEL_SPR_AMX, MASK, XsaveError, canConvert, convertXsave, decodeXsave, encodeXsave, layoutDifferences, parseHostDump } from './index.js';

const intel = parseHostDump(INTEL_SPR_AMX);
const skx = parseHostDump(INTEL_SKYLAKE_SP);
const amd = parseHostDump(AMD_EPYC_PKRU);
const common = MASK.FPSSE | MASK.YMM | MASK.AVX512 | MASK.PKRU;

describe('layout conversion', () => {
  it('Intel → AMD → Intel preserves every register value (random registers, random subsets)', () => {
    fc.assert(
      fc.property(stateArb(intel, common), (s) => {
        const onIntel = encodeXsave(s, intel);
        const onAmd = convertXsave(onIntel, intel, amd);
        expect(onAmd.length).toBe(4096);
        expect(decodeXsave(onAmd, amd)).toEqual(s);
        expect(convertXsave(onAmd, amd, intel)).toEqual(onIntel);
      }),
      { numRuns: 60 },
    );
  });

  it('moves the bytes: opmask 0x440 → 0x340, PKRU 0xA80 → 0x980', () => {
    const s = fc.sample(stateArb(intel, common, true), 1)[0]!;
    const a = encodeXsave(s, intel);
    const b = convertXsave(a, intel, amd);
    expect(b.subarray(0x340, 0x380)).toEqual(a.subarray(0x440, 0x480));
    expect(b.subarray(0x980, 0x988)).toEqual(a.subarray(0xa80, 0xa88));
    expect(layoutDifferences(intel, amd, common).map((d) => `${d.kind} ${d.component}`)).toEqual(['moved opmask (bit 5)', 'moved zmm_hi256 (bit 6)', 'moved hi16_zmm (bit 7)', 'moved pkru (bit 9)']);
    expect(canConvert(intel, amd, common)).toBe(true);
  });

  it('refuses state the destination cannot hold, naming each component, instead of dropping it', () => {
    const amx = encodeXsave(fc.sample(stateArb(intel, MASK.FPSSE | MASK.XTILE, true), 1)[0]!, intel);
    let err: XsaveError | undefined;
    try {
      convertXsave(amx, intel, amd);
    } catch (e) {
      err = e as XsaveError;
    }
    expect(err?.code).toBe('XSAVE_LAYOUT');
    expect(err?.components).toEqual(['xtile_cfg (bit 17)', 'xtile_data (bit 18)']);
    const mpx = encodeXsave(fc.sample(stateArb(skx, MASK.FPSSE | MASK.MPX, true), 1)[0]!, skx);
    expect(() => convertXsave(mpx, skx, amd)).toThrow(/bndregs \(bit 3\).*does not have it/s);
    expect(canConvert(skx, amd, MASK.MPX)).toBe(false);
    // Intel SKX → Intel SPR: same offsets for AVX-512/PKRU, nothing moves.
    const s = fc.sample(stateArb(skx, common, true), 1)[0]!;
    expect(decodeXsave(convertXsave(encodeXsave(s, skx), skx, intel), intel)).toEqual(s);
  });
});
