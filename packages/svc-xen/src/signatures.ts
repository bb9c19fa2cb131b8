import type { ArgDecl, CallSignature, ResultDecl } from '@plugvisor/core';
import { EVTCHNOP, EVTCHN_ARG_SIZE, MEMOP_EXTENT_SHIFT, XENMEM_add_to_physmap, XENVER, VCPUOP_register_vcpu_info } from './abi.js';

/**
 * What each svc-xen call reads and writes, as core's call signatures. On Arm a hypercall takes
 * its arguments in x0..x4 and returns in x0 only (xen/arch/arm/traps.c, HYPERCALL_ARG1..5 and
 * HYPERCALL_RESULT_REG); the widths are those of the C prototypes, which is what the handlers
 * read (`regs.lo` for an `int`/`unsigned int`, `regs.get` for an `unsigned long` or a guest
 * handle):
 *
 *   long do_memory_op(unsigned long cmd, XEN_GUEST_HANDLE_PARAM(void) arg)       xen/common/memory.c
 *   long do_xen_version(int cmd, XEN_GUEST_HANDLE_PARAM(void) arg)              xen/common/kernel.c
 *   long do_vcpu_op(int cmd, unsigned int vcpuid, XEN_GUEST_HANDLE_PARAM(void) arg)
 *                                                                               xen/arch/arm/domain.c
 *   long do_event_channel_op(int cmd, XEN_GUEST_HANDLE_PARAM(void) arg)         xen/common/event_channel.c
 *
 * The multiplexed hypercalls' `cmd` is an enum of every value Xen's public header defines, the
 * one listed first being the sub-op the pointer probes run against; their argument pointer is
 * sized for the largest struct any implemented sub-op copies.
 */

/** x0: the hypercall's return value (0, a positive value, or a negative Xen errno). */
export const XEN_RC: readonly ResultDecl[] = Object.freeze([{ reg: 0, name: 'rc' }]);

/** A guest handle (a pointer) to `size` bytes. Xen's copy_{from,to}_guest need no alignment. */
export const guestHandle = (reg: number, size: number, name = 'arg'): ArgDecl => ({ name, reg, width: 'u64', kind: 'pointer', size });

/** A C `int cmd`: Xen reads the low 32 bits of the register. */
const intCmd = (values: readonly (number | bigint)[]): ArgDecl => ({ name: 'cmd', reg: 0, width: 'u32', kind: 'enum', values });

/** xen/include/public/arch-arm.h: the most vCPUs an Arm guest can have. */
const GUEST_MAX_VCPUS = 128;

/** XENVER_* added in Xen 4.20 (version.h): a 4.19 personality answers them -ENOSYS. */
const XENVER_4_20 = Object.freeze({ extraversion2: 11, capabilities2: 12, changeset2: 13, commandline2: 14 });

/**
 * XENMEM_* (xen/include/public/memory.h; 8, XENMEM_translate_gpfn_list, was withdrawn).
 * add_to_physmap first; then two encodings of its continuation field: cmd[63:6] is the start
 * extent (MEMOP_EXTENT_SHIFT), ignored for shared_info but -EDOM when it does not fit
 * xen_add_to_physmap.size (u16).
 */
const XENMEM_CMDS: readonly (number | bigint)[] = Object.freeze([
  XENMEM_add_to_physmap,
  XENMEM_add_to_physmap | (1 << MEMOP_EXTENT_SHIFT),
  XENMEM_add_to_physmap | (0x1_0000 << MEMOP_EXTENT_SHIFT),
  0, // increase_reservation
  1, // decrease_reservation
  2, // maximum_ram_page
  3, // current_reservation
  4, // maximum_reservation
  5, // machphys_mfn_list
  6, // populate_physmap
  9, // memory_map
  10, // machine_memory_map
  11, // exchange
  12, // machphys_mapping
  13, // set_memory_map
  14, // maximum_gpfn
  15, // remove_from_physmap
  16, // set_pod_target
  17, // get_pod_target
  18, // get_sharing_freed_pages
  19, // get_sharing_shared_pages
  20, // paging_op
  21, // access_op
  22, // sharing_op
  23, // add_to_physmap_batch
  24, // claim_pages
  25, // machphys_compat_mfn_list
  26, // get_vnumainfo
  27, // reserved_device_memory_map
  28, // acquire_resource
]);

/** HYPERVISOR_memory_op(cmd, arg): struct xen_add_to_physmap is 24 bytes on arm64. */
export const MEMORY_OP: CallSignature = Object.freeze({
  // `unsigned long cmd`: all 64 bits (the start extent lives above bit 6).
  args: [{ name: 'cmd', reg: 0, width: 'u64', kind: 'enum', values: XENMEM_CMDS }, guestHandle(1, 24)] satisfies ArgDecl[],
  results: XEN_RC,
});

/**
 * HYPERVISOR_xen_version(cmd, arg): XENVER_* (xen/include/public/version.h). get_features
 * first: it copies its struct in and out, so the pointer probes see both directions. The
 * largest buffer is xen_capabilities_info_t / xen_commandline_t: 1024 bytes.
 */
export const XEN_VERSION_OP: CallSignature = Object.freeze({
  args: [
    intCmd([XENVER.get_features, ...[...Object.values(XENVER), ...Object.values(XENVER_4_20)].filter((c) => c !== XENVER.get_features)]),
    guestHandle(1, 1024),
  ],
  results: XEN_RC,
});

/**
 * HYPERVISOR_vcpu_op(cmd, vcpuid, arg): VCPUOP_* (xen/include/public/vcpu.h, 0..15),
 * register_vcpu_info first; vcpuid up to GUEST_MAX_VCPUS - 1 (xen/include/public/arch-arm.h:
 * 128); struct vcpu_register_vcpu_info is 16 bytes (the largest argument Arm accepts).
 */
export const VCPU_OP: CallSignature = Object.freeze({
  args: [
    intCmd([VCPUOP_register_vcpu_info, ...Array.from({ length: 16 }, (_, i) => i).filter((c) => c !== VCPUOP_register_vcpu_info)]),
    // `unsigned int vcpuid`
    { name: 'vcpuid', reg: 1, width: 'u32', kind: 'range', min: 0, max: GUEST_MAX_VCPUS - 1 },
    guestHandle(2, 16),
  ] satisfies ArgDecl[],
  results: XEN_RC,
});

/**
 * HYPERVISOR_event_channel_op(cmd, arg): every EVTCHNOP_* (xen/include/public/event_channel.h),
 * so the probes reach each sub-op through the forwarder (those nobody in the build exposes
 * answer -ENOSYS from the router). bind_virq first: on zeroed memory it binds VIRQ_TIMER and
 * copies the port out. The pointer covers the largest struct, evtchn_status and
 * evtchn_init_control (24 bytes).
 */
export const EVENT_CHANNEL_OP: CallSignature = Object.freeze({
  args: [
    intCmd([EVTCHNOP.bind_virq, ...Object.values(EVTCHNOP).filter((c) => c !== EVTCHNOP.bind_virq)]),
    guestHandle(1, Math.max(...Object.values(EVTCHN_ARG_SIZE))),
  ],
  results: XEN_RC,
});

/**
 * An event_channel_op sub-op as a declared call (reached through the forwarder, which put cmd
 * in x0 and reads it; the sub-op reads only its argument struct's address in x1). `size` is the
 * struct's (event_channel.h).
 */
export const evtchnSubOp = (size: number): CallSignature => Object.freeze({ args: [guestHandle(1, size)], results: XEN_RC });
