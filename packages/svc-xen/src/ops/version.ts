import type { CallHandler } from '@plugvisor/core';
import { XENFEAT, XENVER, XEN_ERRNO as E } from '../abi.js';
import type { XenDomain } from '../domain.js';
import { GuestStruct, copyToGuestArg } from '../guest-args.js';
import { highBitsSet, ret } from '../subop.js';

/**
 * HYPERVISOR_xen_version(cmd, arg) (xen/common/kernel.c do_xen_version), as a domU sees it
 * under Xen's default XSM policy. Plugvisor reports itself as Xen 4.19 with the extra version
 * "-plugvisor", so a guest's version probe and its feature probe work as on Xen.
 */
export const XEN_VERSION = Object.freeze({ major: 4, minor: 19, extra: '-plugvisor' });

/** XENFEAT submap 0 for an Arm domU, minus what this personality does not implement (README). */
export const XEN_FEATURES_SUBMAP0 =
  (1 << XENFEAT.writable_page_tables) |
  (1 << XENFEAT.auto_translated_physmap) |
  (1 << XENFEAT.ARM_SMCCC_supported) |
  (1 << XENFEAT.not_direct_mapped);

const enc = new TextEncoder();
function cstring(s: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(enc.encode(s).subarray(0, size - 1));
  return out;
}
const EXTRAVERSION = cstring(XEN_VERSION.extra, 16);
const CAPABILITIES = cstring('xen-3.0-aarch64 xen-3.0-armv7l ', 1024);
const CHANGESET = cstring('plugvisor', 64);
// compile_info: compiler[64], compile_by[16], compile_domain[32], compile_date[32]
const COMPILE_INFO = (() => {
  const b = new Uint8Array(144);
  b.set(cstring('plugvisor', 64), 0);
  b.set(cstring('plugvisor', 16), 64);
  b.set(cstring('', 32), 80);
  b.set(cstring('', 32), 112);
  return b;
})();
const DENIED = enc.encode('<denied>\0');

export const xenVersion: CallHandler<XenDomain> = (v) => {
  const r = v.regs;
  if (highBitsSet(r)) return ret(r, -E.ENOSYS);
  const cmd = r.lo(0) | 0;
  const arg = r.get(1);
  const out = (bytes: Uint8Array) => ret(r, copyToGuestArg(v, arg, bytes) ? 0 : -E.EFAULT);
  switch (cmd) {
    case XENVER.version:
      return ret(r, (XEN_VERSION.major << 16) | XEN_VERSION.minor);
    case XENVER.extraversion:
      return out(EXTRAVERSION);
    case XENVER.compile_info:
      return out(COMPILE_INFO);
    case XENVER.capabilities:
      return out(CAPABILITIES);
    case XENVER.changeset:
      return out(CHANGESET);
    case XENVER.platform_parameters:
      return out(new Uint8Array(8)); // virt_start = 0 (not a PV guest)
    case XENVER.get_features: {
      // {u32 submap_idx (IN), u32 submap (OUT)}
      const s = GuestStruct.arg(v, arg, 8);
      if (!s) return ret(r, -E.EFAULT);
      if (s.u32(0) !== 0) return ret(r, -E.EINVAL);
      s.setU32(4, XEN_FEATURES_SUBMAP0).writeBack();
      return ret(r, 0);
    }
    case XENVER.pagesize:
      return ret(r, arg !== 0n ? -E.EINVAL : 4096);
    case XENVER.guest_handle:
      return out(new Uint8Array(16)); // xen_domain_handle_t: the VM has no UUID to report
    case XENVER.commandline:
      return out(DENIED); // not for an unprivileged domain: Xen copies "<denied>"
    case XENVER.build_id:
      return ret(r, -E.EPERM);
    default:
      return ret(r, -E.ENOSYS);
  }
};
