import type { CallHandler } from '@plugvisor/core';
import { MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT, XEN_FIDELITY, XENMAPSPACE_dev_mmio, XENMAPSPACE_gmfn_foreign, XENMAPSPACE_shared_info, XENMEM_add_to_physmap, XEN_ERRNO as E } from '../abi.js';
import type { XenDomain } from '../domain.js';
import { GuestStruct } from '../guest-args.js';
import { highBitsSet, ret } from '../subop.js';

/**
 * HYPERVISOR_memory_op(cmd, arg): only XENMEM_add_to_physmap for XENMAPSPACE_shared_info, the
 * one a guest needs to see shared_info (xen/common/memory.c, xen/arch/arm/mm.c). The reservation
 * sub-ops are declared sub-ops of their own (ops/reservation.ts) that the router sends elsewhere
 * when a VM has them; this handler sees whatever cmd reaches memory_op's `default:`, with all of
 * x0. Every other sub-op, and every other map space, is -ENOSYS here (Xen has them; this
 * personality does not).
 *
 * struct xen_add_to_physmap (arm64, 24 bytes): u16 domid @0, u16 size @2, u32 space @4,
 * xen_ulong_t idx @8, xen_pfn_t gpfn @16.
 */
export const memoryOp: CallHandler<XenDomain> = (v, b) => {
  const r = v.regs;
  if (highBitsSet(r)) return ret(r, -E.ENOSYS);
  const d = b.state;
  d.sync();
  const cmd = r.get(0);
  const op = Number(cmd & BigInt(MEMOP_CMD_MASK));
  const startExtent = cmd >> BigInt(MEMOP_EXTENT_SHIFT);
  if (op !== XENMEM_add_to_physmap) return ret(r, -E.ENOSYS);
  if (startExtent > 0xffffn) return ret(r, -E.EDOM); // does not fit xatp.size
  const xatp = GuestStruct.arg(v, r.get(1), 24);
  if (!xatp) return ret(r, -E.EFAULT);
  const space = xatp.u32(4);
  if (space === XENMAPSPACE_gmfn_foreign) return ret(r, -E.ENOSYS); // only via the batch op
  const dom = d.lookupDomain(xatp.u16(0));
  if (dom === undefined) return ret(r, -E.ESRCH);
  // xatp_permission_check (xen/common/memory.c): dev_mmio is for the hardware domain mapping
  // into itself, so a domU gets -EACCES before XSM is asked. svc-xen 1.0 answered -ENOSYS (the
  // space check below), and keeps that for VMs without the opt-in `xen-fidelity`.
  if (space === XENMAPSPACE_dev_mmio && b.vm.abi.isEnabled(XEN_FIDELITY)) return ret(r, -E.EACCES);
  if (dom === 'vmm') return ret(r, -E.EPERM);
  if (space !== XENMAPSPACE_shared_info) return ret(r, -E.ENOSYS);
  if (xatp.u64(8) !== 0n) return ret(r, -E.EINVAL); // shared_info has one frame, idx 0
  ret(r, d.mapSharedInfo(xatp.u64(16)));
};
