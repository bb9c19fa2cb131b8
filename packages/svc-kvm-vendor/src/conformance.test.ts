import { describe, expect, it } from 'vitest';
import { defineService, Hypervisor, serviceBehaviour, smcccReturn, type CallHandler, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler, withSignature } from '@plugvisor/core/testing';
import { createKvmVendorService, KVM_REG_ARM_VENDOR_HYP_BMAP, KVM_REG_ARM_VENDOR_HYP_BMAP_2, VENDOR_HYP_KVM_FEATURES } from './index.js';

/**
 * svc-kvm-vendor against core's conformance kit: every call keeps to its signature, and
 * KVM_FEATURES's bitmap says "there" exactly for the vendor functions the VM exposes — checked
 * with two stand-in vendor functions beside it, one in each bitmap register (the way svc-ptp
 * plugs in). The broken variants wrap the real plugin; none edits the real code.
 */

/** A vendor function as another package would add one: function `fn`, its bit in BMAP (0–63) or BMAP_2 (64–127). */
function vendorFunction(fn: number, dflt: 'legacy-opt-out' | 'opt-in'): ServicePlugin<undefined> {
  const name = `test-vendor-fn-${fn}`;
  return defineService<undefined>({
    name: `@plugvisor-test/${name}`,
    version: '1.0.0',
    requires: ['@plugvisor/svc-kvm-vendor'],
    surface: {
      features: [
        {
          name,
          default: dflt,
          description: `stand-in vendor function ${fn}`,
          ...(dflt === 'legacy-opt-out' ? { legacy: 'test fixture' } : {}),
          register: fn < 64 ? { id: KVM_REG_ARM_VENDOR_HYP_BMAP, name: 'KVM_REG_ARM_VENDOR_HYP_BMAP', bit: fn } : { id: KVM_REG_ARM_VENDOR_HYP_BMAP_2, name: 'KVM_REG_ARM_VENDOR_HYP_BMAP_2', bit: fn - 64 },
        },
      ],
      calls: [{ name: `TEST_VENDOR_FN_${fn}`, conduit: 'smccc', id: VENDOR_HYP_KVM_FEATURES + fn, feature: name, signature: { results: [{ reg: 0 }, { reg: 1 }, { reg: 2 }, { reg: 3 }] } }],
    },
    handlers: { [`TEST_VENDOR_FN_${fn}`]: (v) => smcccReturn(v.regs, 0) },
  });
}

const COMPANIONS = () => [vendorFunction(1, 'legacy-opt-out'), vendorFunction(70, 'opt-in')];

describe('svc-kvm-vendor: conformance kit', () => {
  it('conforms alone and beside vendor functions in both bitmap registers', () => {
    expect(checkServiceConformance(createKvmVendorService())).toEqual([]);
    expect(checkServiceConformance(createKvmVendorService(), { companions: COMPANIONS() })).toEqual([]);
  });

  it('declares a signature for every call; KVM_FEATURES is a bitmap discovery call over x0..x3', () => {
    const vendor = createKvmVendorService();
    for (const c of vendor.surface.calls) expect(c.signature, c.name).toBeDefined();
    expect(vendor.surface.calls.find((c) => c.name === 'KVM_VENDOR_FEATURES')!.signature!.discovery).toEqual({ kind: 'bitmap', base: 0x8600_0000, words: [0, 1, 2, 3] });
  });

  it('records the bitmap per configuration', () => {
    const vendor = createKvmVendorService();
    const b = serviceBehaviour(Hypervisor.compose([...COMPANIONS(), vendor], { name: 'vendor' }), vendor);
    expect(b.default!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x3 x1=0x0 x2=0x0 x3=0x0');
    expect(b['test-vendor-fn-1=off']!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x1 x1=0x0 x2=0x0 x3=0x0');
    expect(b['test-vendor-fn-70=on']!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x3 x1=0x0 x2=0x40 x3=0x0');
  });

  it('catches a KVM_FEATURES that reports a fixed bitmap instead of the VM’s', () => {
    // KVM before 5.19 answered BIT(FUNC_FEAT) | BIT(PTP) whatever the VM had.
    const broken = withHandler(createKvmVendorService(), 'KVM_VENDOR_FEATURES', () => (v) => smcccReturn(v.regs, 0b11));
    expect(checkServiceConformance(broken)).toContain('KVM_VENDOR_FEATURES bit 1 says supported, but the VM does not expose 0x86000001');
    expect(checkServiceConformance(broken, { companions: COMPANIONS() })).toEqual([
      'KVM_VENDOR_FEATURES bit 1 says supported, but the VM does not expose TEST_VENDOR_FN_1 (test-vendor-fn-1=off)',
      'KVM_VENDOR_FEATURES bit 70 says not supported, but the VM exposes TEST_VENDOR_FN_70 (test-vendor-fn-70=on)',
    ]);
  });

  it('catches KVM_FEATURES declared as writing only x0 (KVM writes x0..x3)', () => {
    const broken = withSignature(createKvmVendorService(), 'KVM_VENDOR_FEATURES', (s) => ({ ...s, results: [{ reg: 0 }] }));
    expect(checkServiceConformance(broken)).toContain('call KVM_VENDOR_FEATURES writes x1, which its signature does not declare as a result (probe [-])');
  });
});
