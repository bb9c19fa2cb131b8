import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stateArb } from './arbitraries.test-helper.js';
import {
  AMD_EPYC_MEASURED,
  AMD_EPYC_PKRU,
  INTEL_BROADWELL,
  INTEL_SKYLAKE_SP,
  INTEL_SPR_AMX,
  MASK,
  XsaveError,
  assertNoViolations,
  bit,
  decodeXsave,
  encodeXsave,
  guestPolicyFromCpuid,
  guestPolicyProblems,
  guestXfeatures,
  initState,
  kvmSetXcrsChecks,
  kvmSetXsaveChecks,
  parseHostDump,
  planXsaveSet,
  trimForGet,
  xcr0Violations,
  type XsaveState,
} from './index.js';

const skx = parseHostDump(INTEL_SKYLAKE_SP);
const spr = parseHostDump(INTEL_SPR_AMX);
const bdw = parseHostDump(INTEL_BROADWELL);
const amdMeasured = parseHostDump(AMD_EPYC_MEASURED);
const amd = parseHostDump(AMD_EPYC_PKRU);

const refusal = (f: () => unknown): XsaveError => {
  try {
    f();
  } catch (e) {
    if (e instanceof XsaveError) return e;
    throw e;
  }
  throw new Error('expected an XsaveError');
};

/** A Broadwell-model guest (x87/SSE/AVX) on Skylake whose old kernel over-saved PKRU and AVX-512 (Message-ID ZRMHY83W/VPjYyhy@google.com). */
const broadwellGuest = { xcr0: MASK.FPSSE | MASK.YMM };
const overSaved = (): XsaveState => fc.sample(stateArb(skx, MASK.FPSSE | MASK.YMM | MASK.AVX512 | MASK.PKRU, true), 1)[0]!;

describe('guest xfeatures', () => {
  it('reads the policy from KVM_SET_CPUID2 entries and intersects it with KVM on the host', () => {
    const p = guestPolicyFromCpuid([
      { function: 0xd, index: 0, eax: 0x2e7, ebx: 0, ecx: 0, edx: 0 },
      { function: 0xd, index: 1, eax: 0xf, ebx: 0, ecx: 0x1800, edx: 0 },
    ]);
    expect(p).toEqual({ xcr0: 0x2e7n, xss: 0x1800n, features: 0xf });
    const g = guestXfeatures(p, amdMeasured); // no PKRU there
    expect(g.supportedXcr0).toBe(0xe7n);
    expect(g.getMask).toBe(0xe7n);
    expect(g.xss).toBe(0x1800n);
    // A guest without leaf 0xD still gets FP|SSE saved (commit a1020a25e697).
    expect(guestXfeatures(guestPolicyFromCpuid([]), skx).getMask).toBe(MASK.FPSSE);
  });

  it('flags a policy that breaks XCR0 rules or puts a component in the wrong register', () => {
    expect(guestPolicyProblems({ xcr0: MASK.FPSSE | bit(5) | bit(11), xss: bit(2) }, bdw).join('\n')).toMatch(
      /XCR0_AVX512_WITHOUT_YMM[\s\S]*XCR0_AVX512_PARTIAL[\s\S]*cet_user \(bit 11\) is a supervisor component[\s\S]*avx \(bit 2\) is a user component[\s\S]*host intel-broadwell cannot give the guest opmask \(bit 5\)/,
    );
    expect(guestPolicyProblems({ xcr0: spr.kvmXcr0, xss: spr.xss }, spr)).toEqual([]);
  });
});

describe('KVM_GET_XSAVE trimming', () => {
  it('trims to guest_supported_xcr0 | FP | SSE; trimmed components read back as init', () => {
    const s = overSaved();
    const t = trimForGet(s, guestXfeatures(broadwellGuest, skx));
    expect(t.xstateBv).toBe(MASK.FPSSE | MASK.YMM);
    expect(t.components.opmask).toBeUndefined();
    expect(t.components.pkru).toBeUndefined();
    expect(t.components.avx).toEqual(s.components.avx);
    // The encoded image zero-fills the trimmed areas, as __copy_xstate_to_uabi_buf does.
    const buf = encodeXsave(t, skx);
    expect(buf.subarray(0x440, 0xa88).every((b) => b === 0)).toBe(true);
    expect(decodeXsave(buf, skx)).toEqual(t);
  });

  it('falls back to the default MXCSR when neither SSE nor AVX survives', () => {
    const s: XsaveState = { ...initState(skx), xstateBv: MASK.YMM, mxcsr: 0x9fc0, components: { avx: { ymmHi: Array.from({ length: 16 }, () => new Uint8Array(16)) } } };
    expect(trimForGet(s, { supportedXcr0: 0n, getMask: MASK.FPSSE, xss: 0n }).mxcsr).toBe(0x1f80);
    expect(trimForGet(s, guestXfeatures(broadwellGuest, skx)).mxcsr).toBe(0x9fc0);
  });
});

describe('KVM_SET_XSAVE after the 2023 fix', () => {
  it('accepts state from an older source that carries host-supported but not guest-enabled components', () => {
    const s = overSaved();
    const plan = planXsaveSet(s, broadwellGuest, skx);
    expect(plan.state).toBe(s); // nothing trimmed: KVM loads data, not features
    expect(plan.kept).toEqual(['x87 (bit 0)', 'sse (bit 1)', 'avx (bit 2)', 'opmask (bit 5)', 'zmm_hi256 (bit 6)', 'hi16_zmm (bit 7)', 'pkru (bit 9)']);
    expect(kvmSetXsaveChecks(encodeXsave(s, skx), skx)).toEqual([]);
    // The same state moved to an AMD host with AVX-512 and PKRU is accepted there too.
    expect(planXsaveSet(s, broadwellGuest, amd).dropped).toEqual([]);
  });

  it('refuses, naming each component, what the destination cannot load (the unfixed case)', () => {
    const e = refusal(() => planXsaveSet(overSaved(), broadwellGuest, bdw));
    expect(e.code).toBe('XSAVE_KVM_EINVAL');
    expect(e.errno).toBe(22);
    expect(e.components).toEqual(['opmask (bit 5)', 'zmm_hi256 (bit 6)', 'hi16_zmm (bit 7)', 'pkru (bit 9)']);
    expect(e.message).toMatch(/pkru \(bit 9\): KVM on host intel-broadwell does not support it.*never shown it/);
  });

  it('drops guest-invisible components only when asked, and never guest-visible ones', () => {
    const s = overSaved();
    const plan = planXsaveSet(s, broadwellGuest, bdw, { dropGuestInvisible: true });
    expect(plan.dropped).toEqual(['opmask (bit 5)', 'zmm_hi256 (bit 6)', 'hi16_zmm (bit 7)', 'pkru (bit 9)']);
    expect(plan.state.xstateBv).toBe(MASK.FPSSE | MASK.YMM);
    expect(plan.state.mxcsr).toBe(s.mxcsr);
    expect(kvmSetXsaveChecks(encodeXsave(plan.state, bdw), bdw)).toEqual([]);
    // An AVX-512 guest's state on Broadwell: its opmask data exists for the guest; refuse.
    const e = refusal(() => planXsaveSet(s, { xcr0: skx.kvmXcr0 }, bdw, { dropGuestInvisible: true }));
    expect(e.components).toEqual(['opmask (bit 5)', 'zmm_hi256 (bit 6)', 'hi16_zmm (bit 7)', 'pkru (bit 9)']);
    expect(e.message).toMatch(/the guest was shown it, so its data cannot be dropped/);
  });

  it('honours IA32_XFD: disabled components are cleared first, as KVM does', () => {
    const s = fc.sample(stateArb(spr, MASK.FPSSE | MASK.XTILE, true), 1)[0]!;
    const notPermitted = parseHostDump({ ...INTEL_SPR_AMX, name: 'spr-no-perm', cpuid0d: INTEL_SPR_AMX.cpuid0d.map((e) => (e.index === 0 ? { ...e, eax: 0x202e7 } : e)).filter((e) => e.index !== 18), kvmXsave2Size: 4096 });
    const e = refusal(() => planXsaveSet(s, { xcr0: spr.kvmXcr0 }, notPermitted));
    expect(e.components).toEqual(['xtile_data (bit 18)']);
    expect(e.message).toMatch(/XSTATE_BV_DYNAMIC_NOT_PERMITTED.*arch_prctl/);
    expect(planXsaveSet(s, { xcr0: spr.kvmXcr0 }, notPermitted, { xfd: MASK.DYNAMIC }).state.xstateBv).toBe(MASK.FPSSE | bit(17));
  });
});

describe("KVM's EINVAL cases (arch/x86/kvm/x86.c, measured on a 6.18 host), reproduced by name", () => {
  const fresh = (): Uint8Array => encodeXsave(initState(amdMeasured), amdMeasured);
  const header = (at: number, v: bigint): Uint8Array => {
    const b = fresh();
    new DataView(b.buffer).setBigUint64(at, v, true);
    return b;
  };
  const checks = (b: Uint8Array) => kvmSetXsaveChecks(b, amdMeasured).map((x) => `${x.check} ${x.components.join(',')}`);

  it('XSTATE_BV = host-supported before KVM_SET_CPUID2 is accepted', () => {
    expect(checks(header(512, amdMeasured.kvmXcr0))).toEqual([]);
  });
  it('bit 9 where KVM does not support PKRU → XSTATE_BV_UNSUPPORTED pkru', () => {
    expect(checks(header(512, MASK.FPSSE | bit(9)))).toEqual(['XSTATE_BV_UNSUPPORTED pkru (bit 9)']);
  });
  it('bit 62 → XSTATE_BV_UNSUPPORTED lwp', () => {
    expect(checks(header(512, MASK.FPSSE | bit(62)))).toEqual(['XSTATE_BV_UNSUPPORTED lwp (bit 62)']);
  });
  it('bit 11 (supervisor) → XSTATE_BV_SUPERVISOR cet_user', () => {
    expect(checks(header(512, MASK.FPSSE | bit(11)))).toEqual(['XSTATE_BV_SUPERVISOR cet_user (bit 11)']);
  });
  it('XCOMP_BV ≠ 0 → XCOMP_BV_NONZERO', () => {
    expect(checks(header(520, 1n << 63n))).toEqual(['XCOMP_BV_NONZERO ']);
  });
  it('reserved header byte 528 ≠ 0 → HEADER_RESERVED_NONZERO', () => {
    const b = fresh();
    b[528] = 1;
    expect(checks(b)).toEqual(['HEADER_RESERVED_NONZERO ']);
  });
  it('MXCSR = 0xFFFFFFFF with FP/SSE present → MXCSR_RESERVED_BITS; ignored when neither FP, SSE nor YMM is present', () => {
    const b = header(512, MASK.FPSSE);
    new DataView(b.buffer).setUint32(24, 0xffffffff, true);
    expect(checks(b)).toEqual(['MXCSR_RESERVED_BITS ']);
    new DataView(b.buffer).setBigUint64(512, 0n, true);
    expect(checks(b)).toEqual([]);
  });
  it('KVM_SET_XCRS: XCR0 = 0x5 → XCR0_YMM_WITHOUT_SSE; flags = 1 → XCRS_FLAGS_NONZERO', () => {
    const g = guestXfeatures({ xcr0: 0xe7n }, amdMeasured).supportedXcr0;
    expect(kvmSetXcrsChecks({ nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 0x5n }] }, g).map((x) => x.check)).toEqual(['XCR0_YMM_WITHOUT_SSE']);
    expect(kvmSetXcrsChecks({ nrXcrs: 1, flags: 1, xcrs: [{ xcr: 0, value: 0x7n }] }, g).map((x) => x.check)).toEqual(['XCRS_FLAGS_NONZERO']);
    expect(kvmSetXcrsChecks({ nrXcrs: 17, flags: 0, xcrs: [] }, g).map((x) => x.check)).toEqual(['XCRS_TOO_MANY']);
    expect(kvmSetXcrsChecks({ nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 0xe7n }] }, g)).toEqual([]);
    expect(kvmSetXcrsChecks({ nrXcrs: 0, flags: 0, xcrs: [] }, g, { hostHasXsave: false }).map((x) => x.check)).toEqual(['XCRS_NO_XSAVE']);
  });
  it('the other XCR0 rules of __kvm_set_xcr, each by name', () => {
    const names = (x: bigint, g?: bigint) => xcr0Violations(x, g).map((v) => v.check);
    expect(names(0x2n)).toEqual(['XCR0_X87_CLEAR']);
    expect(names(0x7n | bit(9), 0x7n)).toEqual(['XCR0_NOT_GUEST_SUPPORTED']);
    expect(names(0x3n | bit(3))).toEqual(['XCR0_MPX_PARTIAL']);
    expect(names(0x3n | MASK.AVX512)).toEqual(['XCR0_AVX512_WITHOUT_YMM']);
    expect(names(0x7n | bit(5))).toEqual(['XCR0_AVX512_PARTIAL']);
    expect(names(0x3n | bit(17))).toEqual(['XCR0_XTILE_PARTIAL']);
  });
  it('assertNoViolations throws one EINVAL error listing them all', () => {
    const e = refusal(() => assertNoViolations('set', kvmSetXsaveChecks(header(512, MASK.FPSSE | bit(9) | bit(11)), amdMeasured)));
    expect(e.errno).toBe(22);
    expect(e.components).toEqual(['pkru (bit 9)', 'cet_user (bit 11)']);
  });
});
