import type { CallHandler } from '@plugvisor/core';
import { PAGE_SHIFT, VCPU_INFO, VCPUOP_register_vcpu_info, XEN_ERRNO as E } from '../abi.js';
import type { XenDomain } from '../domain.js';
import { GuestStruct } from '../guest-args.js';
import { highBitsSet, ret } from '../subop.js';

/**
 * HYPERVISOR_vcpu_op(cmd, vcpuid, arg) on Arm (xen/arch/arm/domain.c do_vcpu_op): a bad vCPU
 * is -ENOENT; Arm accepts only register_vcpu_info and register_runstate_memory_area and
 * answers -EINVAL for any other cmd. Runstate areas are not implemented: -EINVAL too (README).
 *
 * VCPUOP_register_vcpu_info {u64 mfn, u32 offset, u32 rsvd} (xen/common/domain.c):
 *   -EFAULT copy-in; -EINVAL if mfn<<12 + offset overflows or leaves the frame; -EBUSY if the
 *   vCPU has one already; -ENXIO if the 48-byte struct crosses a page or is not 8-byte
 *   aligned; -EINVAL if the frame is not guest RAM.
 */
export const vcpuOp: CallHandler<XenDomain> = (v, b) => {
  const r = v.regs;
  if (highBitsSet(r)) return ret(r, -E.ENOSYS);
  const d = b.state;
  const cmd = r.lo(0) | 0;
  const vcpu = r.lo(1);
  if (vcpu >= d.vcpuCount) return ret(r, -E.ENOENT);
  if (cmd !== VCPUOP_register_vcpu_info) return ret(r, -E.EINVAL);
  const info = GuestStruct.arg(v, r.get(2), 16);
  if (!info) return ret(r, -E.EFAULT);
  const mfn = info.u64(0);
  const offset = info.u32(8);
  const gaddr = BigInt.asUintN(64, (mfn << BigInt(PAGE_SHIFT)) + BigInt(offset));
  if (gaddr === 0xffff_ffff_ffff_ffffn || gaddr >> BigInt(PAGE_SHIFT) !== mfn) return ret(r, -E.EINVAL);
  if (d.vcpuInfo[vcpu]!.gfn !== null) return ret(r, -E.EBUSY);
  if (offset + VCPU_INFO.SIZE > 4096 || offset % 8 !== 0) return ret(r, -E.ENXIO);
  ret(r, d.registerVcpuInfo(vcpu, mfn, offset));
};
