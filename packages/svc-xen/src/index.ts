import { defineService, packageVersion, type CallDecl, type CallHandler, type ServicePlugin, type Vm } from '@plugvisor/core';
import { EVTCHNOP, EVTCHN_ARG_SIZE as SIZE, HYPERVISOR, MEMOP_EXTENT_SHIFT, XENMEM, XEN_ERRNO, XEN_FIDELITY, evtchnSubOf } from './abi.js';
import { XenDomain } from './domain.js';
import { xenEvtchnHooks } from './hooks.js';
import * as evtchn from './ops/evtchn.js';
import { memoryOp } from './ops/memory.js';
import { currentReservation, decreaseReservation, increaseReservation, maximumReservation, populatePhysmap } from './ops/reservation.js';
import { vcpuOp } from './ops/vcpu.js';
import { xenVersion } from './ops/version.js';
import { STATE_ID, STATE_VERSION, loadDomain, saveDomain } from './state.js';
import { EVENT_CHANNEL_OP, MEMORY_OP, VCPU_OP, XEN_VERSION_OP, evtchnSubOp, reservationQuery, reservationSubOp } from './signatures.js';
import { ret } from './subop.js';

/**
 * The minimal Xen-on-Arm personality a guest needs for event channels (README): xen_version,
 * memory_op(XENMEM_add_to_physmap, shared_info), vcpu_op(register_vcpu_info), upcalls on
 * PPI 31, and the 2-level event-channel ABI. Other event-channel ABIs plug in through
 * `xenEvtchnHooks(hv)` and declare their sub-ops as calls with `subOf: evtchnSubOf(cmd)`.
 */

export * from './abi.js';
export { XenDomain } from './domain.js';
export { EXTENT_PAGES_PER_LEG, RESERVATION_SIZE } from './ops/reservation.js';
export { XenError } from './errors.js';
export { xenEvtchnHooks, type XenEvtchnHooks } from './hooks.js';
export { ECS, PortTable } from './ports.js';
export { mapGuestPage, hostPage, testAndSetBit, testAndClearBit, testBit, setBit, clearBit, type PageView } from './guest-page.js';
export { GuestStruct, copyToGuest, copyToGuestArg } from './guest-args.js';
export { xenDomainOf, ret as xenReturn } from './subop.js';
export { XEN_VERSION, XEN_FEATURES_SUBMAP0 } from './ops/version.js';
export { EVENT_CHANNEL_OP, MEMORY_OP, VCPU_OP, XEN_RC, XEN_VERSION_OP, evtchnSubOp, guestHandle } from './signatures.js';
export {
  raiseEvent,
  raiseVirq,
  sendAsGuest,
  setMaxEvtchnPort,
  vmmAllocUnbound,
  vmmBindInterdomain,
  vmmClose,
  vmmPeer,
  vmmSend,
  xenDomain,
} from './vmm.js';

export const SVC_XEN = '@plugvisor/svc-xen';

/**
 * The 2-level sub-ops svc-xen answers, as declared calls: name, EVTCHNOP_*, handler, and the
 * size of the argument struct it copies (xen/include/public/event_channel.h; reset_cont takes
 * struct evtchn_reset, as reset does).
 */
const SUBOPS: ReadonlyArray<[string, number, CallHandler<XenDomain>, number]> = [
  ['EVTCHNOP_bind_interdomain', EVTCHNOP.bind_interdomain, evtchn.bindInterdomain, SIZE.bind_interdomain],
  ['EVTCHNOP_bind_virq', EVTCHNOP.bind_virq, evtchn.bindVirq, SIZE.bind_virq],
  ['EVTCHNOP_bind_pirq', EVTCHNOP.bind_pirq, evtchn.bindPirq, SIZE.bind_pirq],
  ['EVTCHNOP_close', EVTCHNOP.close, evtchn.close, SIZE.close],
  ['EVTCHNOP_send', EVTCHNOP.send, evtchn.sendOp, SIZE.send],
  ['EVTCHNOP_status', EVTCHNOP.status, evtchn.status, SIZE.status],
  ['EVTCHNOP_alloc_unbound', EVTCHNOP.alloc_unbound, evtchn.allocUnbound, SIZE.alloc_unbound],
  ['EVTCHNOP_bind_ipi', EVTCHNOP.bind_ipi, evtchn.bindIpi, SIZE.bind_ipi],
  ['EVTCHNOP_bind_vcpu', EVTCHNOP.bind_vcpu, evtchn.bindVcpu, SIZE.bind_vcpu],
  ['EVTCHNOP_unmask', EVTCHNOP.unmask, evtchn.unmask, SIZE.unmask],
  ['EVTCHNOP_reset', EVTCHNOP.reset, evtchn.resetOp, SIZE.reset],
  ['EVTCHNOP_reset_cont', EVTCHNOP.reset_cont, evtchn.resetCont, SIZE.reset],
];

/**
 * HYPERVISOR_event_channel_op(int cmd, void *arg). The router sends each cmd a VM has to its
 * sub-op's handler (the EVTCHNOP_* calls below, and other packages' under `evtchnSubOf`); this
 * handler is the switch's `default:` — a cmd nobody in the build exposes to this VM — and
 * answers -ENOSYS, as do_event_channel_op does.
 */
const eventChannelOp: CallHandler<XenDomain> = (v) => ret(v.regs, -XEN_ERRNO.ENOSYS);

export const MEMORY_OP_CALL = 'HYPERVISOR_memory_op';

/**
 * The memory reservation sub-ops (ops/reservation.ts), as declared sub-ops of memory_op under
 * the opt-in feature `memory-reservation`: name, XENMEM_*, handler, signature, and whether it is
 * preemptible (its start extent lives in cmd above MEMOP_EXTENT_SHIFT).
 */
const RESERVATION_SUBOPS: ReadonlyArray<[string, number, CallHandler<XenDomain>, boolean]> = [
  ['XENMEM_increase_reservation', XENMEM.increase_reservation, increaseReservation, true],
  ['XENMEM_decrease_reservation', XENMEM.decrease_reservation, decreaseReservation, true],
  ['XENMEM_current_reservation', XENMEM.current_reservation, currentReservation, false],
  ['XENMEM_maximum_reservation', XENMEM.maximum_reservation, maximumReservation, false],
  ['XENMEM_populate_physmap', XENMEM.populate_physmap, populatePhysmap, true],
];

/**
 * The continuation of each preemptible reservation op, as xen/common/memory.c do_memory_op
 * creates it: `op | (nr_done << MEMOP_EXTENT_SHIFT)` in cmd, arg unchanged. Every other
 * memory_op sub-op this build declares answers a non-zero start extent with -EINVAL (do_memory_op:
 * `if ( unlikely(start_extent) ) return -EINVAL;`); add_to_physmap is memory_op's own handler and
 * reads the bits itself (XENMAPSPACE_gmfn_range's continuation), so it keeps its behaviour.
 */
const RESERVATION_CONTINUATIONS = RESERVATION_SUBOPS.filter(([, , , preempt]) => preempt).map(([call]) => ({
  call,
  description: 'the next extent to do, in cmd above XENMEM_* (MEMOP_EXTENT_SHIFT, xen/include/public/memory.h)',
  encoding: [{ name: 'start extent', reg: 0, shift: MEMOP_EXTENT_SHIFT, width: 64 - MEMOP_EXTENT_SHIFT }],
  otherSubOps: { reg: 0, value: -XEN_ERRNO.EINVAL },
}));

export function createXenService(): ServicePlugin<XenDomain> {
  const calls: CallDecl[] = [
    { name: 'HYPERVISOR_memory_op', conduit: 'xen', id: HYPERVISOR.memory_op, feature: 'xen', signature: MEMORY_OP },
    { name: 'HYPERVISOR_xen_version', conduit: 'xen', id: HYPERVISOR.xen_version, feature: 'xen', signature: XEN_VERSION_OP },
    { name: 'HYPERVISOR_vcpu_op', conduit: 'xen', id: HYPERVISOR.vcpu_op, feature: 'xen', signature: VCPU_OP },
    { name: 'HYPERVISOR_event_channel_op', conduit: 'xen', id: HYPERVISOR.event_channel_op, feature: 'evtchn-2l', signature: EVENT_CHANNEL_OP },
    ...SUBOPS.map(([name, cmd, , size]) => ({
      name,
      conduit: 'xen',
      id: HYPERVISOR.event_channel_op,
      subOf: evtchnSubOf(cmd),
      feature: 'evtchn-2l',
      signature: evtchnSubOp(size),
    })),
    ...RESERVATION_SUBOPS.map(([name, op, , preempt]) => ({
      name,
      conduit: 'xen',
      id: HYPERVISOR.memory_op,
      subOf: { call: MEMORY_OP_CALL, selector: 0, value: op },
      feature: 'memory-reservation',
      signature: preempt ? reservationSubOp(op) : reservationQuery(op),
    })),
  ];
  const handlers: Record<string, CallHandler<XenDomain>> = {
    HYPERVISOR_memory_op: memoryOp,
    HYPERVISOR_xen_version: xenVersion,
    HYPERVISOR_vcpu_op: vcpuOp,
    HYPERVISOR_event_channel_op: eventChannelOp,
  };
  for (const [name, , h] of SUBOPS) handlers[name] = h;
  for (const [name, , h] of RESERVATION_SUBOPS) handlers[name] = h;

  const hooksOf = (vm: Vm) => xenEvtchnHooks(vm.hv);
  return defineService<XenDomain>({
    name: SVC_XEN,
    version: packageVersion(import.meta.url),
    description: 'Minimal Xen-on-Arm personality with 2-level event channels',
    surface: {
      features: [
        {
          name: 'xen',
          default: 'legacy-opt-out',
          description: 'Xen on Arm hypercalls (HVC #0xEA1): xen_version, memory_op add_to_physmap(shared_info), vcpu_op register_vcpu_info',
          legacy:
            'every Xen on Arm guest has had xen_version, memory_op and vcpu_op since Xen 4.3 (2013): they are how a guest finds Xen and maps shared_info and vcpu_info',
        },
        {
          name: 'evtchn-2l',
          default: 'legacy-opt-out',
          description: 'event_channel_op with the 2-level event-channel ABI (every Xen guest saw it); off: event_channel_op is -ENOSYS',
          legacy:
            '2-level event channels were the only event-channel ABI before FIFO (Xen 4.4, 2014), and every Xen guest still starts in them: FIFO is entered by EVTCHNOP_init_control',
        },
        {
          name: 'memory-reservation',
          default: 'opt-in',
          description:
            'memory_op XENMEM_increase_reservation, decrease_reservation, populate_physmap (preemptible) and current/maximum_reservation: ballooning; off: those cmds are -ENOSYS',
        },
        {
          name: XEN_FIDELITY,
          default: 'opt-in',
          description:
            "Xen's own answers where svc-xen 1.0 differed: shared_info's wallclock written at domain creation (wc_version 2, wc_sec/wc_nsec the host's UTC), add_to_physmap(XENMAPSPACE_dev_mmio) from the domU -EACCES; off: wallclock 0, dev_mmio -ENOSYS",
        },
      ],
      calls,
      continuations: RESERVATION_CONTINUATIONS,
      state: { id: STATE_ID, version: STATE_VERSION },
    },
    state: {
      create: (vm) => {
        const d = new XenDomain(vm, hooksOf(vm));
        d.wallclockPending = true;
        return d;
      },
      save: (d) => saveDomain(d),
      load: (data, _schema, vm) => loadDomain(data, vm, hooksOf(vm)),
    },
    handlers,
  });
}

export default createXenService;
