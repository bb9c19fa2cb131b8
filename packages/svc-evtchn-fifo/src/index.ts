import { defineService, packageVersion, type ServicePlugin } from '@plugvisor/core';
import { EVTCHNOP, EVTCHN_ARG_SIZE, HYPERVISOR, SVC_XEN, evtchnSubOf, evtchnSubOp, xenEvtchnHooks, type XenDomain } from '@plugvisor/svc-xen';
import { EVTCHN_FIFO } from './fifo/abi.js';
import { FifoDomain } from './fifo/domain.js';
import { fifoClearPending, fifoInit, fifoIsBusy, fifoSetPending, fifoUnmask } from './fifo/queue.js';
import { activate, expandArray, initControl, setPriority, syncViews } from './ops.js';
import { STATE_ID, STATE_VERSION, loadFifo, saveFifo } from './state.js';

/**
 * Xen's FIFO-based event channels as a per-domain opt-in (README). The three FIFO sub-ops are
 * declared calls under svc-xen's event_channel_op (`subOf: evtchnSubOf(cmd)`), gated by this
 * package's opt-in feature `evtchn-fifo`: a VM that did not ask for it gets event_channel_op's
 * -ENOSYS for them, exactly as pre-4.4 Xen. Once a domain runs init_control, this
 * package answers svc-xen's port-op hooks for it until EVTCHNOP_reset returns it to 2-level.
 */

export * from './fifo/abi.js';
export { FifoDomain, type FifoVcpu } from './fifo/domain.js';
export { fifoSetPending } from './fifo/queue.js';

export const SVC_EVTCHN_FIFO = '@plugvisor/svc-evtchn-fifo';

/** The FIFO state of a domain whose active ABI is FIFO, else undefined. Allocation-free. */
function fifoOf(d: XenDomain): FifoDomain | undefined {
  if (d.abi !== 'fifo') return undefined;
  const f = d.abiState as FifoDomain;
  if (f.epoch !== d.memoryEpoch) syncViews(d, f);
  return f;
}

export function createEvtchnFifoService(): ServicePlugin<FifoDomain> {
  const id = HYPERVISOR.event_channel_op;
  return defineService<FifoDomain>({
    name: SVC_EVTCHN_FIFO,
    version: packageVersion(import.meta.url),
    description: 'Xen FIFO-based event channels, per-domain opt-in',
    requires: [SVC_XEN],
    surface: {
      features: [
        {
          name: 'evtchn-fifo',
          default: 'opt-in',
          description: 'FIFO event channels: EVTCHNOP_init_control, expand_array, set_priority (off: -ENOSYS, as Xen before 4.4)',
        },
      ],
      calls: [
        // Sub-ops of svc-xen's HYPERVISOR_event_channel_op (x16 = 32, x0 = cmd: the router's
        // switch on cmd reaches them); each reads the address of its struct in x1 and answers in
        // x0 (struct sizes from xen/include/public/event_channel.h: evtchn_init_control 24,
        // expand_array 8, set_priority 8).
        { name: 'EVTCHNOP_init_control', conduit: 'xen', id, subOf: evtchnSubOf(EVTCHNOP.init_control), feature: 'evtchn-fifo', signature: evtchnSubOp(EVTCHN_ARG_SIZE.init_control) },
        { name: 'EVTCHNOP_expand_array', conduit: 'xen', id, subOf: evtchnSubOf(EVTCHNOP.expand_array), feature: 'evtchn-fifo', signature: evtchnSubOp(EVTCHN_ARG_SIZE.expand_array) },
        { name: 'EVTCHNOP_set_priority', conduit: 'xen', id, subOf: evtchnSubOf(EVTCHNOP.set_priority), feature: 'evtchn-fifo', signature: evtchnSubOp(EVTCHN_ARG_SIZE.set_priority) },
      ],
      state: { id: STATE_ID, version: STATE_VERSION },
    },
    state: {
      create: () => new FifoDomain(),
      save: (f) => saveFifo(f),
      load: (data) => loadFifo(data),
    },
    handlers: {
      EVTCHNOP_init_control: initControl,
      EVTCHNOP_expand_array: expandArray,
      EVTCHNOP_set_priority: setPriority,
    },
    apply(hv, self) {
      const h = xenEvtchnHooks(hv);
      h.setPending.tap(self.name, (d, port, vcpu) => {
        const f = fifoOf(d);
        if (f === undefined) return undefined;
        fifoSetPending(d, f, vcpu, port);
        return true;
      });
      h.clearPending.tap(self.name, (d, port) => {
        const f = fifoOf(d);
        if (f === undefined) return undefined;
        fifoClearPending(f, port);
        return true;
      });
      h.unmask.tap(self.name, (d, port) => {
        const f = fifoOf(d);
        if (f === undefined) return undefined;
        fifoUnmask(d, f, port);
        return true;
      });
      h.isBusy.tap(self.name, (d, port) => {
        const f = fifoOf(d);
        return f === undefined ? undefined : fifoIsBusy(f, port);
      });
      h.maxPorts.tap(self.name, (d) => (fifoOf(d) === undefined ? undefined : EVTCHN_FIFO.NR_CHANNELS));
      h.portInit.tap(self.name, (d, port) => {
        const f = fifoOf(d);
        if (f !== undefined) fifoInit(f, port);
      });
      h.reset.tap(self.name, (d) => {
        const f = fifoOf(d);
        if (f === undefined) return;
        f.destroy(); // evtchn_fifo_destroy + evtchn_2l_init
        d.abi = '2l';
        d.abiState = undefined;
      });
      // A restored FIFO domain: point svc-xen's domain at the loaded FIFO state again.
      hv.hooks.snapshotRestore.tap(self.name, (vm) => {
        const f = vm.stateOf<FifoDomain>(self.name);
        if (f.active) activate(vm.stateOf<XenDomain>(SVC_XEN), f);
      });
    },
  });
}

export default createEvtchnFifoService;
