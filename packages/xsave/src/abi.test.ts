import { describe, expect, it } from 'vitest';
import {
  AMD_EPYC_MEASURED,
  AMD_EPYC_MILAN,
  AMD_EPYC_PKRU,
  EXAMPLE_HOSTS,
  INTEL_BROADWELL,
  INTEL_SKYLAKE_SP,
  INTEL_SPR_AMX,
  MASK,
  XsaveError,
  assertXsaveRestore,
  checkXsaveRestore,
  formatBaseline,
  guestCpuid0d,
  guestPolicyFromCpuid,
  parseHostDump,
  poolBaseline,
  xsaveAbiOf,
} from './index.js';

const spr = parseHostDump(INTEL_SPR_AMX);
const skx = parseHostDump(INTEL_SKYLAKE_SP);
const bdw = parseHostDump(INTEL_BROADWELL);
const amdMeasured = parseHostDump(AMD_EPYC_MEASURED);
const amd = parseHostDump(AMD_EPYC_PKRU);
const milan = parseHostDump(AMD_EPYC_MILAN);

describe('xsave ABI fragment', () => {
  it('records mask, XSS, sizes and per-component layout, and its CPUID 0xD matches the host', () => {
    const abi = xsaveAbiOf({ xcr0: amdMeasured.kvmXcr0, xss: amdMeasured.xss }, amdMeasured);
    expect(abi).toMatchObject({ xcr0: '0xe7', xss: '0x1800', features: 0xf, standardSize: 0x980, compactedSize: 0x9a8, bufferSize: 4096 });
    expect(abi.components.opmask).toEqual({ bit: 5, kind: 'user', size: 64, offset: 0x340, align64: false });
    expect(abi.components.cet_kernel).toEqual({ bit: 12, kind: 'supervisor', size: 24, align64: false });
    // The guest CPUID leaf it implies equals the measured host's, sub-leaf for sub-leaf.
    expect(guestCpuid0d(abi)).toEqual(AMD_EPYC_MEASURED.cpuid0d);
    expect(guestPolicyFromCpuid(guestCpuid0d(abi))).toEqual({ xcr0: 0xe7n, xss: 0x1800n, features: 0xf });
    expect(JSON.parse(JSON.stringify(abi))).toEqual(abi);
  });

  it('has a stable signature that changes with the guest view', () => {
    const a = xsaveAbiOf({ xcr0: MASK.FPSSE | MASK.YMM }, skx);
    expect(xsaveAbiOf({ xcr0: MASK.FPSSE | MASK.YMM }, bdw).signature).not.toBe(a.signature); // features differ (XSAVEC)
    expect(xsaveAbiOf({ xcr0: MASK.FPSSE | MASK.YMM, features: 1 }, bdw).signature).toBe(xsaveAbiOf({ xcr0: MASK.FPSSE | MASK.YMM, features: 1 }, skx).signature);
    expect(checkXsaveRestore({ ...a, xcr0: '0xff' }, skx)[0]!.message).toMatch(/signature .* does not match/);
  });

  it('refuses to build an ABI the host cannot give', () => {
    expect(() => xsaveAbiOf({ xcr0: MASK.FPSSE | MASK.YMM | MASK.PKRU }, amdMeasured)).toThrow(/cannot give the guest pkru \(bit 9\)/);
  });
});

describe('restore check against a destination host', () => {
  it('accepts the same host and any host with the same guest view', () => {
    const abi = xsaveAbiOf({ xcr0: skx.kvmXcr0 & ~MASK.MPX }, skx);
    expect(checkXsaveRestore(abi, skx)).toEqual([]);
    expect(checkXsaveRestore(abi, spr)).toEqual([]); // same Intel offsets; AMX not in the VM
  });

  it('refuses Intel AVX-512 → AMD, naming each component whose offset the guest was shown', () => {
    const abi = xsaveAbiOf({ xcr0: spr.kvmXcr0 & ~MASK.XTILE }, spr);
    let err: XsaveError | undefined;
    try {
      assertXsaveRestore(abi, amd);
    } catch (e) {
      err = e as XsaveError;
    }
    expect(err?.code).toBe('XSAVE_INCOMPATIBLE');
    expect(err?.components).toEqual(['opmask (bit 5)', 'zmm_hi256 (bit 6)', 'hi16_zmm (bit 7)', 'pkru (bit 9)']);
    expect(err?.message).toMatch(/opmask \(bit 5\): the guest was shown standard offset 0x440; host amd-epyc-avx512-pkru's XSAVE writes it at 0x340/);
  });

  it('refuses a destination that lacks a component or an instruction feature, naming each', () => {
    const abi = xsaveAbiOf({ xcr0: skx.kvmXcr0 }, skx);
    const problems = checkXsaveRestore(abi, bdw);
    expect(problems.map((p) => p.subject)).toEqual(['xfeature bndregs', 'xfeature bndcsr', 'xfeature opmask', 'xfeature zmm_hi256', 'xfeature hi16_zmm', 'xfeature pkru', 'xsave', 'xsave', 'xsave']);
    expect(problems.at(-1)!.message).toMatch(/XSAVES .* host intel-broadwell lacks it/);
    const amx = xsaveAbiOf({ xcr0: spr.kvmXcr0, xss: spr.xss }, spr);
    expect(checkXsaveRestore(amx, amdMeasured).map((p) => p.subject)).toEqual([
      'xfeature opmask', // moved: 0x440 → 0x340
      'xfeature zmm_hi256',
      'xfeature hi16_zmm',
      'xfeature pkru', // missing
      'xfeature xtile_cfg',
      'xfeature xtile_data',
      'xsave', // XFD
    ]);
  });
});

describe('pool baseline', () => {
  it('Intel SPR + Skylake-SP: AVX-512 and PKRU stay; MPX and AMX go, each with its host', () => {
    const b = poolBaseline([spr, skx]);
    expect(b.policy.xcr0).toBe(MASK.FPSSE | MASK.YMM | MASK.AVX512 | MASK.PKRU);
    expect(b.excluded.map((e) => e.component)).toEqual(['bndregs (bit 3)', 'bndcsr (bit 4)', 'cet_user (bit 11)', 'cet_kernel (bit 12)', 'xtile_cfg (bit 17)', 'xtile_data (bit 18)']);
    expect(b.hosts).toEqual([
      { name: 'intel-spr-amx', lacks: ['bndregs (bit 3): not supported', 'bndcsr (bit 4): not supported'] },
      { name: 'intel-skylake-sp', lacks: ['cet_user (bit 11): not supported', 'cet_kernel (bit 12): not supported', 'xtile_cfg (bit 17): not supported', 'xtile_data (bit 18): not supported', 'XFD (CPUID 0xD.1 EAX bit 4)'] },
    ]);
    for (const h of [spr, skx]) expect(checkXsaveRestore(b.abi, h)).toEqual([]);
    expect(b.cpuid0d[0]).toMatchObject({ eax: 0x2e7, ebx: 0xa88, ecx: 0xa88 });
  });

  it('Intel + AMD with AVX-512: offsets differ, so AVX-512 and PKRU are left out and the reason names both offsets', () => {
    const b = poolBaseline([spr, amd]);
    expect(b.policy.xcr0).toBe(MASK.FPSSE | MASK.YMM);
    expect(b.policy.xss).toBe(0x1800n); // CET agrees on both
    const opmask = b.excluded.find((e) => e.bit === 5)!;
    expect(opmask.reasons).toEqual(['standard offset differs: 0x440 on intel-spr-amx, 0x340 on amd-epyc-avx512-pkru']);
    expect(b.excluded.find((e) => e.bit === 9)!.reasons[0]).toMatch(/0xa80 on intel-spr-amx, 0x980 on amd/);
    for (const h of [spr, amd]) expect(checkXsaveRestore(b.abi, h)).toEqual([]);
    expect(formatBaseline(b)).toMatch(/left out opmask \(bit 5\): standard offset differs/);
  });

  it('two AMD generations: PKRU agrees at 0x980, AVX-512 only on one', () => {
    const b = poolBaseline([amd, milan]);
    expect(b.policy.xcr0).toBe(MASK.FPSSE | MASK.YMM | MASK.PKRU);
    expect(b.hosts[1]!.lacks).toEqual(['opmask (bit 5): not supported', 'zmm_hi256 (bit 6): not supported', 'hi16_zmm (bit 7): not supported', 'cet_user (bit 11): not supported', 'cet_kernel (bit 12): not supported']);
  });

  it('closes the set under all-or-none rules when an operator asks for part of a group', () => {
    const b = poolBaseline([skx], { xcr0: MASK.FPSSE | MASK.YMM | (MASK.AVX512 & ~(1n << 7n)) | (1n << 3n) });
    expect(b.policy.xcr0).toBe(MASK.FPSSE | MASK.YMM);
    expect(b.excluded.map((e) => `${e.component}: ${e.reasons.join('; ')}`)).toEqual([
      'bndregs (bit 3): MPX components go together; bndcsr (bit 4) was not asked for',
      'opmask (bit 5): AVX-512 components go together; hi16_zmm (bit 7) was not asked for',
      'zmm_hi256 (bit 6): AVX-512 components go together; hi16_zmm (bit 7) was not asked for',
    ]);
  });

  it('the whole example pool comes down to x87, SSE and AVX, and every host accepts it', () => {
    const hosts = EXAMPLE_HOSTS.map(parseHostDump);
    const b = poolBaseline(hosts);
    expect(b.policy).toEqual({ xcr0: MASK.FPSSE | MASK.YMM, xss: 0n, features: 1 });
    for (const h of hosts) expect(checkXsaveRestore(b.abi, h)).toEqual([]);
    expect(() => poolBaseline([])).toThrow(XsaveError);
  });
});
