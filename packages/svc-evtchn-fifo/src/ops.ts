import type { CallHandler, VcpuContext, Vm } from '@plugvisor/core';
import { ECS, EVTCHN_ARG_SIZE, EVTCHN_2L_NR_CHANNELS, GuestStruct, PAGE_SIZE, XEN_ERRNO as E, mapGuestPage, xenDomainOf, xenReturn as ret, type XenDomain } from '@plugvisor/svc-xen';
import { CONTROL_BLOCK, EVTCHN_FIFO } from './fifo/abi.js';
import { FifoDomain } from './fifo/domain.js';
import { fifoSetPending } from './fifo/queue.js';

/**
 * EVTCHNOP_init_control, expand_array and set_priority (xen/common/event_fifo.c,
 * event_channel.c: evtchn_fifo_init_control, evtchn_fifo_expand_array, evtchn_set_priority), with Xen's checks in Xen's order.
 */

type Handler = CallHandler<FifoDomain>;

/** Common prologue: svc-xen's domain (synced), argument struct copied in. */
function begin(v: VcpuContext, vm: Vm, size: number): [XenDomain, GuestStruct] | undefined {
  const d = xenDomainOf(vm);
  const arg = GuestStruct.arg(v, v.regs.get(1), size);
  if (!arg) {
    ret(v.regs, -E.EFAULT);
    return undefined;
  }
  return [d, arg];
}

/** The domain switches to FIFO: svc-xen's hooks now reach this package's taps. */
export function activate(d: XenDomain, f: FifoDomain): void {
  f.active = true;
  d.abi = 'fifo';
  d.abiState = f;
}

/** map_control_block: -EINVAL if this vCPU has one, or the frame is not writable RAM. */
function mapControlBlock(d: XenDomain, f: FifoDomain, vcpu: number, gfn: bigint, offset: number): number {
  const v = f.vcpus[vcpu]!;
  if (v.cbGfn !== null) return -E.EINVAL;
  const view = mapGuestPage(d.vm.machine.memory, gfn);
  if (!view) return -E.EINVAL;
  v.cbGfn = gfn;
  v.cbOffset = offset;
  v.cbView = view;
  v.readyWord = offset / 4;
  return 0;
}

// EVTCHNOP_init_control {u64 control_gfn, u32 offset @8, u32 vcpu @12, OUT u8 link_bits @16}
export const initControl: Handler = (v, b) => {
  const got = begin(v, b.vm, EVTCHN_ARG_SIZE.init_control);
  if (!got) return;
  const [d, arg] = got;
  const f = b.state;
  syncViews(d, f);
  arg.setU8(16, EVTCHN_FIFO.LINK_BITS); // filled first, copied out only on success
  const gfn = arg.u64(0);
  const offset = arg.u32(8);
  const vcpu = arg.u32(12);
  if (vcpu >= d.vcpuCount) return ret(v.regs, -E.ENOENT);
  if (offset > PAGE_SIZE - CONTROL_BLOCK.SIZE) return ret(v.regs, -E.EINVAL);
  if (offset & 7) return ret(v.regs, -E.EINVAL);
  let rc: number;
  if (!f.active) {
    const prev = d.maxEvtchns(); // latched before the switch: 2-level's 4096
    f.ensurePortFields();
    f.makeVcpus(d.vcpuCount);
    rc = mapControlBlock(d, f, vcpu, gfn, offset);
    if (rc < 0) {
      f.destroy(); // xsa-188: a failed first init leaves no FIFO state behind
      return ret(v.regs, rc);
    }
    activate(d, f);
    setupPorts(d, f, prev);
  } else {
    rc = mapControlBlock(d, f, vcpu, gfn, offset);
    if (rc < 0) return ret(v.regs, rc);
  }
  arg.writeBack();
  ret(v.regs, 0);
};

/**
 * setup_ports: every port that exists keeps its binding, takes the default priority, and
 * carries its 2-level PENDING bit in the internal flag, re-raised when its array page is
 * added. (The public header says such events are lost; Xen's code has kept them since 2013.)
 */
function setupPorts(d: XenDomain, f: FifoDomain, prev: number): void {
  for (let port = 1; port < prev && port < EVTCHN_2L_NR_CHANNELS; port++) {
    if (!d.ports.isValid(port)) break;
    if (d.pending2l(port)) f.pending[port] = 1;
    f.priority[port] = EVTCHN_FIFO.PRIORITY_DEFAULT;
  }
}

// EVTCHNOP_expand_array {u64 array_gfn}
export const expandArray: Handler = (v, b) => {
  const got = begin(v, b.vm, EVTCHN_ARG_SIZE.expand_array);
  if (!got) return;
  const [d, arg] = got;
  const f = b.state;
  syncViews(d, f);
  if (!f.active) return ret(v.regs, -E.EOPNOTSUPP);
  if (f.pageGfns.length >= EVTCHN_FIFO.MAX_EVENT_ARRAY_PAGES) return ret(v.regs, -E.ENOSPC);
  const gfn = arg.u64(0);
  const view = mapGuestPage(d.vm.machine.memory, gfn);
  if (!view) return ret(v.regs, -E.EINVAL);
  const first = f.numEvtchns;
  f.pageGfns.push(gfn);
  f.pages.push(view);
  // Re-raise whatever was set pending while this page was missing.
  for (let port = first; port < f.numEvtchns; port++) {
    if (!d.ports.isValid(port)) break;
    if (f.pending[port]) fifoSetPending(d, f, d.ports.notifyVcpu[port]!, port);
  }
  ret(v.regs, 0);
};

// EVTCHNOP_set_priority {u32 port, u32 priority}
export const setPriority: Handler = (v, b) => {
  const got = begin(v, b.vm, EVTCHN_ARG_SIZE.set_priority);
  if (!got) return;
  const [d, arg] = got;
  const f = b.state;
  const port = arg.u32(0);
  const priority = arg.u32(4);
  if (!d.ports.isValid(port)) return ret(v.regs, -E.EINVAL);
  if (!f.active) return ret(v.regs, -E.ENOSYS); // 2-level has no set_priority port op
  if (d.ports.state[port]! <= ECS.RESERVED) return ret(v.regs, -E.EACCES);
  if (priority > EVTCHN_FIFO.PRIORITY_MIN) return ret(v.regs, -E.EINVAL);
  f.priority[port] = priority; // affects future linking only
  ret(v.regs, 0);
};

/** Re-makes page views after svc-xen remapped (a restored VM on its new machine). */
export function syncViews(d: XenDomain, f: FifoDomain): void {
  d.sync();
  if (f.epoch === d.memoryEpoch) return;
  f.epoch = d.memoryEpoch;
  if (!f.active) return;
  const mem = d.vm.machine.memory;
  if (f.vcpus.length === 0) f.makeVcpus(d.vcpuCount);
  f.pages = f.pageGfns.map((g) => mapGuestPage(mem, g) ?? new Int32Array(1024));
  for (const v of f.vcpus) {
    v.cbView = v.cbGfn === null ? undefined : mapGuestPage(mem, v.cbGfn);
    v.readyWord = v.cbOffset / 4;
  }
}
