import { describe, expect, it } from 'vitest';
import { AbiError, Hypervisor, type Vm } from '@plugvisor/core';
import { MemoryMachine } from '@plugvisor/core/testing';
import { createPvTimeService, setStolenTimeBase, type PvTimeState } from './index.js';

/**
 * KVM_ARM_VCPU_PVTIME_IPA's checks in Linux's order (arch/arm64/kvm/pvtime.c,
 * kvm_arm_pvtime_set_attr): 64-byte alignment (EINVAL), then "already set" (EEXIST), then the
 * memslot lookup (EINVAL). A second address outside RAM is therefore EEXIST, not EINVAL.
 */
const RAM = 0x4000_0000n;
const RAM_SIZE = 1 << 20;

function vmWithMachine(vcpus = 2): Vm {
  const hv = Hypervisor.compose([createPvTimeService()], { name: 'pvtime' });
  const vm = hv.createVm();
  vm.attachMachine(new MemoryMachine(vcpus, RAM, RAM_SIZE));
  return vm;
}

const errno = (f: () => void): string => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof AbiError)) throw e;
    return e.errnoName;
  }
  return 'ok';
};

describe('setStolenTimeBase: the order of KVM_ARM_VCPU_PVTIME_IPA checks', () => {
  it('a first address outside RAM is EINVAL; once set, a second one outside RAM is EEXIST', () => {
    const vm = vmWithMachine();
    const outside = RAM + BigInt(RAM_SIZE); // aligned, just past RAM
    expect(errno(() => setStolenTimeBase(vm, 0, outside))).toBe('EINVAL');
    expect(errno(() => setStolenTimeBase(vm, 0, 0x1000n))).toBe('EINVAL'); // below RAM
    expect(errno(() => setStolenTimeBase(vm, 0, RAM + 0x1000n))).toBe('ok');
    expect(errno(() => setStolenTimeBase(vm, 0, outside))).toBe('EEXIST');
    expect(errno(() => setStolenTimeBase(vm, 0, 0x1000n))).toBe('EEXIST');
    expect(errno(() => setStolenTimeBase(vm, 0, RAM + 0x2000n))).toBe('EEXIST');
    expect(vm.stateOf<PvTimeState>('@plugvisor/svc-pvtime').bases[0]).toBe(RAM + 0x1000n); // unchanged
  });

  it('alignment is checked before "already set": a second unaligned address is EINVAL', () => {
    const vm = vmWithMachine();
    expect(errno(() => setStolenTimeBase(vm, 1, RAM + 0x40n))).toBe('ok');
    expect(errno(() => setStolenTimeBase(vm, 1, RAM + 0x48n))).toBe('EINVAL');
    expect(errno(() => setStolenTimeBase(vm, 1, RAM + BigInt(RAM_SIZE) + 8n))).toBe('EINVAL');
  });

  it('each vCPU has its own: vCPU 1 still takes an address after vCPU 0 has one; no vCPU 2', () => {
    const vm = vmWithMachine();
    expect(errno(() => setStolenTimeBase(vm, 0, RAM))).toBe('ok');
    expect(errno(() => setStolenTimeBase(vm, 1, RAM + BigInt(RAM_SIZE)))).toBe('EINVAL');
    expect(errno(() => setStolenTimeBase(vm, 1, RAM + 0x40n))).toBe('ok');
    expect(errno(() => setStolenTimeBase(vm, 2, RAM + 0x80n))).toBe('EINVAL');
  });
});
