import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, serviceBehaviour, smcccReturn, UsageError } from '@plugvisor/core';
import { checkServiceConformance, MemoryMachine, withHandler } from '@plugvisor/core/testing';
import { createKvmVendorService, KVM_REG_ARM_VENDOR_HYP_BMAP, KVM_REG_ARM_VENDOR_HYP_BMAP_2 } from '@plugvisor/svc-kvm-vendor';
import createFactory, { createKvmImplService, parseImplementations, VENDOR_HYP_KVM_DISCOVER_IMPL_CPUS, VENDOR_HYP_KVM_DISCOVER_IMPL_VER } from './index.js';

/**
 * svc-kvm-impl against core's conformance kit (beside the vendor base it needs, whose
 * KVM_FEATURES must report functions 64 and 65 exactly while they are exposed), its behaviour
 * transcripts, the BMAP_2 register's listing, and the option's checks.
 */
const LIST = '0x413fd0c1:0x0:0x0,0x411fd401:0x1:0x2';
const build = (impl = createKvmImplService({ implementations: LIST })) => Hypervisor.compose([createKvmVendorService(), impl], { name: 'kvm-impl' });

describe('svc-kvm-impl: conformance kit', () => {
  it('conforms with the operator’s list and with the machine’s own CPU, beside svc-kvm-vendor', () => {
    const companions = () => [createKvmVendorService()];
    expect(checkServiceConformance(createKvmImplService({ implementations: LIST }), { companions: companions() })).toEqual([]);
    expect(checkServiceConformance(createKvmImplService(), { companions: companions() })).toEqual([]);
    // and the vendor base stays truthful with this package's bits in BMAP_2 (SMC64 function ids)
    expect(checkServiceConformance(createKvmVendorService(), { companions: [createKvmImplService({ implementations: LIST })] })).toEqual([]);
  });

  it('catches a KVM_FEATURES that leaves x2 empty while the calls are exposed', () => {
    const broken = withHandler(createKvmVendorService(), 'KVM_VENDOR_FEATURES', () => (v) => smcccReturn(v.regs, 0b11));
    const problems = checkServiceConformance(broken, { companions: [createKvmImplService({ implementations: LIST })] });
    expect(problems).toContain('KVM_VENDOR_FEATURES bit 64 says not supported, but the VM exposes KVM_DISCOVER_IMPL_VER (kvm-discover-impl-ver=on)');
    expect(problems).toContain('KVM_VENDOR_FEATURES bit 65 says not supported, but the VM exposes KVM_DISCOVER_IMPL_CPUS (kvm-discover-impl-cpus=on)');
  });

  it('a DISCOVER_IMPL_CPUS answering past the end of the list shows in its transcript (what lint replays)', () => {
    const real = createKvmImplService({ implementations: LIST });
    const broken = withHandler(createKvmImplService({ implementations: LIST }), 'KVM_DISCOVER_IMPL_CPUS', () => (v) => smcccReturn(v.regs, 0, 1, 2, 3));
    const was = serviceBehaviour(build(real), real)['kvm-discover-impl-cpus=on']!.KVM_DISCOVER_IMPL_CPUS!;
    const now = serviceBehaviour(build(broken), broken)['kvm-discover-impl-cpus=on']!.KVM_DISCOVER_IMPL_CPUS!;
    expect(was['x1=0x2']).toBe('x0=0xfffffffffffffffd x1=0x0 x2=0x0 x3=0x0');
    expect(now['x1=0x2']).toBe('x0=0x0 x1=0x1 x2=0x2 x3=0x3');
  });
});

describe('svc-kvm-impl: what the calls answer (behaviour transcripts)', () => {
  it('off by default: NOT_SUPPORTED; on: version 1.0 and the count, each entry, −3 one past the end', () => {
    const impl = createKvmImplService({ implementations: LIST });
    const b = serviceBehaviour(build(impl), impl);
    expect(b.default!.KVM_DISCOVER_IMPL_VER).toBeUndefined(); // not exposed: the kit checks it answers NOT_SUPPORTED
    expect(b['kvm-discover-impl-ver=on']!.KVM_DISCOVER_IMPL_VER!['-']).toBe('x0=0x0 x1=0x10000 x2=0x2 x3=0x0');
    const cpus = b['kvm-discover-impl-cpus=on']!.KVM_DISCOVER_IMPL_CPUS!;
    expect(cpus['x1=0x0']).toBe('x0=0x0 x1=0x413fd0c1 x2=0x0 x3=0x0');
    expect(cpus['x1=0x1']).toBe('x0=0x0 x1=0x411fd401 x2=0x1 x3=0x2');
    expect(cpus['x1=0x2']).toBe('x0=0xfffffffffffffffd x1=0x0 x2=0x0 x3=0x0');
  });

  it('KVM_FEATURES reports functions 64 and 65 in x2 exactly for the features on', () => {
    const vendor = createKvmVendorService();
    const b = serviceBehaviour(Hypervisor.compose([vendor, createKvmImplService({ implementations: LIST })], { name: 'kvm-impl' }), vendor);
    expect(b.default!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x1 x1=0x0 x2=0x0 x3=0x0');
    expect(b['kvm-discover-impl-ver=on']!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x1 x1=0x0 x2=0x1 x3=0x0');
    expect(b['kvm-discover-impl-cpus=on']!.KVM_VENDOR_FEATURES!['-']).toBe('x0=0x1 x1=0x0 x2=0x2 x3=0x0');
  });

  it('a machine without a CPU identity and no list: both calls answer NOT_SUPPORTED', () => {
    const hv = build(createKvmImplService());
    const vm = hv.createVm({ features: { 'kvm-discover-impl-ver': true, 'kvm-discover-impl-cpus': true } });
    const machine = new MemoryMachine(1, 0x4000_0000n, 1 << 16);
    vm.attachMachine(machine);
    vm.start();
    const regs = machine.vcpus[0]!.regs;
    for (const fid of [VENDOR_HYP_KVM_DISCOVER_IMPL_VER, VENDOR_HYP_KVM_DISCOVER_IMPL_CPUS]) {
      regs.u64.fill(0n);
      regs.set(0, BigInt(fid));
      vm.dispatch(Conduits.smccc, machine.vcpus[0]!);
      expect(regs.get(0)).toBe((1n << 64n) - 1n);
    }
  });
});

describe('KVM_REG_ARM_VENDOR_HYP_BMAP_2: listed only while a feature of it is on', () => {
  it('a default VM lists what a build without the package lists; turning a feature on lists it', () => {
    const without = Hypervisor.compose([createKvmVendorService()], { name: 'vendor' }).createVm();
    const off = build().createVm();
    expect(off.abi.getRegList()).toEqual(without.abi.getRegList());
    expect(off.abi.getRegList()).toEqual([KVM_REG_ARM_VENDOR_HYP_BMAP]);
    expect(Object.keys(off.record().registers)).toEqual(['0x6030000000160002']);
    const on = build().createVm({ features: { 'kvm-discover-impl-cpus': true } });
    expect(on.abi.getRegList()).toEqual([KVM_REG_ARM_VENDOR_HYP_BMAP, KVM_REG_ARM_VENDOR_HYP_BMAP_2]);
    expect(on.abi.getOneReg(KVM_REG_ARM_VENDOR_HYP_BMAP_2)).toBe(0x2n);
    expect(on.record().registers['0x6030000000160003']).toBe('0x2');
  });

  it('a bitmap another package also declares `always` stays listed', () => {
    const other = createKvmImplService({ implementations: LIST });
    const always = { ...other, surface: { ...other.surface, features: other.surface.features.map((f) => (f.register!.bit === 0 ? { ...f, register: { ...f.register!, listed: 'always' as const } } : f)) } };
    const vm = Hypervisor.compose([createKvmVendorService(), always], { name: 'mixed' }).createVm();
    expect(vm.abi.getRegList()).toContain(KVM_REG_ARM_VENDOR_HYP_BMAP_2);
  });
});

describe('the implementations option', () => {
  it('parses midr:revidr:aidr entries and refuses a count of 0, malformed entries and values over 64 bits', () => {
    expect(parseImplementations(LIST)).toEqual([
      { midr: 0x413fd0c1n, revidr: 0n, aidr: 0n },
      { midr: 0x411fd401n, revidr: 1n, aidr: 2n },
    ]);
    expect(() => parseImplementations('')).toThrow(UsageError);
    expect(() => parseImplementations('  ')).toThrow(/at least one CPU implementation/);
    expect(() => parseImplementations('1:2')).toThrow(/entry 0 '1:2' is not midr:revidr:aidr/);
    expect(() => parseImplementations('1:2:3,x:0:0')).toThrow(/entry 1 midr: 'x' is not an integer/);
    expect(() => parseImplementations('0x10000000000000000:0:0')).toThrow(/does not fit in 64 bits/);
    expect(createFactory.options.implementations!.type).toBe('string');
  });
});
