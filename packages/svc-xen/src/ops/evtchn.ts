import type { CallHandler, VcpuContext } from '@plugvisor/core';
import { DOMID_SELF, EVTCHN_ARG_SIZE as SIZE, EVTCHNSTAT, NR_VIRQS, XEN_ERRNO as E, virqType } from '../abi.js';
import type { XenDomain } from '../domain.js';
import { GuestStruct } from '../guest-args.js';
import { ECS } from '../ports.js';
import { ret } from '../subop.js';

/**
 * The 2-level event-channel sub-ops (xen/common/event_channel.c), one handler each, reached
 * by core's router through event_channel_op's cmd (x0; CallDecl.subOf). Order of checks and errno values follow Xen's code;
 * each handler says where it departs and why. All run in the calling domain (there is one
 * guest domain; the VMM is domain 0).
 */

type Handler = CallHandler<XenDomain>;

/** Common prologue: domain synced, argument struct copied in. */
function begin(v: VcpuContext, d: XenDomain, size: number): GuestStruct | undefined {
  d.sync();
  const arg = GuestStruct.arg(v, v.regs.get(1), size);
  if (!arg) ret(v.regs, -E.EFAULT);
  return arg;
}

/** Copy-out after success; -EFAULT cannot happen (the range was checked) but is Xen's answer. */
function done(v: VcpuContext, arg: GuestStruct): void {
  arg.writeBack();
  ret(v.regs, 0);
}

const vcpuOk = (d: XenDomain, vcpu: number): boolean => vcpu >>> 0 === vcpu && vcpu < d.vcpuCount;

// EVTCHNOP_alloc_unbound {u16 dom, u16 remote_dom, OUT u32 port}
export const allocUnbound: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.alloc_unbound);
  if (!arg) return;
  const dom = d.lookupDomain(arg.u16(0));
  if (dom === undefined) return ret(v.regs, -E.ESRCH);
  if (dom === 'vmm') return ret(v.regs, -E.EPERM); // allocating in domain 0: the XSM check refuses a domU
  const port = d.getFreePort();
  if (port < 0) return ret(v.regs, port);
  const remote = arg.u16(2);
  const t = d.ports;
  t.state[port] = ECS.UNBOUND;
  t.remoteDom[port] = remote === DOMID_SELF ? d.domid : remote;
  d.portInit(port);
  arg.setU32(4, port);
  done(v, arg);
};

// EVTCHNOP_bind_interdomain {u16 remote_dom, u32 remote_port @4, OUT u32 local_port @8}
export const bindInterdomain: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.bind_interdomain);
  if (!arg) return;
  const rd = d.lookupDomain(arg.u16(0));
  if (rd === undefined) return ret(v.regs, -E.ESRCH);
  const rport = arg.u32(4);
  const lport = d.getFreePort();
  if (lport < 0) return ret(v.regs, lport);
  const t = d.ports;
  const remoteOk =
    rd === 'self'
      ? t.isValid(rport) && t.state[rport] === ECS.UNBOUND && t.remoteDom[rport] === d.domid
      : rport < d.vmmPorts.length && d.vmmPorts[rport] === 0;
  if (!remoteOk) {
    d.releaseIfFree(lport);
    return ret(v.regs, -E.EINVAL);
  }
  t.state[lport] = ECS.INTERDOMAIN;
  t.remoteDom[lport] = rd === 'self' ? d.domid : 0;
  t.remotePort[lport] = rport;
  d.portInit(lport);
  if (rd === 'self') {
    t.state[rport] = ECS.INTERDOMAIN;
    t.remoteDom[rport] = d.domid;
    t.remotePort[rport] = lport;
  } else {
    d.vmmPorts[rport] = lport;
  }
  // The peer may have signalled the unbound port already: Xen always sets the new port pending.
  d.setPending(t.notifyVcpu[lport]!, lport);
  arg.setU32(8, lport);
  done(v, arg);
};

// EVTCHNOP_bind_virq {u32 virq, u32 vcpu, OUT u32 port}
export const bindVirq: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.bind_virq);
  if (!arg) return;
  const virq = arg.i32(0);
  const vcpu = arg.i32(4);
  if (virq < 0 || virq >= NR_VIRQS) return ret(v.regs, -E.EINVAL);
  const type = virqType(virq);
  if (type !== 'vcpu' && vcpu !== 0) return ret(v.regs, -E.EINVAL);
  if (!vcpuOk(d, vcpu)) return ret(v.regs, -E.ENOENT);
  // Global VIRQs belong to the hardware domain, which is the VMM (domain 0), not this guest.
  if (type === 'global') return ret(v.regs, -E.EBUSY);
  if (d.virqPort(vcpu, virq) !== 0) return ret(v.regs, -E.EEXIST);
  const port = d.getFreePort();
  if (port < 0) return ret(v.regs, port);
  const t = d.ports;
  t.state[port] = ECS.VIRQ;
  t.notifyVcpu[port] = vcpu;
  t.remotePort[port] = virq;
  d.portInit(port);
  d.setVirqPort(vcpu, virq, port);
  arg.setU32(8, port);
  done(v, arg);
};

// EVTCHNOP_bind_pirq: Arm has no CONFIG_HAS_PIRQ.
export const bindPirq: Handler = (v, b) => {
  const arg = begin(v, b.state, SIZE.bind_pirq);
  if (!arg) return;
  ret(v.regs, -E.EOPNOTSUPP);
};

// EVTCHNOP_bind_ipi {u32 vcpu, OUT u32 port}
export const bindIpi: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.bind_ipi);
  if (!arg) return;
  const vcpu = arg.u32(0);
  if (!vcpuOk(d, vcpu)) return ret(v.regs, -E.ENOENT);
  const port = d.getFreePort();
  if (port < 0) return ret(v.regs, port);
  d.ports.state[port] = ECS.IPI;
  d.ports.notifyVcpu[port] = vcpu;
  d.portInit(port);
  arg.setU32(4, port);
  done(v, arg);
};

// EVTCHNOP_close {u32 port}
export const close: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.close);
  if (!arg) return;
  ret(v.regs, d.close(arg.u32(0)));
};

/** evtchn_send on a local port: 0 or a negative errno. Shared with the VMM-side API. */
export function send(d: XenDomain, port: number): number {
  const t = d.ports;
  if (!t.isValid(port)) return -E.EINVAL;
  switch (t.state[port]) {
    case ECS.INTERDOMAIN: {
      const rport = t.remotePort[port]!;
      if (t.remoteDom[port] === d.domid) d.setPending(t.notifyVcpu[rport]!, rport);
      else d.hooks.vmmNotify.call(d.vm, rport, port);
      return 0;
    }
    case ECS.IPI:
      d.setPending(t.notifyVcpu[port]!, port);
      return 0;
    case ECS.UNBOUND:
      return 0; // silently dropped
    default:
      return -E.EINVAL;
  }
}

// EVTCHNOP_send {u32 port}
export const sendOp: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.send);
  if (!arg) return;
  ret(v.regs, send(d, arg.u32(0)));
};

// EVTCHNOP_status {u16 dom, u32 port @4, OUT u32 status @8, u32 vcpu @12, union @16}
export const status: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.status);
  if (!arg) return;
  const dom = d.lookupDomain(arg.u16(0));
  if (dom === undefined) return ret(v.regs, -E.ESRCH);
  // Domain 0's ports: Xen checks the port, then XSM refuses a domU; we refuse either way.
  if (dom === 'vmm') return ret(v.regs, -E.EPERM);
  const port = arg.u32(4);
  const t = d.ports;
  if (!t.isValid(port)) return ret(v.regs, -E.EINVAL);
  switch (t.state[port]) {
    case ECS.FREE:
    case ECS.RESERVED:
      arg.setU32(8, EVTCHNSTAT.closed);
      break;
    case ECS.UNBOUND:
      arg.setU32(8, EVTCHNSTAT.unbound).setU16(16, t.remoteDom[port]!);
      break;
    case ECS.INTERDOMAIN:
      arg.setU32(8, EVTCHNSTAT.interdomain).setU16(16, t.remoteDom[port]!).setU32(20, t.remotePort[port]!);
      break;
    case ECS.VIRQ:
      arg.setU32(8, EVTCHNSTAT.virq).setU32(16, t.remotePort[port]!);
      break;
    case ECS.IPI:
      arg.setU32(8, EVTCHNSTAT.ipi);
      break;
  }
  arg.setU32(12, t.notifyVcpu[port]!);
  done(v, arg);
};

// EVTCHNOP_bind_vcpu {u32 port, u32 vcpu}
export const bindVcpu: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.bind_vcpu);
  if (!arg) return;
  const port = arg.u32(0);
  const vcpu = arg.u32(4);
  if (!vcpuOk(d, vcpu)) return ret(v.regs, -E.ENOENT);
  const t = d.ports;
  if (!t.isValid(port)) return ret(v.regs, -E.EINVAL);
  switch (t.state[port]) {
    case ECS.VIRQ:
      if (virqType(t.remotePort[port]!) === 'vcpu') return ret(v.regs, -E.EINVAL);
      t.notifyVcpu[port] = vcpu;
      break;
    case ECS.UNBOUND:
    case ECS.INTERDOMAIN:
      t.notifyVcpu[port] = vcpu;
      break;
    default:
      return ret(v.regs, -E.EINVAL);
  }
  ret(v.regs, 0);
};

// EVTCHNOP_unmask {u32 port}: a valid port always answers 0, even a FREE one.
export const unmask: Handler = (v, b) => {
  const d = b.state;
  const arg = begin(v, d, SIZE.unmask);
  if (!arg) return;
  const port = arg.u32(0);
  if (!d.ports.isValid(port)) return ret(v.regs, -E.EINVAL);
  d.unmask(port);
  ret(v.regs, 0);
};

/**
 * EVTCHNOP_reset {u16 dom} and reset_cont. Plugvisor's reset is not preemptible (closing even
 * 131072 ports is well under a millisecond), so no reset is ever "in progress" between two
 * hypercalls: reset_cont always finds none and answers -EBUSY, as Xen does for a guest that
 * calls it unprompted.
 */
function reset(v: VcpuContext, d: XenDomain, resuming: boolean): void {
  const arg = begin(v, d, SIZE.reset);
  if (!arg) return;
  const dom = d.lookupDomain(arg.u16(0));
  if (dom === undefined) return ret(v.regs, -E.ESRCH);
  if (dom === 'vmm') return ret(v.regs, -E.EPERM); // XSM_TARGET: a domU may not reset domain 0
  if (resuming) return ret(v.regs, -E.EBUSY);
  d.closeAll();
  if (d.ports.active > 0) return ret(v.regs, -E.EAGAIN);
  d.hooks.reset.call(d); // a non-2-level ABI tears down: back to 2-level
  ret(v.regs, 0);
}
export const resetOp: Handler = (v, b) => reset(v, b.state, false);
export const resetCont: Handler = (v, b) => reset(v, b.state, true);
