/**
 * KVM_GET/SET_ONE_REG's first check (Linux arch/arm64/kvm/guest.c, kvm_arm_get_reg and
 * kvm_arm_set_reg): an id whose bits 63:32, the size field (KVM_REG_SIZE_MASK) aside, are not
 * KVM_REG_ARM64's is EINVAL — before the id is looked up, so an unknown id of another
 * architecture is EINVAL, not ENOENT, and so is one with reserved bits 51:32 set. A well-formed
 * arm64 id the build does not have stays ENOENT (arch/arm64/kvm/hypercalls.c,
 * kvm_arm_get_fw_reg), and the check comes before EBUSY after the first run.
 */
import { describe, expect, it } from 'vitest';
import { AbiError, Hypervisor } from '../index.js';
import { createEchoService, ECHO, MemoryMachine } from '../testing/index.js';

const errno = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof AbiError)) throw e;
    return e.errnoName;
  }
  return 'ok';
};

// include/uapi/linux/kvm.h: KVM_REG_ARCH_MASK 0xff00..., KVM_REG_ARM 0x4000..., KVM_REG_ARM64
// 0x6000..., KVM_REG_X86 0x2000..., KVM_REG_RISCV 0x8000...; KVM_REG_SIZE_U64 0x0030...
const U64 = 0x0030_0000_0000_0000n;
const FW_INDEX = 0x0014_0000n; // KVM_REG_ARM_FW | 0: PSCI_VERSION's index
const NOT_ARM64 = [
  ['KVM_REG_ARM (32-bit Arm)', 0x4000_0000_0000_0000n | U64 | FW_INDEX],
  ['KVM_REG_X86', 0x2000_0000_0000_0000n | U64 | FW_INDEX],
  ['KVM_REG_RISCV', 0x8000_0000_0000_0000n | U64 | FW_INDEX],
  ['no architecture', U64 | FW_INDEX],
  ['KVM_REG_ARM64 with bit 32 set', 0x6000_0001_0000_0000n | U64 | FW_INDEX],
  ['KVM_REG_ARM64 with bit 51 set', 0x6008_0000_0000_0000n | U64 | FW_INDEX],
  ['all ones', 0xffff_ffff_ffff_ffffn],
] as const;

describe('ONE_REG: an id that is not an arm64 register', () => {
  const hv = Hypervisor.compose([createEchoService()], { name: 't' });

  it('is EINVAL for get and set, where a well-formed unknown arm64 id is ENOENT', () => {
    const abi = hv.createVm().abi;
    for (const [what, id] of NOT_ARM64) {
      expect(errno(() => abi.getOneReg(id)), what).toBe('EINVAL');
      expect(errno(() => abi.setOneReg(id, 0n)), what).toBe('EINVAL');
    }
    expect(errno(() => abi.getOneReg(0x6030_0000_0016_0042n))).toBe('ENOENT');
    expect(errno(() => abi.setOneReg(0x6030_0000_0016_0042n, 0n))).toBe('ENOENT');
    // another size field is still the arm64 architecture: the lookup decides (ENOENT)
    expect(errno(() => abi.getOneReg(0x6020_0000_0014_0000n))).toBe('ENOENT');
    // the build's own registers answer as before
    expect(errno(() => abi.getOneReg(ECHO.BITMAP_REG))).toBe('ok');
  });

  it('names the id in the message', () => {
    const abi = hv.createVm().abi;
    expect(() => abi.getOneReg(0x4030_0000_0014_0000n)).toThrow(/0x4030000000140000 is not an arm64 register id/);
  });

  it('is EINVAL after the first run too, before EBUSY', () => {
    const vm = hv.createVm();
    vm.attachMachine(new MemoryMachine());
    vm.start();
    expect(errno(() => vm.abi.setOneReg(0x2030_0000_0014_0000n, 1n))).toBe('EINVAL');
    const bitmap = vm.abi.getOneReg(ECHO.BITMAP_REG);
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, bitmap ^ 1n))).toBe('EBUSY');
  });
});
