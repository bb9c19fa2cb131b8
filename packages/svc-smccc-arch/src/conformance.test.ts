import { describe, expect, it } from 'vitest';
import { checkRecord, Hypervisor, serviceBehaviour, smcccReturn, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler, withSignature } from '@plugvisor/core/testing';
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

  it('SMCCC_VERSION follows the VM\'s smccc selector: 1.1 (KVM\'s) by default, 1.2 only when selected; nothing else changes', () => {
    const arch = createSmcccArchService();
    const hv = Hypervisor.compose([arch], { name: 'arch' });
    expect(hv.createVm().abi.version('smccc')).toBe('1.1');
    const b = serviceBehaviour(hv, arch);
    expect(b.default!.SMCCC_VERSION!['-']).toBe('x0=0x10001 x1=0x0 x2=0x0 x3=0x0');
    expect(b['smccc=1.2']!.SMCCC_VERSION!['-']).toBe('x0=0x10002 x1=0x0 x2=0x0 x3=0x0');
    expect(b['smccc=1.2']!.SMCCC_VERSION!.smc).toBe('x0=0x10002 x1=0x0 x2=0x0 x3=0x0');
    // a non-default configuration records only what differs from the default VM: SMCCC_VERSION alone
    expect(Object.keys(b['smccc=1.2']!)).toEqual(['SMCCC_VERSION']);
    expect(Object.keys(b['smccc=1.2']!.SMCCC_VERSION!).sort()).toEqual(Object.keys(b.default!.SMCCC_VERSION!).sort());
    expect(() => hv.createVm({ versions: { smccc: '1.3' } })).toThrow(/1\.3/);
  });

  it('moves VMs of the release before the selector (1.0.0: SMCCC_VERSION fixed at 1.1) up, and back when they see what 1.0.0 answers', () => {
    // 1.0.0 as released: no version selector, SMCCC_VERSION answering 0x10001.
    const real = createSmcccArchService();
    const { versions: _, ...surface } = real.surface;
    const released = withHandler(Object.freeze({ ...real, surface }), 'SMCCC_VERSION', () => (v) => smcccReturn(v.regs, 0x1_0001));
    const before = Hypervisor.compose([released], { name: '1.0.0' });
    const now = Hypervisor.compose([createSmcccArchService()], { name: 'now' });
    // upgrade: a VM that never had the selector gets the default, 1.1, and answers exactly as before
    expect(checkRecord(before.createVm().record(), now.catalog, now)).toEqual([]);
    // rollback: 1.0.0 has no selector; the VM's behaviour decides. At 1.1 it sees exactly what
    // 1.0.0 answers and moves back; at 1.2 SMCCC_VERSION would change under it: refused by name.
    expect(checkRecord(now.createVm({ versions: { smccc: '1.1' } }).record(), before.catalog, before)).toEqual([]);
    const refused = checkRecord(now.createVm({ versions: { smccc: '1.2' } }).record(), before.catalog, before);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^feature 'smccc-arch' of @plugvisor\/svc-smccc-arch@.* answers differently than the VM saw: SMCCC_VERSION .*x0=0x10002.* → x0=0x10001/);
    // Without the destination's code (no replay possible) the selector's absence is the refusal.
    expect(checkRecord(now.createVm({ versions: { smccc: '1.1' } }).record(), before.catalog)).toEqual(['@plugvisor/svc-smccc-arch no longer offers a smccc version selector']);
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
