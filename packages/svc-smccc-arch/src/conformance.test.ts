import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withSignature } from '@plugvisor/core/testing';
import { ARCH_WORKAROUND_1, ARCH_WORKAROUND_3, createSmcccArchService } from './index.js';

/**
 * svc-smccc-arch against core's conformance kit: every call keeps to its signature and
 * SMCCC_ARCH_FEATURES says "supported" exactly for calls the VM exposes. The broken variants
 * wrap the real plugin; none edits the real code.
 */

describe('svc-smccc-arch: conformance kit', () => {
  it('conforms', () => {
    expect(checkServiceConformance(createSmcccArchService())).toEqual([]);
  });

  it('declares a signature for every call; ARCH_FEATURES is a query discovery call', () => {
    const arch = createSmcccArchService();
    for (const c of arch.surface.calls) expect(c.signature, c.name).toBeDefined();
    const features = arch.surface.calls.find((c) => c.name === 'SMCCC_ARCH_FEATURES')!.signature!;
    expect(features.discovery).toEqual({ kind: 'query', arg: 1, mustAnswer: [ARCH_WORKAROUND_1, ARCH_WORKAROUND_3, 0xc500_0020] });
  });

  it('records what KVM answers: workaround levels, x1 read as u32, SMC workaround calls refused', () => {
    const arch = createSmcccArchService();
    const t = serviceBehaviour(Hypervisor.compose([arch], { name: 'arch' }), arch).default!;
    expect(t.SMCCC_ARCH_FEATURES!['x1=0x80008000']).toBe('x0=0x1 x1=0x0 x2=0x0 x3=0x0');
    expect(t.SMCCC_ARCH_FEATURES!['x1=0x80007fff']).toBe('x0=0xfffffffffffffffe x1=0x0 x2=0x0 x3=0x0');
    expect(t.SMCCC_ARCH_FEATURES!['x1=0xa5a5a5a580008000']).toBe('x0=0x1 x1=0x0 x2=0x0 x3=0x0');
    expect(t.SMCCC_ARCH_FEATURES!['x1=0xc5000020']).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0'); // no PV time in this build
    expect(t.SMCCC_ARCH_WORKAROUND_1!['-']).toBe('x0=0x0 x1=0x0 x2=0x0 x3=0x0');
    expect(t.SMCCC_ARCH_WORKAROUND_1!.smc).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0');
  });

  it('catches ARCH_FEATURES advertising a workaround call the VM does not expose', () => {
    // A release that put the workaround calls behind an opt-in feature but left ARCH_FEATURES's answers alone.
    const real = createSmcccArchService();
    const broken: ServicePlugin<undefined> = Object.freeze({
      ...real,
      surface: {
        ...real.surface,
        features: [...real.surface.features, { name: 'smccc-workarounds', default: 'opt-in' as const, description: 'the ARCH_WORKAROUND calls' }],
        calls: real.surface.calls.map((c) => (c.name.startsWith('SMCCC_ARCH_WORKAROUND_') ? { ...c, feature: 'smccc-workarounds' } : c)),
      },
    });
    const problems = checkServiceConformance(broken);
    expect(problems).toContain('SMCCC_ARCH_FEATURES answers 1 ("supported") for SMCCC_ARCH_WORKAROUND_1, which the VM does not expose');
    expect(problems).toContain('SMCCC_ARCH_FEATURES answers 1 ("supported") for SMCCC_ARCH_WORKAROUND_3, which the VM does not expose');
  });

  it('catches a workaround signature that declares only x0 (the HVC fast path also clears x1)', () => {
    const broken = withSignature(createSmcccArchService(), 'SMCCC_ARCH_WORKAROUND_1', (s) => ({ ...s, results: [{ reg: 0 }] }));
    expect(checkServiceConformance(broken)).toContain('call SMCCC_ARCH_WORKAROUND_1 writes x1, which its signature does not declare as a result (probe [-])');
  });

  it('catches an on-by-default feature without a legacy reason', () => {
    const real = createSmcccArchService();
    const broken = Object.freeze({ ...real, surface: { ...real.surface, features: real.surface.features.map(({ legacy: _, ...f }) => f) } });
    expect(checkServiceConformance(broken)).toEqual(["feature 'smccc-arch' is on by default but declares no 'legacy' reason: new ABI must be opt-in"]);
  });
});
