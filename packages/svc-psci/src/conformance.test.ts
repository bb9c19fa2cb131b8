import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, smcccReturn, type CallHandler, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler, withSignature } from '@plugvisor/core/testing';
import { createSmcccArchService } from '@plugvisor/svc-smccc-arch';
import { createPsciService, psciFeatures, type PsciOptions } from './index.js';

/**
 * svc-psci against core's conformance kit, for every build cap and with svc-smccc-arch beside
 * it (PSCI_FEATURES answers for SMCCC_VERSION): every call keeps to its signature, and
 * PSCI_FEATURES says "supported" exactly for what the VM exposes under every version and
 * feature setting. The broken variants wrap the real plugin; none edits the real code.
 */

const CAPS: Array<PsciOptions['maxVersion']> = ['0.2', '1.0', '1.1', '1.2', '1.3'];
const SMCCC_VERSION = 0x8000_0000;

describe('svc-psci: conformance kit', () => {
  for (const maxVersion of CAPS) {
    it(`conforms capped at ${maxVersion}, alone and beside svc-smccc-arch`, () => {
      expect(checkServiceConformance(createPsciService({ maxVersion }))).toEqual([]);
      expect(checkServiceConformance(createPsciService({ maxVersion }), { companions: [createSmcccArchService()] })).toEqual([]);
    });
  }

  it('declares a signature for every call', () => {
    for (const c of createPsciService().surface.calls) expect(c.signature, c.name).toBeDefined();
  });

  it('PSCI_FEATURES(SMCCC_VERSION) follows whether the VM has SMCCC_VERSION (KVM: always 0, as KVM always has it)', () => {
    const psci = createPsciService();
    const b = serviceBehaviour(Hypervisor.compose([createSmcccArchService(), psci], { name: 'psci+arch' }), psci);
    expect(b.default!.PSCI_FEATURES!['x1=0x80000000']).toBe('x0=0x0 x1=0x0 x2=0x0 x3=0x0');
    expect(b['smccc-arch=off']!.PSCI_FEATURES!['x1=0x80000000']).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0');
    const alone = serviceBehaviour(Hypervisor.compose([psci], { name: 'psci' }), psci);
    expect(alone.default!.PSCI_FEATURES!['x1=0x80000000']).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0');
  });

  it('records SMC32 narrowing where KVM leaves it visible: SYSTEM_SUSPEND, a successful SYSTEM_RESET2', () => {
    const psci = createPsciService();
    const b = serviceBehaviour(Hypervisor.compose([psci], { name: 'psci' }), psci);
    expect(b['psci-system-suspend=on']!.PSCI_SYSTEM_SUSPEND!['x1=0xa5a5a5a500000001 x2=0x0 x3=0x0']).toBe('x1=0x1 x2=0x0 x3=0x0 | event(suspend,0,0x1,0x0)');
    expect(b['psci-system-suspend=on']!.PSCI_SYSTEM_SUSPEND_64!['x1=0x1 x2=0x0']).toBe(' | event(suspend,0,0x1,0x0)'); // writes nothing
    expect(b.default!.PSCI_SYSTEM_RESET2!['x1=0x0 x2=0x0 x3=0xa5a5a5a500000001']).toBe('x0=0xfffffffffffffffa x1=0x0 x2=0x0 x3=0x1 | event(reset,0,0x1,0x0,0x0)');
    // SMC64 RESET2 reads its type as a u32 and leaves x1 alone on success
    expect(b.default!.PSCI_SYSTEM_RESET2_64!['x1=0xa5a5a5a500000000 x2=0x0']).toBe('x0=0xfffffffffffffffa x1=0xa5a5a5a500000000 x2=0x0 x3=0x0 | event(reset,0,0x1,0x0,0x0)');
    expect(b.default!.PSCI_SYSTEM_RESET2_64!['x1=0xa5a5a5a500000001 x2=0x0']).toBe('x0=0xfffffffffffffffe x1=0x0 x2=0x0 x3=0x0');
  });

  it('catches PSCI_FEATURES claiming SMCCC_VERSION in a VM without it (the answer before this was checked)', () => {
    const broken = withHandler(createPsciService(), 'PSCI_FEATURES', () => (v, b) => {
      const abi = b.vm.abi;
      smcccReturn(v.regs, psciFeatures(v.regs.lo(1), abi.versionValue('psci') & 0xffff, abi.isEnabled('psci-system-suspend'))); // smcccVersion defaults to true
    });
    expect(checkServiceConformance(broken)).toContain('PSCI_FEATURES answers 0 ("supported") for 0x80000000, which the VM does not expose');
    expect(checkServiceConformance(broken, { companions: [createSmcccArchService()] })).toEqual([
      'PSCI_FEATURES answers 0 ("supported") for SMCCC_VERSION, which the VM does not expose (smccc-arch=off)',
    ]);
  });

  it('catches PSCI_FEATURES answering SYSTEM_SUSPEND by version instead of by its feature', () => {
    const broken = withHandler(createPsciService(), 'PSCI_FEATURES', () => (v, b) => {
      smcccReturn(v.regs, psciFeatures(v.regs.lo(1), b.vm.abi.versionValue('psci') & 0xffff, true));
    });
    expect(checkServiceConformance(broken)).toContain('PSCI_FEATURES answers 0 ("supported") for PSCI_SYSTEM_SUSPEND, which the VM does not expose');
  });

  it('catches a SYSTEM_RESET2 signature without the cookie (x2), which the reset event carries', () => {
    const broken = withSignature(createPsciService(), 'PSCI_SYSTEM_RESET2_64', (s) => ({ ...s, args: s.args!.filter((a) => a.reg !== 2) }));
    expect(checkServiceConformance(broken)).toContain(
      'call PSCI_SYSTEM_RESET2_64 reads a register its signature does not name: its effects differ with garbage in undeclared registers (probe [x1=0x0])',
    );
  });

  it('catches SMC32 SYSTEM_SUSPEND declared as writing nothing: KVM narrows x1..x3 in place', () => {
    const broken = withSignature(createPsciService(), 'PSCI_SYSTEM_SUSPEND', (s) => ({ ...s, results: [] }));
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call PSCI_SYSTEM_SUSPEND writes x3, which its signature does not declare as a result/));
  });

  it('catches a CPU_ON_64 target declared u32: Aff3 lives in bits 39:32', () => {
    const broken = withSignature(createPsciService(), 'PSCI_CPU_ON_64', (s) => ({ ...s, args: s.args!.map((a) => (a.reg === 1 ? { ...a, width: 'u32' as const, values: [1, 0] } : a)) }));
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call PSCI_CPU_ON_64 reads the upper half of x1 \(target_cpu\), declared u32/));
  });
});
