/**
 * Xen's guest ABI numbers, exactly as xen/include/public/*.h defines them (xen.h,
 * event_channel.h, memory.h, version.h, vcpu.h, arch-arm.h). Nothing here is Plugvisor's
 * invention except the sub-op declarations at the bottom (how core's router reaches a
 * multiplexed hypercall's commands).
 */

/** Hypercall numbers (xen.h), in x16 on Arm. */
export const HYPERVISOR = Object.freeze({
  memory_op: 12,
  xen_version: 17,
  vcpu_op: 24,
  event_channel_op: 32,
});

/** EVTCHNOP_* (event_channel.h). reset_cont (14) is `__XEN__`-only but reachable by guests. */
export const EVTCHNOP = Object.freeze({
  bind_interdomain: 0,
  bind_virq: 1,
  bind_pirq: 2,
  close: 3,
  send: 4,
  status: 5,
  alloc_unbound: 6,
  bind_ipi: 7,
  bind_vcpu: 8,
  unmask: 9,
  reset: 10,
  init_control: 11,
  expand_array: 12,
  set_priority: 13,
  reset_cont: 14,
});

/** Xen's errno values (public/errno.h); results are their negatives in x0. */
export const XEN_ERRNO = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  ENXIO: 6,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  EDOM: 33,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
});
export type XenErrnoName = keyof typeof XEN_ERRNO;

export const XENVER = Object.freeze({
  version: 0,
  extraversion: 1,
  compile_info: 2,
  capabilities: 3,
  changeset: 4,
  platform_parameters: 5,
  get_features: 6,
  pagesize: 7,
  guest_handle: 8,
  commandline: 9,
  build_id: 10,
});

/** XENFEAT_* bits (features.h) this personality advertises in submap 0. */
export const XENFEAT = Object.freeze({
  writable_page_tables: 0,
  auto_translated_physmap: 2,
  ARM_SMCCC_supported: 14,
  not_direct_mapped: 16,
});

export const XENMEM_add_to_physmap = 7;
/** The memory reservation sub-ops (memory.h) and the page-count queries. */
export const XENMEM = Object.freeze({
  increase_reservation: 0,
  decrease_reservation: 1,
  current_reservation: 3,
  maximum_reservation: 4,
  populate_physmap: 6,
} as const);
/** xen_memory_reservation.mem_flags (memory.h): the bits Xen's checks read. */
export const XENMEMF = Object.freeze({
  populate_on_demand: 1 << 16,
  exact_node_request: 1 << 17,
  vnode: 1 << 18,
});
/** The largest extent_order a domU's reservation ops accept (Arm: CONFIG_DOMU_MAX_ORDER, xen/arch/arm/include/asm/config.h). */
export const DOMU_MAX_ORDER = 9;
export const XENMAPSPACE_shared_info = 0;
export const XENMAPSPACE_gmfn_foreign = 4;
/** Device MMIO (xen/include/public/memory.h): the hardware domain only (xen/common/memory.c xatp_permission_check). */
export const XENMAPSPACE_dev_mmio = 5;
/** memory_op: cmd[5:0] is the sub-op, cmd[:6] the start extent (MEMOP_EXTENT_SHIFT). */
export const MEMOP_EXTENT_SHIFT = 6;
export const MEMOP_CMD_MASK = 63;

export const VCPUOP_register_vcpu_info = 10;

export const DOMID_SELF = 0x7ff0;
/** The VMM acts as domain 0, the backend domain that owns global VIRQs (as QEMU's DOMID_QEMU). */
export const DOMID_VMM = 0;
/** The guest's own domain id (a domU). */
export const DOMID_GUEST = 1;

/** EVTCHNSTAT_* returned by EVTCHNOP_status. */
export const EVTCHNSTAT = Object.freeze({ closed: 0, unbound: 1, interdomain: 2, pirq: 3, virq: 4, ipi: 5 });

export const NR_VIRQS = 24;
export const VIRQ = Object.freeze({ TIMER: 0, DEBUG: 1, CONSOLE: 2, DOM_EXC: 3, XENOPROF: 7, ARGO: 11, XENPMU: 13 });
export type VirqType = 'vcpu' | 'domain' | 'global';
/** get_virq_type(): per-vCPU, per-domain, else global (Arm's VIRQ_ARCH_* are global). */
export function virqType(virq: number): VirqType {
  if (virq === VIRQ.TIMER || virq === VIRQ.DEBUG || virq === VIRQ.XENOPROF || virq === VIRQ.XENPMU) return 'vcpu';
  if (virq === VIRQ.ARGO) return 'domain';
  return 'global';
}

/** arch-arm.h: the per-vCPU PPI carrying event-channel upcalls. */
export const GUEST_EVTCHN_PPI = 31;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/**
 * struct shared_info / vcpu_info on arm64 (arch-arm.h; offsets from compiling Xen's headers).
 * XEN_LEGACY_MAX_VCPUS is 1 on Arm: only vCPU 0 has a slot in shared_info.
 */
export const SHINFO = Object.freeze({
  VCPU_INFO: 0,
  EVTCHN_PENDING: 48,
  EVTCHN_MASK: 560,
  WC_VERSION: 1072,
  WC_SEC: 1076,
  WC_NSEC: 1080,
  WC_SEC_HI: 1084,
  SIZE: 1088,
});
export const VCPU_INFO = Object.freeze({
  UPCALL_PENDING: 0,
  PENDING_SEL: 8,
  TIME: 16,
  SIZE: 48,
});

/** 2-level: 64-bit xen_ulong_t words, so 64 * 64 ports. */
export const BITS_PER_EVTCHN_WORD = 64;
export const EVTCHN_2L_NR_CHANNELS = BITS_PER_EVTCHN_WORD * BITS_PER_EVTCHN_WORD;
/** FIFO's port space, the largest of any ABI (MAX_NR_EVTCHNS). */
export const MAX_NR_EVTCHNS = 1 << 17;
/**
 * Xen allocates struct evtchn in page-sized buckets; a port is "valid" (guest ops answer for
 * it rather than -EINVAL) once its bucket exists. sizeof(struct evtchn) rounds up to 64 bytes
 * on arm64, so a bucket holds 4096 / 64 = 64 ports (EVTCHNS_PER_BUCKET).
 */
export const EVTCHNS_PER_BUCKET = 64;

/** Argument struct sizes (event_channel.h; identical on arm64, x86_64 and x86_32). */
export const EVTCHN_ARG_SIZE = Object.freeze({
  bind_interdomain: 12,
  bind_virq: 12,
  bind_pirq: 12,
  close: 4,
  send: 4,
  status: 24,
  alloc_unbound: 8,
  bind_ipi: 8,
  bind_vcpu: 8,
  unmask: 4,
  reset: 2,
  init_control: 24,
  expand_array: 8,
  set_priority: 8,
});

import type { SubOpDecl } from '@plugvisor/core';

/** The declared call every EVTCHNOP_* is a sub-op of. */
export const EVENT_CHANNEL_OP_CALL = 'HYPERVISOR_event_channel_op';

/**
 * Where an EVTCHNOP_* sits, as core's CallDecl.subOf: event_channel_op(int cmd, void *arg) with
 * `cmd` in x0. A sub-op declares `id: HYPERVISOR.event_channel_op, subOf: evtchnSubOf(cmd)`;
 * the router's second-level switch on w0 reaches it (no register rewrite, no re-entry), so each
 * sub-op is its own declared call, gated by its own feature (another package's, for FIFO) and
 * listed in the ABI manifest as `xen:0x20/0x<cmd>`. A cmd nobody exposes to the VM reaches
 * event_channel_op's own handler: -ENOSYS, as Xen's `default:` (and pre-4.4 Xen for the FIFO ops).
 */
export const evtchnSubOf = (cmd: number): SubOpDecl =>
  Object.freeze({ call: EVENT_CHANNEL_OP_CALL, selector: 0, value: cmd });

/**
 * @deprecated Sub-ops no longer have function ids: this is the x16 value the old forwarder used
 * (`0x8000_0000 | hypercall << 16 | cmd`). Nothing routes it; a guest putting it in x16 gets
 * -ENOSYS, as Xen gives for any hypercall number past its table.
 */
export const XEN_SUBOP_BASE = 0x8000_0000;
/** @deprecated See XEN_SUBOP_BASE. */
export const xenSubOpId = (hypercall: number, cmd: number): number => (XEN_SUBOP_BASE | (hypercall << 16) | cmd) >>> 0;

/**
 * The opt-in feature under which svc-xen answers as Xen does where svc-xen 1.0 differed (the
 * shared_info wallclock, add_to_physmap(dev_mmio)'s errno). README, "Deviations and limits".
 */
export const XEN_FIDELITY = 'xen-fidelity';
