import { describe, expect, it } from 'vitest';
import { Hypervisor, callId, type Vm } from '@plugvisor/core';
import { checkServiceConformance, MemoryMachine } from '@plugvisor/core/testing';
import {
  createXenService,
  raiseEvent,
  raiseVirq,
  SHINFO,
  setMaxEvtchnPort,
  VCPU_INFO,
  vmmAllocUnbound,
  vmmBindInterdomain,
  vmmClose,
  vmmSend,
  xenDomain,
  xenEvtchnHooks,
  XenError,
  xenSubOpId,
  XEN_FEATURES_SUBMAP0,
} from './index.js';
import { XenGuest } from './testing/index.js';

const E = { EPERM: -1, ENOENT: -2, ESRCH: -3, ENXIO: -6, EFAULT: -14, EBUSY: -16, EEXIST: -17, EINVAL: -22, ENOSPC: -28, EDOM: -33, ENOSYS: -38, EOPNOTSUPP: -95 };
const RAM = 0x4000_0000n;
const GFN = (page: number) => (RAM >> 12n) + BigInt(page);
const SHINFO_PAGE = 8;

function setup(opts: { vcpus?: number; features?: Record<string, boolean>; maxPort?: number } = {}) {
  const hv = Hypervisor.compose([createXenService()], { name: 'xen-test' });
  const notified: Array<[number, number]> = [];
  xenEvtchnHooks(hv).vmmNotify.tap('test', (_vm, vmmPort, guestPort) => void notified.push([vmmPort, guestPort]));
  const vm = hv.createVm({ features: opts.features ?? {} });
  if (opts.maxPort) setMaxEvtchnPort(vm, opts.maxPort);
  const m = new MemoryMachine(opts.vcpus ?? 2, RAM, 1 << 20);
  vm.attachMachine(m);
  vm.start();
  return { hv, vm, m, g: new XenGuest(vm, m), notified };
}

const shGpa = RAM + BigInt(SHINFO_PAGE) * 4096n;
const bit = (m: MemoryMachine, gpa: bigint, n: number) => (m.memory.readU32(gpa + BigInt((n >> 5) * 4)) >>> (n & 31)) & 1;
const pending = (m: MemoryMachine, port: number) => bit(m, shGpa + BigInt(SHINFO.EVTCHN_PENDING), port);
const upcall = (m: MemoryMachine, viGpa: bigint) => m.memory.readU32(viGpa) & 0xff;

/** A guest that mapped shared_info and registered vcpu_info for both vCPUs (page 9, offsets 0 / 64). */
function booted(opts: Parameters<typeof setup>[0] = {}) {
  const s = setup(opts);
  expect(s.g.mapSharedInfo(GFN(SHINFO_PAGE))).toBe(0);
  for (let i = 0; i < s.m.vcpuCount; i++) expect(s.g.registerVcpuInfo(i, GFN(9), i * 64)).toBe(0);
  // registration raises a spurious upcall on purpose (Xen: "nothing gets lost"); clear it
  for (let i = 0; i < s.m.vcpuCount; i++) {
    s.m.memory.writeU32(RAM + 9n * 4096n + BigInt(i * 64), 0);
    s.m.memory.writeU64(RAM + 9n * 4096n + BigInt(i * 64 + 8), 0n);
    s.m.interrupts[i]!.clear();
  }
  return { ...s, vi: (i: number) => RAM + 9n * 4096n + BigInt(i * 64) };
}

describe('svc-xen conformance and surface', () => {
  it('conforms to the core kit and declares every sub-op as a call', () => {
    expect(checkServiceConformance(createXenService())).toEqual([]);
    const names = createXenService().surface.calls.map((c) => c.name);
    expect(names).toContain('EVTCHNOP_reset_cont');
    // A sub-op of event_channel_op: its parent's id, selected by cmd in x0.
    const send = createXenService().surface.calls.find((c) => c.name === 'EVTCHNOP_send')!;
    expect(send).toMatchObject({ id: 32, subOf: { call: 'HYPERVISOR_event_channel_op', selector: 0, value: 4 } });
    expect(callId(send)).toBe('xen:0x20/0x4');
  });

  it('answers -ENOSYS for unknown hypercalls, unknown sub-ops, x16 high bits and sub-op ids called directly', () => {
    const { g } = setup();
    expect(g.hypercall(0, 99)).toBe(E.ENOSYS);
    expect(g.hypercall(0, 32, 11, g.scratch)).toBe(E.ENOSYS); // init_control: no FIFO in this build
    expect(g.hypercall(0, 32, 200, g.scratch)).toBe(E.ENOSYS);
    expect(g.hypercall(0, 32, 0x1_0006, g.scratch)).toBe(E.ENOSYS);
    expect(g.hypercall(0, (1n << 32n) | 17n, 0)).toBe(E.ENOSYS);
    expect(g.hypercall(0, xenSubOpId(32, 6), 6, g.scratch)).toBe(E.ENOSYS);
  });

  it('with evtchn-2l off event_channel_op is -ENOSYS but xen_version answers; with xen off too', () => {
    const { g } = setup({ features: { 'evtchn-2l': false } });
    expect(g.allocUnbound()[0]).toBe(E.ENOSYS);
    expect(g.hypercall(0, 17, 0)).toBe(0x40013);
    const off = setup({ features: { xen: false, 'evtchn-2l': false } });
    expect(off.g.hypercall(0, 17, 0)).toBe(E.ENOSYS);
  });
});

describe('xen_version, memory_op, vcpu_op', () => {
  it('reports version, features, pagesize and strings', () => {
    const { g, m } = setup();
    expect(g.hypercall(0, 17, 0)).toBe(0x0004_0013);
    expect(g.hypercall(0, 17, 7, 0)).toBe(4096);
    expect(g.hypercall(0, 17, 7, g.scratch)).toBe(E.EINVAL);
    g.struct(8, [[0, 4, 0]]);
    expect(g.hypercall(0, 17, 6, g.scratch)).toBe(0);
    expect(g.u32(g.scratch + 4n)).toBe(XEN_FEATURES_SUBMAP0);
    g.struct(8, [[0, 4, 1]]);
    expect(g.hypercall(0, 17, 6, g.scratch)).toBe(E.EINVAL);
    expect(g.hypercall(0, 17, 1, g.scratch)).toBe(0);
    expect(Buffer.from(m.ram.subarray(Number(g.scratch - RAM), Number(g.scratch - RAM) + 10)).toString()).toBe('-plugvisor');
    expect(g.hypercall(0, 17, 1, 0x10n)).toBe(E.EFAULT);
    expect(g.hypercall(0, 17, 10, g.scratch)).toBe(E.EPERM);
    expect(g.hypercall(0, 17, 42, g.scratch)).toBe(E.ENOSYS);
  });

  it('maps shared_info once, carrying events raised before the mapping; refuses bad input', () => {
    const { g, m, vm } = setup();
    const [, p] = g.allocUnbound(0);
    vmmBindInterdomain(vm, p);
    raiseEvent(vm, p); // before shared_info is mapped: lands in Xen's own page
    expect(g.mapSharedInfo(GFN(SHINFO_PAGE))).toBe(0);
    expect(pending(m, p)).toBe(1);
    expect(upcall(m, shGpa)).toBe(1); // vCPU 0's vcpu_info is shared_info.vcpu_info[0] until registered
    expect(g.mapSharedInfo(GFN(10))).toBe(E.EBUSY);
    const s2 = setup();
    expect(s2.g.mapSharedInfo(0x12345n)).toBe(E.EINVAL);
    expect(s2.g.mapSharedInfo(-2n)).toBe(E.EINVAL);
    expect(s2.g.hypercall(0, 12, 7, 0x10n)).toBe(E.EFAULT);
    expect(s2.g.hypercall(0, 12, 7 | (1 << 22) << 6, s2.g.scratch)).toBe(E.EDOM);
    expect(s2.g.hypercall(0, 12, 1, s2.g.scratch)).toBe(E.ENOSYS);
    s2.g.struct(24, [[0, 2, 0x7ff0], [4, 4, 0], [8, 8, 1n], [16, 8, GFN(3)]]);
    expect(s2.g.hypercall(0, 12, 7, s2.g.scratch)).toBe(E.EINVAL); // idx != 0
    s2.g.struct(24, [[0, 2, 5], [4, 4, 0], [8, 8, 0n], [16, 8, GFN(3)]]);
    expect(s2.g.hypercall(0, 12, 7, s2.g.scratch)).toBe(E.ESRCH);
    s2.g.struct(24, [[0, 2, 0], [4, 4, 0], [8, 8, 0n], [16, 8, GFN(3)]]);
    expect(s2.g.hypercall(0, 12, 7, s2.g.scratch)).toBe(E.EPERM);
    s2.g.struct(24, [[0, 2, 0x7ff0], [4, 4, 1], [8, 8, 0n], [16, 8, GFN(3)]]);
    expect(s2.g.hypercall(0, 12, 7, s2.g.scratch)).toBe(E.ENOSYS);
  });

  it('registers vcpu_info with every Xen check, then upcalls with all selectors set', () => {
    const { g, m } = setup();
    expect(g.registerVcpuInfo(5, GFN(9), 0)).toBe(E.ENOENT);
    expect(g.hypercall(0, 24, 3, 0, g.scratch)).toBe(E.EINVAL); // other cmds: EINVAL on Arm
    expect(g.hypercall(0, 24, 10, 0, 0x10n)).toBe(E.EFAULT);
    expect(g.registerVcpuInfo(1, GFN(9), 4)).toBe(E.ENXIO);
    expect(g.registerVcpuInfo(1, GFN(9), 4090)).toBe(E.ENXIO);
    expect(g.registerVcpuInfo(1, GFN(9), 5000)).toBe(E.EINVAL);
    expect(g.registerVcpuInfo(1, 0x99999n, 0)).toBe(E.EINVAL);
    expect(g.registerVcpuInfo(1, GFN(9), 64)).toBe(0);
    expect(g.registerVcpuInfo(1, GFN(9), 128)).toBe(E.EBUSY);
    const vi = RAM + 9n * 4096n + 64n;
    expect(upcall(m, vi)).toBe(1);
    expect(m.memory.readU64(vi + 8n)).toBe(0xffff_ffff_ffff_ffffn);
    expect(m.interrupts[1]!.has(31)).toBe(true);
  });
});

describe('2-level event channels', () => {
  it('allocates the lowest port from 1, reports status, and loops back with DOMID_SELF', () => {
    const { g, m } = booted();
    const [rc, a] = g.allocUnbound();
    expect([rc, a]).toEqual([0, 1]);
    expect(g.status(a)).toEqual([0, 1, 0, 1, 0]); // unbound, accepting domain 1 (us)
    const [rc2, b] = g.bindInterdomain(0x7ff0, a);
    expect([rc2, b]).toEqual([0, 2]);
    expect(pending(m, b)).toBe(1); // a fresh interdomain port is always set pending
    expect(g.status(a)).toEqual([0, 2, 0, 1, b]);
    expect(g.status(b)).toEqual([0, 2, 0, 1, a]);
    m.memory.writeU32(shGpa + BigInt(SHINFO.EVTCHN_PENDING), 0);
    expect(g.send(a)).toBe(0);
    expect(pending(m, b)).toBe(1);
    expect(pending(m, a)).toBe(0);
    expect(g.close(b)).toBe(0);
    expect(g.status(a)).toEqual([0, 1, 0, 1, 0]); // back to unbound, accepting us
    expect(g.status(b)[1]).toBe(0);
    expect(g.send(a)).toBe(0); // unbound: dropped silently
  });

  it('sets pending, selector and upcall as Xen does, honours the mask, unmask re-raises', () => {
    const { g, m, vi } = booted();
    const [, ipi] = g.bindIpi(1);
    expect(g.send(ipi)).toBe(0);
    expect(pending(m, ipi)).toBe(1);
    expect(m.memory.readU64(vi(1) + BigInt(VCPU_INFO.PENDING_SEL))).toBe(1n);
    expect(upcall(m, vi(1))).toBe(1);
    expect(m.interrupts[1]!.has(31)).toBe(true);
    expect(m.interrupts[0]!.has(31)).toBe(false);
    // masked: pending but no selector/upcall; unmask through the hypercall re-raises
    const [, ipi2] = g.bindIpi(0);
    m.memory.writeU32(shGpa + BigInt(SHINFO.EVTCHN_MASK), 1 << ipi2);
    g.send(ipi2);
    expect(pending(m, ipi2)).toBe(1);
    expect(upcall(m, vi(0))).toBe(0);
    expect(g.unmask(ipi2)).toBe(0);
    expect(upcall(m, vi(0))).toBe(1);
    expect(m.interrupts[0]!.has(31)).toBe(true);
    expect(bit(m, shGpa + BigInt(SHINFO.EVTCHN_MASK), ipi2)).toBe(0);
  });

  it('binds VIRQs with Xen errnos and raises them from the VMM', () => {
    const { g, m, vm, vi } = booted();
    expect(g.bindVirq(24, 0)[0]).toBe(E.EINVAL);
    expect(g.bindVirq(-1, 0)[0]).toBe(E.EINVAL);
    expect(g.bindVirq(2, 1)[0]).toBe(E.EINVAL); // global VIRQ on vCPU 1
    expect(g.bindVirq(0, 7)[0]).toBe(E.ENOENT);
    expect(g.bindVirq(2, 0)[0]).toBe(E.EBUSY); // global VIRQs belong to domain 0
    const [rc, t1] = g.bindVirq(0, 1);
    expect(rc).toBe(0);
    expect(g.bindVirq(0, 1)[0]).toBe(E.EEXIST);
    expect(g.status(t1)).toEqual([0, 4, 1, 0, 0]);
    raiseVirq(vm, 1, 0);
    expect(pending(m, t1)).toBe(1);
    expect(upcall(m, vi(1))).toBe(1);
    expect(g.bindVcpu(t1, 0)).toBe(E.EINVAL); // per-vCPU VIRQ cannot move
    expect(g.close(t1)).toBe(0);
    expect(g.bindVirq(0, 1)[0]).toBe(0);
    const [, argo] = g.bindVirq(11, 0);
    expect(g.bindVcpu(argo, 1)).toBe(0);
  });

  it('bind_vcpu, close, unmask and status errnos; bind_pirq is EOPNOTSUPP; reset closes all', () => {
    const { g } = booted();
    const [, u] = g.allocUnbound(0);
    expect(g.bindVcpu(u, 9)).toBe(E.ENOENT);
    expect(g.bindVcpu(99, 1)).toBe(E.EINVAL); // port 99 does not exist (bucket 0 is 0..63)
    expect(g.bindVcpu(40, 1)).toBe(E.EINVAL); // exists, FREE
    expect(g.bindVcpu(u, 1)).toBe(0);
    expect(g.status(u)[2]).toBe(1);
    const [, ipi] = g.bindIpi(0);
    expect(g.bindVcpu(ipi, 1)).toBe(E.EINVAL);
    expect(g.close(0)).toBe(E.EINVAL);
    expect(g.close(40)).toBe(E.EINVAL);
    expect(g.close(64)).toBe(E.EINVAL);
    expect(g.unmask(40)).toBe(0);
    expect(g.unmask(64)).toBe(E.EINVAL);
    expect(g.send(0)).toBe(E.EINVAL);
    expect(g.send(40)).toBe(E.EINVAL);
    expect(g.status(64)[0]).toBe(E.EINVAL);
    expect(g.status(0)).toEqual([0, 0, 0, 0, 0]);
    expect(g.status(1, 3)[0]).toBe(E.ESRCH);
    expect(g.status(1, 0)[0]).toBe(E.EPERM);
    expect(g.allocUnbound.call(g)[0]).toBe(0);
    expect(g.evtchn(0, 6, 8, [[0, 2, 9]])).toBe(E.ESRCH);
    expect(g.evtchn(0, 6, 8, [[0, 2, 0]])).toBe(E.EPERM);
    expect(g.bindInterdomain(9, 1)[0]).toBe(E.ESRCH);
    expect(g.bindInterdomain(0x7ff0, ipi)[0]).toBe(E.EINVAL);
    expect(g.bindIpi(2)[0]).toBe(E.ENOENT);
    expect(g.evtchn(0, 2, 12, [])).toBe(E.EOPNOTSUPP);
    expect(g.reset(9)).toBe(E.ESRCH);
    expect(g.reset(0)).toBe(E.EPERM);
    expect(g.evtchn(0, 14, 2, [[0, 2, 0x7ff0]])).toBe(E.EBUSY); // reset_cont with no reset under way
    expect(g.reset()).toBe(0);
    expect(g.status(u)[1]).toBe(0);
    expect(g.allocUnbound()[1]).toBe(1);
  });

  it('answers -EFAULT for a struct outside RAM or straddling its end, writing nothing', () => {
    const { g, m } = booted();
    const before = Buffer.from(m.ram);
    for (const cmd of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14]) {
      expect(g.hypercall(0, 32, cmd, 0x1000n)).toBe(E.EFAULT);
      expect(g.hypercall(0, 32, cmd, RAM + BigInt(m.ram.byteLength) - 1n)).toBe(E.EFAULT);
      expect(g.hypercall(0, 32, cmd, 0xffff_ffff_ffff_fff0n)).toBe(E.EFAULT);
    }
    expect(Buffer.compare(before, Buffer.from(m.ram))).toBe(0);
  });

  it('hands out ports up to max_evtchn_port, then -ENOSPC (xsa-317 style)', () => {
    const { g } = booted({ maxPort: 4095 });
    let last = 0;
    for (let i = 1; i < 5000; i++) {
      const [rc, p] = g.allocUnbound();
      if (rc !== 0) {
        expect(rc).toBe(E.ENOSPC);
        break;
      }
      last = p;
    }
    expect(last).toBe(4095);
    const small = booted({ maxPort: 3 });
    small.g.allocUnbound(); small.g.allocUnbound(); small.g.allocUnbound();
    expect(small.g.allocUnbound()[0]).toBe(E.ENOSPC);
    expect(() => setMaxEvtchnPort(small.vm, 10)).toThrow(/fixed once the VM has run/);
  });
});

describe('the VMM as domain 0', () => {
  it('offers a port the guest binds, raises it, and hears the guest send', () => {
    const { g, m, vm, notified, vi } = booted();
    const vp = vmmAllocUnbound(vm);
    const [rc, lp] = g.bindInterdomain(0, vp);
    expect(rc).toBe(0);
    expect(g.status(lp)).toEqual([0, 2, 0, 0, vp]);
    m.memory.writeU32(shGpa + BigInt(SHINFO.EVTCHN_PENDING), 0);
    m.memory.writeU32(vi(0), 0);
    m.memory.writeU64(vi(0) + 8n, 0n); // the guest consumed its selector too
    vmmSend(vm, vp);
    expect(pending(m, lp)).toBe(1);
    expect(upcall(m, vi(0))).toBe(1);
    expect(g.send(lp)).toBe(0);
    expect(notified).toEqual([[vp, lp]]);
    expect(g.close(lp)).toBe(0);
    expect(g.bindInterdomain(0, vp)[0]).toBe(0); // the VMM's port waits again
    vmmClose(vm, vp);
    expect(() => vmmSend(vm, vp)).toThrow(XenError);
  });

  it('binds to a guest port made for domain 0 and raises it with raiseEvent', () => {
    const { g, m, vm } = booted();
    const [, p] = g.allocUnbound(0);
    expect(() => raiseEvent(vm, p)).toThrow(/not connected to the VMM/);
    vmmBindInterdomain(vm, p);
    raiseEvent(vm, p);
    expect(pending(m, p)).toBe(1);
    expect(() => vmmBindInterdomain(vm, p)).toThrow(XenError);
    expect(() => raiseEvent(vm, 5000)).toThrow(XenError);
    expect(xenDomain(vm).abi).toBe('2l');
  });
});
