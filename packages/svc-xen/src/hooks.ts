import { SyncBailHook, SyncHook } from 'tapable';
import { pluginHooks, type Hypervisor, type Vm } from '@plugvisor/core';
import type { XenDomain } from './domain.js';

/**
 * svc-xen's own hooks, one set per build (webpack's getCompilationHooks pattern, as
 * svc-smccc-arch's smcccArchHooks), in the build's registry. They are Xen's `struct evtchn_port_ops` turned inside out:
 * a package that implements another event-channel ABI (svc-evtchn-fifo) taps them and answers
 * while that ABI is active for the domain; no answer means the 2-level ABI, which svc-xen
 * implements itself. svc-xen never names the packages that tap them.
 *
 * Bail hooks: the first tap that returns something other than `undefined` has handled it.
 * They run on the raise path, so taps must not allocate.
 */
export interface XenEvtchnHooks {
  /** set_pending(v, port): mark `port` pending for vCPU `vcpu` and deliver. */
  readonly setPending: SyncBailHook<[XenDomain, number, number], true | undefined>;
  /** clear_pending(port): on close/free. */
  readonly clearPending: SyncBailHook<[XenDomain, number], true | undefined>;
  /** unmask(port): EVTCHNOP_unmask on a usable port. */
  readonly unmask: SyncBailHook<[XenDomain, number], true | undefined>;
  /** is_busy(port): a FREE port the allocator must skip (FIFO: still LINKED). */
  readonly isBusy: SyncBailHook<[XenDomain, number], boolean | undefined>;
  /** max_evtchns(d): the ABI's port limit (2-level: 4096). */
  readonly maxPorts: SyncBailHook<[XenDomain], number | undefined>;
  /** init(port): a port was just bound (FIFO resets its priority). */
  readonly portInit: SyncHook<[XenDomain, number]>;
  /** EVTCHNOP_reset closed every port: an ABI other than 2-level tears itself down. */
  readonly reset: SyncHook<[XenDomain]>;
  /** The guest signalled a channel whose remote end is the VMM: (vm, VMM port, guest port). */
  readonly vmmNotify: SyncHook<[Vm, number, number]>;
}

const createXenEvtchnHooks = (): XenEvtchnHooks => ({
  setPending: new SyncBailHook<[XenDomain, number, number], true | undefined>(['domain', 'port', 'vcpu']),
  clearPending: new SyncBailHook<[XenDomain, number], true | undefined>(['domain', 'port']),
  unmask: new SyncBailHook<[XenDomain, number], true | undefined>(['domain', 'port']),
  isBusy: new SyncBailHook<[XenDomain, number], boolean | undefined>(['domain', 'port']),
  maxPorts: new SyncBailHook<[XenDomain], number | undefined>(['domain']),
  portInit: new SyncHook<[XenDomain, number]>(['domain', 'port']),
  reset: new SyncHook<[XenDomain]>(['domain']),
  vmmNotify: new SyncHook<[Vm, number, number]>(['vm', 'vmmPort', 'guestPort']),
});

/**
 * The build's hooks, kept in its registry (`pluginHooks` of @plugvisor/core), not in this
 * module: every copy of svc-xen (one installed by a package that taps these) gets the same set.
 */
export function xenEvtchnHooks(hv: Hypervisor): XenEvtchnHooks {
  return pluginHooks(hv, '@plugvisor/svc-xen:evtchn', createXenEvtchnHooks);
}
