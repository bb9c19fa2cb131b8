import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withSignature } from '@plugvisor/core/testing';
import { createSmcccArchService, smcccArchHooks } from '@plugvisor/svc-smccc-arch';
import { createPvTimeService, PV_TIME_FEATURES, type PvTimeState } from './index.js';

/**
 * svc-pvtime against core's conformance kit, beside svc-smccc-arch (whose ARCH_FEATURES it
 * answers through): every call keeps to its signature, and both PV_TIME_FEATURES and
 * ARCH_FEATURES(PV_TIME_FEATURES) say "supported" only while the VM has PV time. The broken
 * variants wrap the real plugin; none edits the real code.
 */

describe('svc-pvtime: conformance kit', () => {
  it('conforms beside svc-smccc-arch, and alone', () => {
    expect(checkServiceConformance(createPvTimeService(), { companions: [createSmcccArchService()] })).toEqual([]);
    expect(checkServiceConformance(createPvTimeService())).toEqual([]);
  });

  it('declares a signature for every call', () => {
    for (const c of createPvTimeService().surface.calls) expect(c.signature, c.name).toBeDefined();
  });

  it('ARCH_FEATURES(PV_TIME_FEATURES) follows the pv-time feature', () => {
    const arch = createSmcccArchService();
    const b = serviceBehaviour(Hypervisor.compose([arch, createPvTimeService()], { name: 'pvtime' }), arch);
    expect(b.default!.SMCCC_ARCH_FEATURES!['x1=0xc5000020']).toBe('x0=0x0 x1=0x0 x2=0x0 x3=0x0');
    expect(b['pv-time=off']!.SMCCC_ARCH_FEATURES!['x1=0xc5000020']).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0');
  });

  it('catches ARCH_FEATURES advertising PV time while the VM has it off (KVM before 5.19 answered unconditionally)', () => {
    const real = createPvTimeService();
    const broken: ServicePlugin<PvTimeState> = Object.freeze({
      ...real,
      apply(hv: Hypervisor) {
        smcccArchHooks(hv).features.for(PV_TIME_FEATURES).tap('unconditional', () => 0); // first tap answers
        real.apply(hv);
      },
    });
    expect(checkServiceConformance(broken, { companions: [createSmcccArchService()] })).toEqual([
      'SMCCC_ARCH_FEATURES answers 0 ("supported") for PV_TIME_FEATURES, which the VM does not expose (pv-time=off)',
    ]);
  });

  it('catches PV_TIME_ST declared as writing only x0 (the −1 answer clears x1..x3)', () => {
    const broken = withSignature(createPvTimeService(), 'PV_TIME_ST', (s) => ({ ...s, results: [{ reg: 0 }] }));
    expect(checkServiceConformance(broken)).toContain('call PV_TIME_ST writes x1, which its signature does not declare as a result (probe [-])');
  });
});
