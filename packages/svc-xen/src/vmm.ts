import { AbiError, type Vm } from '@plugvisor/core';
import { MAX_NR_EVTCHNS, NR_VIRQS, virqType } from './abi.js';
import type { XenDomain } from './domain.js';
import { XenError } from './errors.js';
import { send } from './ops/evtchn.js';
import { ECS } from './ports.js';
import { xenDomainOf } from './subop.js';

/**
 * The VMM's side of event channels. The VMM plays domain 0, the backend domain: it owns
 * ports of its own (numbered from 1 in its own space) and connects them to the guest's the
 * way a Xen backend does, then raises events that arrive exactly as a backend's
 * EVTCHNOP_send would. Errors are XenError with the errno Xen would give the same request.
 */

/** The VMM's port table entry for `vmmPort`, checked. */
function vmmEntry(d: XenDomain, vmmPort: number): number {
  if (!Number.isInteger(vmmPort) || vmmPort < 1 || vmmPort >= d.vmmPorts.length || d.vmmPorts[vmmPort] === -1)
    throw new XenError('EINVAL', `the VMM has no event-channel port ${vmmPort}`);
  return d.vmmPorts[vmmPort]!;
}

function newVmmPort(d: XenDomain, value: number): number {
  let p = d.vmmPorts.indexOf(-1, 1);
  if (p < 0) p = d.vmmPorts.push(-1) - 1;
  d.vmmPorts[p] = value;
  return p;
}

/**
 * EVTCHNOP_alloc_unbound{dom = 0, remote_dom = guest} issued by the VMM: a VMM port the guest
 * then binds with EVTCHNOP_bind_interdomain{remote_dom = 0, remote_port = returned port}.
 */
export function vmmAllocUnbound(vm: Vm): number {
  return newVmmPort(xenDomainOf(vm), 0);
}

/**
 * EVTCHNOP_bind_interdomain by the VMM to a guest port the guest made with
 * alloc_unbound{remote_dom = 0}. Returns the VMM's port. -EINVAL unless that port is UNBOUND
 * and accepts domain 0.
 */
export function vmmBindInterdomain(vm: Vm, guestPort: number): number {
  const d = xenDomainOf(vm);
  const t = d.ports;
  if (!t.isValid(guestPort) || t.state[guestPort] !== ECS.UNBOUND || t.remoteDom[guestPort] !== 0)
    throw new XenError('EINVAL', `guest port ${guestPort} is not unbound for domain 0 (the VMM)`);
  const vmmPort = newVmmPort(d, guestPort);
  t.state[guestPort] = ECS.INTERDOMAIN;
  t.remotePort[guestPort] = vmmPort;
  return vmmPort;
}

/** The guest port a VMM port is connected to, or 0 while unbound. */
export function vmmPeer(vm: Vm, vmmPort: number): number {
  return vmmEntry(xenDomainOf(vm), vmmPort);
}

/**
 * EVTCHNOP_send on the VMM's port `vmmPort`: raises the connected guest port on its notify
 * vCPU, through whichever ABI the domain uses. An unbound VMM port drops it (Xen: 0).
 */
export function vmmSend(vm: Vm, vmmPort: number): void {
  const d = xenDomainOf(vm);
  const guestPort = vmmEntry(d, vmmPort);
  if (guestPort !== 0) d.setPending(d.ports.notifyVcpu[guestPort]!, guestPort);
}

/**
 * Raises guest port `port` the way its backend would (EVTCHNOP_send on the far end): the port
 * must be an interdomain channel whose remote end is the VMM. This is the hot path a device
 * model uses; it allocates nothing.
 */
export function raiseEvent(vm: Vm, port: number): void {
  const d = xenDomainOf(vm);
  const t = d.ports;
  if (!t.isValid(port) || t.state[port] !== ECS.INTERDOMAIN || t.remoteDom[port] !== 0)
    throw new XenError('EINVAL', `guest port ${port} is not connected to the VMM`);
  d.setPending(t.notifyVcpu[port]!, port);
}

/** EVTCHNOP_close on the VMM's port: the guest's end goes back to UNBOUND, accepting domain 0. */
export function vmmClose(vm: Vm, vmmPort: number): void {
  const d = xenDomainOf(vm);
  const guestPort = vmmEntry(d, vmmPort);
  if (guestPort !== 0) {
    d.ports.state[guestPort] = ECS.UNBOUND;
    d.ports.remoteDom[guestPort] = 0;
    d.ports.remotePort[guestPort] = 0;
  }
  d.vmmPorts[vmmPort] = -1;
}

/** send_guest_vcpu_virq / send_guest_domain_virq: raise a VIRQ the guest bound, if it did. */
export function raiseVirq(vm: Vm, vcpu: number, virq: number): void {
  const d = xenDomainOf(vm);
  if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) throw new XenError('EINVAL', `no VIRQ ${virq}`);
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= d.vcpuCount) throw new XenError('ENOENT', `no vCPU ${vcpu}`);
  const v = virqType(virq) === 'vcpu' ? vcpu : 0;
  const port = d.virqPort(v, virq);
  if (port !== 0) d.setPending(virqType(virq) === 'vcpu' ? vcpu : d.ports.notifyVcpu[port]!, port);
}

/** Guest-style EVTCHNOP_send from the VMM on a guest port (tests, IPI injection). */
export function sendAsGuest(vm: Vm, port: number): number {
  return send(xenDomainOf(vm), port);
}

/**
 * xl's max_event_channels: the highest port the guest may allocate (default 1023). Part of the
 * guest's view, so it is fixed once the VM has run (EBUSY after, as ABI settings are).
 */
export function setMaxEvtchnPort(vm: Vm, maxPort: number): void {
  if (vm.started) throw new AbiError('EBUSY', 'max event-channel port is fixed once the VM has run');
  if (!Number.isInteger(maxPort) || maxPort < 1 || maxPort >= MAX_NR_EVTCHNS)
    throw new AbiError('EINVAL', `max event-channel port ${maxPort} is not in 1..${MAX_NR_EVTCHNS - 1}`);
  vm.stateOf<XenDomain>('@plugvisor/svc-xen').maxEvtchnPort = maxPort;
}

/** The domain (svc-xen's per-VM state), for inspection and for other services. */
export function xenDomain(vm: Vm): XenDomain {
  return xenDomainOf(vm);
}
