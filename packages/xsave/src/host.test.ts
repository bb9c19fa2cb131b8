import { describe, expect, it } from 'vitest';
import {
  AMD_EPYC_MEASURED,
  AMD_EPYC_PKRU,
  EXAMPLE_HOSTS,
  INTEL_SKYLAKE_SP,
  INTEL_SPR_AMX,
  XFEATURE,
  XsaveError,
  compactedSize,
  hostDumpFromCpuid,
  parseHostDump,
  standardSize,
  type HostCapabilityDump,
} from './index.js';

const refusal = (f: () => unknown): XsaveError => {
  try {
    f();
  } catch (e) {
    if (e instanceof XsaveError) return e;
    throw e;
  }
  throw new Error('expected an XsaveError');
};

describe('host capability dumps', () => {
  it.each(EXAMPLE_HOSTS.map((d) => [d.name, d] as const))('%s parses, and its sizes agree with its own CPUID 0xD.0/0xD.1', (_n, dump) => {
    const h = parseHostDump(JSON.parse(JSON.stringify(dump)));
    const s0 = dump.cpuid0d.find((e) => e.index === 0)!;
    const s1 = dump.cpuid0d.find((e) => e.index === 1)!;
    expect(standardSize(h, h.xcr0)).toBe(s0.ecx);
    if (s1.ebx) expect(compactedSize(h, h.xcr0 | h.xss)).toBe(s1.ebx);
    expect(h.uabiSize).toBeGreaterThanOrEqual(4096);
  });

  it('reproduces the measured AMD numbers: compacted 0x9a8, XCR0 0xe7, CET in XSS', () => {
    const h = parseHostDump(AMD_EPYC_MEASURED);
    expect(h.xcr0).toBe(0xe7n);
    expect(h.xss).toBe(0x1800n);
    expect(compactedSize(h, h.xcr0 | h.xss)).toBe(0x9a8);
    expect(h.components.get(XFEATURE.CET_USER)).toMatchObject({ kind: 'supervisor', size: 16, offset: undefined });
    expect(h.compacted).toBe(true);
  });

  it('keeps Intel and AMD offsets apart: opmask 0x440 vs 0x340, PKRU 0xA80 vs 0x980', () => {
    const intel = parseHostDump(INTEL_SPR_AMX);
    const amd = parseHostDump(AMD_EPYC_PKRU);
    expect(intel.components.get(XFEATURE.OPMASK)!.offset).toBe(0x440);
    expect(amd.components.get(XFEATURE.OPMASK)!.offset).toBe(0x340);
    expect(intel.components.get(XFEATURE.PKRU)!.offset).toBe(0xa80);
    expect(amd.components.get(XFEATURE.PKRU)!.offset).toBe(0x980);
    expect(intel.components.get(XFEATURE.XTILE_DATA)).toMatchObject({ offset: 2816, size: 8192 });
    // Layout order is by offset, not by bit.
    expect(intel.layout.map((c) => c.bit)).toEqual([0, 1, 2, 5, 6, 7, 9, 17, 18]);
    expect(parseHostDump(INTEL_SKYLAKE_SP).components.get(XFEATURE.BNDREGS)!.offset).toBe(0x3c0);
  });

  it('builds a dump from KVM_GET_SUPPORTED_CPUID entries, keeping only leaf 0xD', () => {
    const dump = hostDumpFromCpuid('x', [{ function: 1, index: 0, eax: 1, ebx: 2, ecx: 3, edx: 4 }, ...AMD_EPYC_MEASURED.cpuid0d], { kvmXcompGuestSupp: '0xe7' });
    expect(dump.cpuid0d).toHaveLength(AMD_EPYC_MEASURED.cpuid0d.length);
    expect(parseHostDump(dump).kvmXcr0).toBe(0xe7n);
  });

  it('refuses a broken dump naming every problem and component', () => {
    const bad: HostCapabilityDump = {
      ...AMD_EPYC_MEASURED,
      name: 'broken',
      cpuid0d: AMD_EPYC_MEASURED.cpuid0d.map((e) => (e.index === 5 ? { ...e, ebx: 0x300 } : e.index === 6 ? { ...e, eax: 0x100 } : e.index === 11 ? { ...e, ecx: 0 } : e)),
    };
    const err = refusal(() => parseHostDump(bad));
    expect(err.code).toBe('XSAVE_BAD_DUMP');
    expect(err.components).toEqual(expect.arrayContaining(['cet_user (bit 11)', 'zmm_hi256 (bit 6)', 'avx (bit 2)', 'opmask (bit 5)']));
    expect(err.message).toMatch(/size 256 differs from the architectural 512/);
    expect(err.message).toMatch(/overlaps/);
  });

  it('refuses a dump without sub-leaf 0, or with a component that has no sub-leaf', () => {
    expect(refusal(() => parseHostDump({ format: 1, name: 'n', cpuid0d: [] })).message).toMatch(/no CPUID 0xD sub-leaf 0/);
    const missing = { ...AMD_EPYC_MEASURED, cpuid0d: AMD_EPYC_MEASURED.cpuid0d.filter((e) => e.index !== 7) };
    expect(refusal(() => parseHostDump(missing)).components).toEqual(['hi16_zmm (bit 7)']);
    expect(refusal(() => parseHostDump({ ...AMD_EPYC_MEASURED, kvmXsave2Size: 100 })).message).toMatch(/kvmXsave2Size/);
  });
});
