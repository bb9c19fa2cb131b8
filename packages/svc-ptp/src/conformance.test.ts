import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withSignature } from '@plugvisor/core/testing';
import { createKvmVendorService } from '@plugvisor/svc-kvm-vendor';
import { createPtpService } from './index.js';

/**
 * svc-ptp against core's conformance kit, beside its vendor base: KVM_PTP keeps to its
 * signature (a u32 counter selector; four clock samples) and KVM_FEATURES advertises it
 * exactly while the VM has it. The broken variants wrap the real plugin; none edits the real code.
 */

describe('svc-ptp: conformance kit', () => {
  it('conforms beside svc-kvm-vendor', () => {
    expect(checkServiceConformance(createPtpService(), { companions: [createKvmVendorService()] })).toEqual([]);
  });

  it('declares a signature for every call; the samples are time results', () => {
    const [ptp] = createPtpService().surface.calls;
    expect(ptp!.signature!.args).toEqual([{ name: 'counter', reg: 1, width: 'u32', kind: 'enum', values: [0, 1] }]);
    expect(ptp!.signature!.results!.map((r) => r.kind)).toEqual(['time', 'time', 'time', 'time']);
  });

  it('KVM_FEATURES advertises KVM_PTP (bit 1) while kvm-ptp is on', () => {
    const vendor = createKvmVendorService();
    const b = serviceBehaviour(Hypervisor.compose([vendor, createPtpService()], { name: 'ptp' }), vendor);
    expect(b.default!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x3 x1=0x0 x2=0x0 x3=0x0');
    expect(b['kvm-ptp=off']!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x1 x1=0x0 x2=0x0 x3=0x0');
  });

  it('catches a PTP feature mirrored in the wrong bitmap bit: KVM_FEATURES then misreports it', () => {
    const real = createPtpService();
    const broken = Object.freeze({
      ...real,
      surface: { ...real.surface, features: real.surface.features.map((f) => ({ ...f, register: { ...f.register!, bit: 2 } })) },
    });
    const problems = checkServiceConformance(broken, { companions: [createKvmVendorService()] });
    expect(problems).toContain('KVM_VENDOR_FEATURES bit 1 says not supported, but the VM exposes KVM_PTP');
    expect(problems).toContain('KVM_VENDOR_FEATURES bit 2 says supported, but the VM does not expose 0x86000002');
  });

  it('catches a signature without the counter selector (x1)', () => {
    const broken = withSignature(createPtpService(), 'KVM_PTP', (s) => ({ ...s, args: [] }));
    expect(checkServiceConformance(broken, { companions: [createKvmVendorService()] })).toContainEqual(
      expect.stringMatching(/^call KVM_PTP reads a register its signature does not name: x0 differs/),
    );
  });
});
