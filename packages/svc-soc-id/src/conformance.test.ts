import { describe, expect, it } from 'vitest';
import { checkServiceOptions, Hypervisor, serviceBehaviour, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler } from '@plugvisor/core/testing';
import { createSmcccArchService, smcccArchHooks } from '@plugvisor/svc-smccc-arch';
import socIdFactory, { createSocIdService, jep106IdByte, SMCCC_ARCH_SOC_ID, socIdVersion } from './index.js';

/**
 * svc-soc-id against core's conformance kit, beside svc-smccc-arch (which answers
 * ARCH_FEATURES(SOC_ID) through the tap this package adds). The broken variants wrap the real
 * plugin; none edits the real code.
 */

const ARM = { jep106Bank: 4, jep106Id: 0x3b, socId: 0x1234, revision: 0x56 }; // Arm Ltd: JEP-106 bank 5, code 0x3B

describe('svc-soc-id: conformance kit', () => {
  it('conforms beside svc-smccc-arch, with default and with operator options', () => {
    expect(checkServiceConformance(createSocIdService(), { companions: [createSmcccArchService()] })).toEqual([]);
    expect(checkServiceConformance(createSocIdService(ARM), { companions: [createSmcccArchService()] })).toEqual([]);
  });

  it('requires svc-smccc-arch: a build without it is refused by name', () => {
    expect(() => Hypervisor.compose([createSocIdService()], { name: 'alone' })).toThrow(/@plugvisor\/svc-soc-id requires @plugvisor\/svc-smccc-arch, which is not in the build/);
  });

  it('encodes SOC_ID(0) as DEN0028 lays it out: bank 30:24, JEP-106 id with odd parity 23:16, SoC id 15:0', () => {
    expect(jep106IdByte(0x3b)).toBe(0x3b); // five ones: odd already
    expect(jep106IdByte(0x01)).toBe(0x01);
    expect(jep106IdByte(0x03)).toBe(0x83);
    expect(jep106IdByte(0)).toBe(0x80);
    expect(socIdVersion(ARM)).toBe(0x043b_1234);
    expect(socIdVersion({ jep106Bank: 0x7f, jep106Id: 0x7f, socId: 0xffff })).toBe(0x7f7f_ffff); // bit 31 stays 0
    expect(socIdVersion()).toBe(0x0080_0000);
  });

  it('records the answers: version, revision, INVALID_PARAMETER (−3) for any other type, w1 only', () => {
    const arch = createSmcccArchService();
    const soc = createSocIdService(ARM);
    const hv = Hypervisor.compose([arch, soc], { name: 'soc' });
    const t = serviceBehaviour(hv, soc);
    const on = t['soc-id=on']!.SMCCC_ARCH_SOC_ID!;
    expect(on['x1=0x0']).toBe('x0=0x43b1234 x1=0x0 x2=0x0 x3=0x0');
    expect(on['x1=0x1']).toBe('x0=0x56 x1=0x0 x2=0x0 x3=0x0');
    expect(on['x1=0x2']).toBe('x0=0xfffffffffffffffd x1=0x0 x2=0x0 x3=0x0');
    expect(on['x1=0xa5a5a5a500000001']).toBe(on['x1=0x1']);
    expect(t.default!.SMCCC_ARCH_SOC_ID).toBeUndefined(); // opt-in: not exposed by default
  });

  it('ARCH_FEATURES(SOC_ID) follows the soc-id feature, at either SMCCC version', () => {
    const arch = createSmcccArchService();
    const hv = Hypervisor.compose([arch, createSocIdService()], { name: 'soc' });
    const b = serviceBehaviour(hv, arch);
    expect(b.default!.SMCCC_VERSION!['-']).toBe('x0=0x10001 x1=0x0 x2=0x0 x3=0x0');
    expect(b['smccc=1.2']!.SMCCC_VERSION!['-']).toBe('x0=0x10002 x1=0x0 x2=0x0 x3=0x0');
    const query = (vm: ReturnType<Hypervisor['createVm']>) => {
      const feature = smcccArchHooks(hv).features.get(SMCCC_ARCH_SOC_ID);
      return feature?.call(vm);
    };
    expect(query(hv.createVm())).toBeUndefined();
    expect(query(hv.createVm({ features: { 'soc-id': true } }))).toBe(0);
    expect(query(hv.createVm({ features: { 'soc-id': true }, versions: { smccc: '1.2' } }))).toBe(0);
  });

  it('declares its options: a build file naming a bad one is refused with the key and the range', () => {
    expect(checkServiceOptions(socIdFactory.options, { jep106Id: 0x3b, revision: 1 })).toBeUndefined();
    expect(checkServiceOptions(socIdFactory.options, { jep106Id: 0xbb })?.message).toBe("option 'jep106Id' is 187; it takes an integer in 0..127");
    expect(checkServiceOptions(socIdFactory.options, { name: 'x' })?.message).toBe("unknown option 'name' (options: jep106Bank, jep106Id, socId, revision)");
    expect(() => createSocIdService({ socId: 0x1_0000 })).toThrow("option 'socId' is 65536; it takes an integer in 0..65535");
  });

  it('catches ARCH_FEATURES advertising SOC_ID while the VM has it off', () => {
    const real = createSocIdService();
    const broken: ServicePlugin<undefined> = Object.freeze({
      ...real,
      apply(hv: Hypervisor) {
        smcccArchHooks(hv).features.for(SMCCC_ARCH_SOC_ID).tap('unconditional', () => 0);
        real.apply(hv);
      },
    });
    expect(checkServiceConformance(broken, { companions: [createSmcccArchService()] })).toContain(
      'SMCCC_ARCH_FEATURES answers 0 ("supported") for SMCCC_ARCH_SOC_ID, which the VM does not expose',
    );
  });

  it('catches a handler that reads the whole x1 (SoC_ID_type is an SMC32 argument: w1)', () => {
    const broken = withHandler(createSocIdService(), 'SMCCC_ARCH_SOC_ID', (h) => (v, b) => {
      if (v.regs.get(1) > 0xffff_ffffn) return void v.regs.setSigned(0, -3), v.regs.setU32(1, 0), v.regs.setU32(2, 0), v.regs.setU32(3, 0);
      h(v, b);
    });
    expect(checkServiceConformance(broken, { companions: [createSmcccArchService()] })).toContainEqual(expect.stringMatching(/SMCCC_ARCH_SOC_ID reads the upper half of x1/));
  });
});
