import { PROBE_RAM_BASE, type ArgDecl, type CallSignature, type ResultDecl } from '@plugvisor/core';
import {
  DOMID_SELF,
  EVTCHNOP,
  EVTCHN_ARG_SIZE,
  MEMOP_EXTENT_SHIFT,
  PAGE_SHIFT,
  PAGE_SIZE,
  VCPU_INFO,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
  XENVER,
  VCPUOP_register_vcpu_info,
} from './abi.js';

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

/**
 * A guest handle (a pointer) to `size` bytes. Xen's copy_{from,to}_guest need no alignment.
 * `samples`: argument structs a probe writes at the pointer before the call (see below).
 */
export const guestHandle = (reg: number, size: number, name = 'arg', samples?: readonly string[]): ArgDecl => ({
  name,
  reg,
  width: 'u64',
  kind: 'pointer',
  size,
  ...(samples?.length ? { samples } : {}),
});

/*
 * Argument-struct samples: what a guest really passes, so the transcript records each sub-op's
 * successful path (zeroed or all-ones structs only reach the error paths). Every probe of a
 * stateful service runs on a fresh VM, so a sample is a fresh domain's first call. Each is
 * written at the valid pointer (the probe machine's RAM + 0x1000, gfn 0x40001) and is also run
 * with every value of the call's cmd. The structs are laid out as Xen's public headers declare
 * them for arm64 (xen_ulong_t and xen_pfn_t are 64 bits, arch-arm.h), little-endian, field by
 * field with `le(...)`; an OUT field is written as 0, as a fresh struct on a guest's stack.
 */

/** One little-endian field of `bytes` bytes, as lower-case hex. */
const field =
  (bytes: number) =>
  (v: number | bigint): string => {
    const x = BigInt(v);
    if (x < 0n || x >> BigInt(8 * bytes) !== 0n) throw new RangeError(`${x} does not fit a ${bytes}-byte field`);
    let hex = '';
    for (let i = 0; i < bytes; i++) hex += Number((x >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0');
    return hex;
  };
const u8 = field(1);
const u16 = field(2);
const u32 = field(4);
const u64 = field(8);
/** `n` bytes of padding (the header's `_pad` fields, or the compiler's). */
const pad = (n: number): string => '00'.repeat(n);
/** A struct: its fields in declaration order, each one from u8/u16/u32/u64/pad. */
const le = (...fields: string[]): string => fields.join('');

/**
 * Frames of the probe machine's RAM (16 pages from gfn 0x40000) for the pages a sample places,
 * apart from gfn 0x40001, where the argument struct itself is.
 */
const RAM_GFN = PROBE_RAM_BASE >> BigInt(PAGE_SHIFT);
const SHARED_INFO_GFN = RAM_GFN + 2n;
const VCPU_INFO_GFN = RAM_GFN + 3n;
const FIFO_CONTROL_GFN = RAM_GFN + 4n;

/**
 * struct xen_add_to_physmap (xen/include/public/memory.h; 24 bytes on arm64):
 * {domid_t domid, uint16_t size, unsigned int space, xen_ulong_t idx, xen_pfn_t gpfn}.
 */
const xenAddToPhysmap = (f: { domid: number; size: number; space: number; idx: bigint; gpfn: bigint }): string =>
  le(u16(f.domid), u16(f.size), u32(f.space), u64(f.idx), u64(f.gpfn));

/**
 * XENMEM_add_to_physmap samples: a guest mapping shared_info into its own RAM (Linux's
 * xen_guest_init: DOMID_SELF, XENMAPSPACE_shared_info, idx 0, the gfn of a page it owns);
 * and idx 1, which Xen refuses (shared_info is one frame: -EINVAL, xen/arch/arm/mm.c).
 */
const MEMORY_OP_SAMPLES: readonly string[] = Object.freeze([
  xenAddToPhysmap({ domid: DOMID_SELF, size: 0, space: XENMAPSPACE_shared_info, idx: 0n, gpfn: SHARED_INFO_GFN }),
  xenAddToPhysmap({ domid: DOMID_SELF, size: 0, space: XENMAPSPACE_shared_info, idx: 1n, gpfn: SHARED_INFO_GFN }),
]);

/**
 * xen_feature_info_t (xen/include/public/version.h): {unsigned int submap_idx, OUT uint32_t
 * submap}. XENVER_get_features sample: submap 0, the only one (XENFEAT_NR_SUBMAPS = 1,
 * features.h), as Linux's xen_setup_features asks. Its bytes are zeros, as the zero-filled
 * probe's: declared so the successful path does not depend on how core fills memory.
 */
const xenFeatureInfo = (submapIdx: number): string => le(u32(submapIdx), u32(0));
const XEN_VERSION_SAMPLES: readonly string[] = Object.freeze([xenFeatureInfo(0)]);

/**
 * struct vcpu_register_vcpu_info (xen/include/public/vcpu.h; 16 bytes):
 * {uint64_t mfn, uint32_t offset, uint32_t rsvd}. `mfn` is a gfn for an auto-translated guest.
 */
const vcpuRegisterVcpuInfo = (mfn: bigint, offset: number): string => le(u64(mfn), u32(offset), u32(0));
/**
 * VCPUOP_register_vcpu_info samples: a vcpu_info in a RAM page at a 64-byte aligned offset
 * (Linux's per-CPU xen_vcpu_info); and the same page with the 48-byte struct (arch-arm.h)
 * running 16 bytes off its end (-ENXIO, xen/common/domain.c map_guest_area).
 */
const VCPU_OP_SAMPLES: readonly string[] = Object.freeze([
  vcpuRegisterVcpuInfo(VCPU_INFO_GFN, 0x40),
  vcpuRegisterVcpuInfo(VCPU_INFO_GFN, PAGE_SIZE - VCPU_INFO.SIZE + 16),
]);

/**
 * Event-channel structs (xen/include/public/event_channel.h; the same on arm64 and x86;
 * domid_t is uint16_t, evtchn_port_t uint32_t). bind_virq {VIRQ_TIMER, vCPU 0} and bind_ipi
 * {vCPU 0} are all zeros, which the zero-filled probes already run; the samples below are the
 * structs zeros cannot express. Each also runs under every other EVTCHNOP, where its bytes mean
 * that op's fields (noted per sample), and the pointer holds at most four of them: with every
 * cmd each costs 16 probes, and a call has at most 96 (core's MAX_PROBES_PER_CALL).
 */
/** evtchn_alloc_unbound {domid_t dom, domid_t remote_dom, OUT evtchn_port_t port}. */
const evtchnAllocUnbound = (dom: number, remoteDom: number): string => le(u16(dom), u16(remoteDom), u32(0));
/**
 * evtchn_status {domid_t dom, uint16_t _pad0, evtchn_port_t port, OUT uint32_t status,
 * OUT uint32_t vcpu, OUT union u (8 bytes: unbound.dom, interdomain {dom, port}, pirq, virq)}.
 */
const evtchnStatus = (dom: number, port: number): string => le(u16(dom), pad(2), u32(port), u32(0), u32(0), pad(8));
/** evtchn_bind_vcpu {evtchn_port_t port, uint32_t vcpu}. */
const evtchnBindVcpu = (port: number, vcpu: number): string => le(u32(port), u32(vcpu));
/**
 * evtchn_init_control {uint64_t control_gfn, uint32_t offset, uint32_t vcpu, OUT uint8_t
 * link_bits, uint8_t _pad[7]} (FIFO, answered by svc-evtchn-fifo when the VM opted in).
 */
const evtchnInitControl = (controlGfn: bigint, offset: number, vcpu: number): string => le(u64(controlGfn), u32(offset), u32(vcpu), u8(0), pad(7));

const EVENT_CHANNEL_SAMPLES: readonly string[] = Object.freeze([
  // alloc_unbound in this domain for itself → port 1 (as reset: {dom DOMID_SELF} resets this
  // domain; as status: {DOMID_SELF, port 0} is port 0's status).
  evtchnAllocUnbound(DOMID_SELF, DOMID_SELF),
  // status of port 1 in this domain: a fresh domain's port 1 exists and is closed.
  evtchnStatus(DOMID_SELF, 1),
  // bind_vcpu port 1 to vCPU 1; port 1 is closed on a fresh domain (-EINVAL), as it is for
  // close and send {port 1}, while unmask {port 1} succeeds on any port that exists. Its
  // bytes are also bind_virq {VIRQ_DEBUG, vCPU 1} and bind_ipi {vCPU 1}: both bind port 1.
  evtchnBindVcpu(1, 1),
  // FIFO init_control: the control block at offset 0 of a RAM page, for vCPU 0 (link_bits
  // comes back 17); -ENOSYS where the VM has no FIFO.
  evtchnInitControl(FIFO_CONTROL_GFN, 0, 0),
]);

/** A C `int cmd`: Xen reads the low 32 bits of the register. */
const intCmd = (values: readonly (number | bigint)[]): ArgDecl => ({ name: 'cmd', reg: 0, width: 'u32', kind: 'enum', values });

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

/**
 * HYPERVISOR_memory_op(cmd, arg): struct xen_add_to_physmap is 24 bytes on arm64; its samples
 * (MEMORY_OP_SAMPLES) map shared_info.
 */
export const MEMORY_OP: CallSignature = Object.freeze({
  // `unsigned long cmd`: all 64 bits (the start extent lives above bit 6).
  args: [{ name: 'cmd', reg: 0, width: 'u64', kind: 'enum', values: XENMEM_CMDS }, guestHandle(1, 24, 'arg', MEMORY_OP_SAMPLES)] satisfies ArgDecl[],
  results: XEN_RC,
});

/**
 * struct xen_memory_reservation (xen/include/public/memory.h; 32 bytes on arm64): {XEN_GUEST_HANDLE
 * extent_start, xen_ulong_t nr_extents, unsigned int extent_order, unsigned int mem_flags,
 * domid_t domid} and 6 bytes of padding. The sample is a guest ballooning out one page, gfn
 * 0x40005 of the probe machine's RAM, with the one-entry extent array placed in the struct's own
 * tail padding (offset 26: Xen reads it with copy_from_guest_offset, which needs no alignment,
 * and never reads the padding as part of the struct), so the probe's one argument page holds both.
 */
const RESERVATION_SAMPLE_GFN = RAM_GFN + 5n;
const xenMemoryReservation = (f: { extentStart: bigint; nr: bigint; order: number; flags: number; domid: number; tail: bigint }): string =>
  le(u64(f.extentStart), u64(f.nr), u32(f.order), u32(f.flags), u16(f.domid), field(6)(f.tail));
const RESERVATION_SAMPLES: readonly string[] = Object.freeze([
  xenMemoryReservation({ extentStart: PROBE_RAM_BASE + 0x1000n + 26n, nr: 1n, order: 0, flags: 0, domid: DOMID_SELF, tail: RESERVATION_SAMPLE_GFN }),
]);

/**
 * XENMEM_increase_reservation / decrease_reservation / populate_physmap (memory_op sub-ops 0, 1,
 * 6): cmd keeps the start extent above MEMOP_EXTENT_SHIFT (the first value is a fresh call, the
 * others a continuation's and one past any reservation), arg the reservation struct.
 */
export const reservationSubOp = (op: number): CallSignature =>
  Object.freeze({
    args: [
      { name: 'cmd', reg: 0, width: 'u64', kind: 'enum', values: [op, op | (1 << MEMOP_EXTENT_SHIFT), BigInt(op) | (1n << 26n << BigInt(MEMOP_EXTENT_SHIFT))] },
      guestHandle(1, 32, 'reservation', RESERVATION_SAMPLES),
    ] satisfies ArgDecl[],
    results: XEN_RC,
  });

/** XENMEM_current_reservation / maximum_reservation: struct xen_memory_domain {domid_t domid}. */
export const reservationQuery = (op: number): CallSignature =>
  Object.freeze({
    args: [
      { name: 'cmd', reg: 0, width: 'u64', kind: 'enum', values: [op, op | (1 << MEMOP_EXTENT_SHIFT)] },
      guestHandle(1, 2, 'domain', [u16(DOMID_SELF), u16(0), u16(5)]),
    ] satisfies ArgDecl[],
    results: XEN_RC,
  });

/**
 * HYPERVISOR_xen_version(cmd, arg): XENVER_* (xen/include/public/version.h). get_features
 * first: it copies its struct in and out, so the pointer probes see both directions. The
 * largest buffer is xen_capabilities_info_t / xen_commandline_t: 1024 bytes. Sample:
 * get_features for submap 0.
 */
export const XEN_VERSION_OP: CallSignature = Object.freeze({
  args: [
    intCmd([XENVER.get_features, ...[...Object.values(XENVER), ...Object.values(XENVER_4_20)].filter((c) => c !== XENVER.get_features)]),
    guestHandle(1, 1024, 'arg', XEN_VERSION_SAMPLES),
  ],
  results: XEN_RC,
});

/**
 * HYPERVISOR_vcpu_op(cmd, vcpuid, arg): VCPUOP_* (xen/include/public/vcpu.h, 0..15),
 * register_vcpu_info first; struct vcpu_register_vcpu_info is 16 bytes (the largest argument
 * Arm accepts). Xen checks vcpuid against the domain's own vCPU count, not a constant
 * (do_arm_vcpu_op, xen/arch/arm/domain.c: domain_vcpu() is NULL for vcpuid >= d->max_vcpus,
 * -ENOENT), so vcpuid is an enum of the probe machine's vCPUs, 0 and 1; the probes add the
 * first one past them (2) and 0xffffffff. Samples (VCPU_OP_SAMPLES): register_vcpu_info in RAM,
 * and one running off its page.
 */
export const VCPU_OP: CallSignature = Object.freeze({
  args: [
    intCmd([VCPUOP_register_vcpu_info, ...Array.from({ length: 16 }, (_, i) => i).filter((c) => c !== VCPUOP_register_vcpu_info)]),
    // `unsigned int vcpuid`
    { name: 'vcpuid', reg: 1, width: 'u32', kind: 'enum', values: [0, 1] },
    guestHandle(2, 16, 'arg', VCPU_OP_SAMPLES),
  ] satisfies ArgDecl[],
  results: XEN_RC,
});

/**
 * HYPERVISOR_event_channel_op(cmd, arg): every EVTCHNOP_* (xen/include/public/event_channel.h),
 * so the probes reach each sub-op through the router's switch on cmd (those nobody in the build
 * exposes answer -ENOSYS from event_channel_op's own handler). bind_virq first: on zeroed memory it binds VIRQ_TIMER and
 * copies the port out. The pointer covers the largest struct, evtchn_status and
 * evtchn_init_control (24 bytes). Samples (EVENT_CHANNEL_SAMPLES): alloc_unbound, status,
 * bind_vcpu on port 1 and FIFO init_control, each also tried under every other EVTCHNOP.
 */
export const EVENT_CHANNEL_OP: CallSignature = Object.freeze({
  args: [
    intCmd([EVTCHNOP.bind_virq, ...Object.values(EVTCHNOP).filter((c) => c !== EVTCHNOP.bind_virq)]),
    guestHandle(1, Math.max(...Object.values(EVTCHN_ARG_SIZE)), 'arg', EVENT_CHANNEL_SAMPLES),
  ],
  results: XEN_RC,
});

/**
 * An event_channel_op sub-op as a declared call: its own argument, the address of its struct in
 * x1 (`size` bytes, event_channel.h), and the result in x0. The selector (cmd in x0) is implied
 * by the call's `subOf` (evtchnSubOf): the router matched it, and the sub-op's probes set it
 * (`x0=0x<cmd>` in each label). Structs beyond zeros and ones are sampled through
 * HYPERVISOR_event_channel_op, which runs every sample under every cmd.
 */
export const evtchnSubOp = (size: number): CallSignature => Object.freeze({ args: [guestHandle(1, size)], results: XEN_RC });
