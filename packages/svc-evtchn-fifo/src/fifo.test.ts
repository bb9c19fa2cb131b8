import { describe, expect, it } from 'vitest';
import { Hypervisor, planRestore, saveSnapshot, SnapshotError, type Vm } from '@plugvisor/core';
import { checkServiceConformance, MemoryMachine } from '@plugvisor/core/testing';
import { createXenService, raiseEvent, setMaxEvtchnPort, vmmAllocUnbound, vmmBindInterdomain, xenDomain } from '@plugvisor/svc-xen';
import { XenGuest } from '@plugvisor/svc-xen/testing';
import { BUSY_BIT, createEvtchnFifoService, LINKED_BIT, MASKED_BIT, PENDING_BIT, type FifoDomain } from './index.js';
import { LinuxFifoGuest } from './testing/index.js';

const E = { ENOENT: -2, EFAULT: -14, EACCES: -13, EINVAL: -22, ENOSPC: -28, ENOSYS: -38, EOPNOTSUPP: -95 };
const RAM = 0x4000_0000n;
const gfn = (page: number) => (RAM >> 12n) + BigInt(page);
const RAM_SIZE = 2 << 20; // 512 pages
const SHINFO_PAGE = 1, VCPU_INFO_PAGE = 2, CB_PAGE = 4, ARRAY_PAGE = 16;

const withFifo = (name = 'fifo') => Hypervisor.compose([createXenService(), createEvtchnFifoService()], { name });
const without = (name = 'plain') => Hypervisor.compose([createXenService()], { name });

function boot(hv: Hypervisor, opts: { fifo?: boolean; vcpus?: number; maxPort?: number; machine?: MemoryMachine; vm?: Vm } = {}) {
  const vm = opts.vm ?? hv.createVm({ features: hv.catalog.features.has('evtchn-fifo') ? { 'evtchn-fifo': opts.fifo ?? true } : {} });
  if (opts.maxPort) setMaxEvtchnPort(vm, opts.maxPort);
  const m = opts.machine ?? new MemoryMachine(opts.vcpus ?? 2, RAM, RAM_SIZE);
  vm.attachMachine(m);
  vm.start();
  const g = new XenGuest(vm, m);
  const got: Array<[number, number]> = [];
  const linux = new LinuxFifoGuest(g, m, (vcpu, port) => void got.push([vcpu, port]));
  for (let i = 0; i < m.vcpuCount; i++) linux.setVcpuInfo(i, gfn(VCPU_INFO_PAGE), i * 64);
  return { vm, m, g, linux, got };
}

/** Linux's boot: shared_info, vcpu_info per vCPU, then the FIFO probe on vCPU 0 (fallback on error). */
function linuxBoot(s: ReturnType<typeof boot>): 'fifo' | '2l' {
  expect(s.g.mapSharedInfo(gfn(SHINFO_PAGE))).toBe(0);
  for (let i = 0; i < s.m.vcpuCount; i++) expect(s.g.registerVcpuInfo(i, gfn(VCPU_INFO_PAGE), i * 64)).toBe(0);
  // registration raised a deliberate spurious upcall: the guest takes it (nothing to do yet)
  for (let i = 0; i < s.m.vcpuCount; i++) expect(s.linux.upcall(i)).toBe(true);
  if (s.linux.initControlBlock(0, gfn(CB_PAGE)) < 0) return '2l';
  for (let i = 1; i < s.m.vcpuCount; i++) expect(s.linux.initControlBlock(i, gfn(CB_PAGE + i))).toBe(0);
  expect(s.linux.expandArray(gfn(ARRAY_PAGE))).toBe(0);
  return 'fifo';
}

/** A VMM-connected guest port, unmasked, at `priority`. */
function vmmPort(s: ReturnType<typeof boot>, priority?: number): number {
  const [rc, p] = s.g.allocUnbound(0);
  expect(rc).toBe(0);
  vmmBindInterdomain(s.vm, p);
  if (priority !== undefined) expect(s.linux.setPriority(p, priority)).toBe(0);
  s.linux.unmask(p);
  return p;
}

const drain = (s: ReturnType<typeof boot>) => {
  for (let guard = 0; guard < 10; guard++) {
    let any = false;
    for (let i = 0; i < s.m.vcpuCount; i++) any = s.linux.upcall(i) || any;
    if (!any) return;
  }
};

describe('svc-evtchn-fifo: surface and gating', () => {
  it('conforms and requires svc-xen', () => {
    expect(checkServiceConformance(createEvtchnFifoService(), { companions: [createXenService()] })).toEqual([]);
    expect(() => Hypervisor.compose([createEvtchnFifoService()])).toThrow(/svc-xen/);
  });

  it('answers -ENOSYS for the three FIFO ops with the feature off or the package absent; Linux falls back to 2-level', () => {
    for (const s of [boot(withFifo(), { fifo: false }), boot(without())]) {
      expect(linuxBoot(s)).toBe('2l');
      expect(s.g.evtchn(0, 12, 8, [[0, 8, gfn(ARRAY_PAGE)]])).toBe(E.ENOSYS);
      expect(s.g.evtchn(0, 13, 8, [[0, 4, 1], [4, 4, 3]])).toBe(E.ENOSYS);
      expect(xenDomain(s.vm).abi).toBe('2l');
    }
    const on = boot(withFifo());
    expect(linuxBoot(on)).toBe('fifo');
    expect(xenDomain(on.vm).abi).toBe('fifo');
  });
});

describe('init_control, expand_array, set_priority: every check', () => {
  it('init_control: ENOENT, offset and alignment, bad gfn leaves no state (xsa-188), EFAULT, repeat, link_bits', () => {
    const s = boot(withFifo());
    const init = (g: bigint, offset: number, vcpu: number) => s.g.evtchn(0, 11, 24, [[0, 8, g], [8, 4, offset], [12, 4, vcpu]]);
    expect(init(gfn(CB_PAGE), 0, 2)).toBe(E.ENOENT);
    expect(init(gfn(CB_PAGE), 4025, 0)).toBe(E.EINVAL);
    expect(init(gfn(CB_PAGE), 4028, 0)).toBe(E.EINVAL);
    expect(init(gfn(CB_PAGE), 12, 0)).toBe(E.EINVAL);
    expect(init(-2n, 0, 0)).toBe(E.EINVAL);
    expect(s.g.u32(s.g.scratch + 16n) & 0xff).toBe(0); // link_bits not copied out on failure
    expect(s.g.evtchn(0, 12, 8, [[0, 8, gfn(ARRAY_PAGE)]])).toBe(E.EOPNOTSUPP);
    expect(s.g.hypercall(0, 32, 11, 0x10n)).toBe(E.EFAULT);
    expect(init(gfn(CB_PAGE), 4024, 0)).toBe(0);
    expect(s.g.u32(s.g.scratch + 16n) & 0xff).toBe(17);
    expect(init(gfn(CB_PAGE + 1), 0, 0)).toBe(E.EINVAL); // vCPU 0 has one already
    expect(init(gfn(CB_PAGE + 1), 8, 1)).toBe(0);
  });

  it('expand_array: one page a call, EINVAL for a bad gfn, ENOSPC after 128 pages; ports beyond 4095 then exist', () => {
    const s = boot(withFifo(), { maxPort: 4200 });
    linuxBoot(s);
    expect(s.g.evtchn(0, 12, 8, [[0, 8, 0x7777777n]])).toBe(E.EINVAL);
    for (let k = 1; k < 128; k++) expect(s.linux.expandArray(gfn(ARRAY_PAGE + k))).toBe(0);
    expect(s.linux.expandArray(gfn(300))).toBe(E.ENOSPC);
    expect(s.vm.stateOf<FifoDomain>('@plugvisor/svc-evtchn-fifo').numEvtchns).toBe(131072);
    let last = 0;
    for (;;) {
      const [rc, p] = s.g.allocUnbound();
      if (rc !== 0) {
        expect(rc).toBe(E.ENOSPC);
        break;
      }
      last = p;
    }
    expect(last).toBe(4200); // FIFO lifts 2-level's 4096; max_evtchn_port still caps
  });

  it('set_priority: EINVAL port, ENOSYS in 2-level, EACCES unbound port, EINVAL priority', () => {
    const s = boot(withFifo());
    expect(s.g.mapSharedInfo(gfn(SHINFO_PAGE))).toBe(0);
    const [, p] = s.g.allocUnbound();
    expect(s.linux.setPriority(99, 1)).toBe(E.EINVAL);
    expect(s.linux.setPriority(p, 1)).toBe(E.ENOSYS);
    expect(s.linux.initControlBlock(0, gfn(CB_PAGE))).toBe(0);
    expect(s.linux.setPriority(40, 1)).toBe(E.EACCES);
    expect(s.linux.setPriority(0, 1)).toBe(E.EACCES);
    expect(s.linux.setPriority(p, 16)).toBe(E.EINVAL);
    expect(s.linux.setPriority(p, 15)).toBe(0);
  });
});

describe('raising: Xen algorithm against the Linux consumer', () => {
  it('delivers by priority, FIFO within a priority, with one upcall per newly ready queue', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const lo = vmmPort(s, 9), hi = vmmPort(s, 2), mid = vmmPort(s), hi2 = vmmPort(s, 2);
    for (const p of [lo, mid, hi, lo, hi2]) raiseEvent(s.vm, p);
    expect(s.m.interrupts[0]!.has(31)).toBe(true);
    drain(s);
    expect(s.got.map(([, p]) => p)).toEqual([hi, hi2, mid, lo]); // lo raised twice while pending: once
  });

  it('keeps a masked port pending and unlinked; unmask relinks and delivers it', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const p = vmmPort(s);
    s.linux.mask(p);
    raiseEvent(s.vm, p);
    const [w, i] = s.linux.word(p);
    expect(Atomics.load(w, i) & (PENDING_BIT | MASKED_BIT | LINKED_BIT)).toBe(PENDING_BIT | MASKED_BIT);
    expect(s.m.interrupts[0]!.has(31)).toBe(false);
    s.linux.unmask(p); // pending → EVTCHNOP_unmask
    drain(s);
    expect(s.got).toEqual([[0, p]]);
  });

  it('close while linked: the port stays LINKED and busy until consumed, then is reusable', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const a = vmmPort(s), b = vmmPort(s);
    raiseEvent(s.vm, a);
    raiseEvent(s.vm, b);
    expect(s.g.close(a)).toBe(0);
    const [w, i] = s.linux.word(a);
    expect(Atomics.load(w, i) & (PENDING_BIT | LINKED_BIT)).toBe(LINKED_BIT);
    expect(s.g.allocUnbound()[1]).toBe(b + 1); // a is busy (LINKED): skipped
    drain(s);
    expect(s.got).toEqual([[0, b]]); // a was not pending any more: no handler
    expect(s.g.allocUnbound()[1]).toBe(a);
  });

  it('IPIs between vCPUs go to the target vCPU queue; bind_vcpu moves a port', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const [, ipi] = s.g.bindIpi(1);
    s.linux.unmask(ipi);
    expect(s.g.send(ipi, 0)).toBe(0);
    expect(s.m.interrupts[1]!.has(31)).toBe(true);
    expect(s.m.interrupts[0]!.has(31)).toBe(false);
    drain(s);
    const p = vmmPort(s);
    expect(s.g.bindVcpu(p, 1)).toBe(0);
    raiseEvent(s.vm, p);
    drain(s);
    expect(s.got).toEqual([[1, ipi], [1, p]]);
  });

  it('Xen clears BUSY when it links onto a tail word', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const a = vmmPort(s), b = vmmPort(s);
    raiseEvent(s.vm, a);
    const [w, i] = s.linux.word(a);
    Atomics.or(w, i, BUSY_BIT);
    raiseEvent(s.vm, b);
    expect(Atomics.load(w, i) & (BUSY_BIT | 0x1ffff)).toBe(b);
  });

  it('ports pending at the 2-level → FIFO switch are re-raised when their page arrives', () => {
    const s = boot(withFifo());
    expect(s.g.mapSharedInfo(gfn(SHINFO_PAGE))).toBe(0);
    for (let i = 0; i < 2; i++) expect(s.g.registerVcpuInfo(i, gfn(VCPU_INFO_PAGE), i * 64)).toBe(0);
    const [, p] = s.g.allocUnbound(0);
    vmmBindInterdomain(s.vm, p);
    raiseEvent(s.vm, p); // 2-level pending bit
    expect(s.linux.initControlBlock(0, gfn(CB_PAGE))).toBe(0);
    expect(s.linux.initControlBlock(1, gfn(CB_PAGE + 1))).toBe(0);
    raiseEvent(s.vm, p); // no page yet: the internal flag
    const f = s.vm.stateOf<FifoDomain>('@plugvisor/svc-evtchn-fifo');
    expect(f.pending[p]).toBe(1);
    expect(s.linux.expandArray(gfn(ARRAY_PAGE))).toBe(0);
    // Linux pre-fills MASKED, so the re-raise leaves it pending and masked; unmask delivers it
    s.linux.unmask(p);
    for (let i = 0; i < 2; i++) s.m.interrupts[i]!.add(31);
    drain(s);
    expect(s.got).toEqual([[0, p]]);
  });

  it('EVTCHNOP_reset returns the domain to 2-level; init_control works again', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    vmmPort(s);
    expect(s.g.reset()).toBe(0);
    expect(xenDomain(s.vm).abi).toBe('2l');
    expect(s.linux.setPriority(1, 3)).toBe(E.ENOSYS); // port 1 still exists (closed): 2-level has no set_priority
    expect(s.linux.setPriority(99, 3)).toBe(E.EINVAL);
    const [, p] = s.g.allocUnbound();
    expect(s.linux.setPriority(p, 3)).toBe(E.ENOSYS);
    expect(s.g.evtchn(0, 12, 8, [[0, 8, gfn(ARRAY_PAGE)]])).toBe(E.EOPNOTSUPP);
    expect(s.linux.initControlBlock(0, gfn(CB_PAGE))).toBe(0);
    expect(xenDomain(s.vm).abi).toBe('fifo');
  });

  it('delivers a burst of 100k VMM raises over 64 ports in 4 priorities with no loss or duplication', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const ports = Array.from({ length: 64 }, (_, k) => vmmPort(s, k % 4));
    const counts = new Map<number, number>();
    const linux = new LinuxFifoGuest(s.g, s.m, (_v, port) => void counts.set(port, (counts.get(port) ?? 0) + 1));
    Object.assign(linux, { cb: s.linux.cb, localHead: s.linux.localHead, pages: s.linux.pages });
    linux.setVcpuInfo(0, gfn(VCPU_INFO_PAGE), 0);
    let raised = 0;
    for (let n = 0; n < 100_000; n++) {
      raiseEvent(s.vm, ports[(n * 7) % 64]!);
      raised++;
      linux.upcall(0); // the guest takes every interrupt as it comes
    }
    linux.upcall(0);
    let total = 0;
    for (const c of counts.values()) total += c;
    expect(total).toBe(raised); // each raise found its port consumed already: one delivery each
    expect(counts.size).toBe(64);
  });
});

describe('snapshots', () => {
  const image = (m: MemoryMachine) => ({ arch: 'arm64' as const, description: { board: 'memory' }, vcpus: m.vcpus.map(() => new Uint8Array(1)), memory: m.memory.regions() });
  const restore = (bytes: Uint8Array, hv: Hypervisor, vcpus = 2) => {
    const plan = planRestore(bytes, hv, { arch: 'arm64' });
    const m = new MemoryMachine(vcpus, RAM, RAM_SIZE);
    plan.memory[0]!.restoreInto(m.ram);
    return { plan, m };
  };

  it('a FIFO domain round-trips: queues, priorities and tails survive and delivery continues in order', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const a = vmmPort(s, 5), b = vmmPort(s, 1), c = vmmPort(s, 5);
    raiseEvent(s.vm, a);
    raiseEvent(s.vm, c);
    const bytes = saveSnapshot(s.vm, image(s.m));
    const { plan, m } = restore(bytes, withFifo('fifo-2'));
    const r = boot(withFifo(), { vm: plan.vm, machine: m });
    Object.assign(r.linux, { cb: [0, 1].map((i) => new Int32Array(m.ram.buffer, (CB_PAGE + i) * 4096, 1024)), localHead: [new Uint32Array(16), new Uint32Array(16)], pages: [new Int32Array(m.ram.buffer, ARRAY_PAGE * 4096, 1024)] });
    expect(xenDomain(r.vm).abi).toBe('fifo');
    raiseEvent(r.vm, b);
    raiseEvent(r.vm, c); // already pending and linked: nothing new
    r.m.interrupts[0]!.add(31);
    drain(r);
    expect(r.got.map(([, p]) => p)).toEqual([b, a, c]);
    expect(r.linux.setPriority(a, 0)).toBe(0);
  });

  it('refuses a FIFO domain on a build without the package, naming it; a 2-level domain restores and still gets -ENOSYS', () => {
    const s = boot(withFifo());
    linuxBoot(s);
    const bytes = saveSnapshot(s.vm, image(s.m));
    try {
      planRestore(bytes, without(), { arch: 'arm64' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      expect((e as Error).message).toMatch(/feature 'evtchn-fifo' is enabled in the VM but the build has no @plugvisor\/svc-evtchn-fifo/);
    }
    // The hibernation case: a guest on a build without FIFO, restored on one with FIFO.
    const old = boot(without());
    expect(linuxBoot(old)).toBe('2l');
    const [, p] = old.g.allocUnbound(0);
    vmmBindInterdomain(old.vm, p);
    const { plan, m } = restore(saveSnapshot(old.vm, image(old.m)), withFifo('new'));
    const r = boot(withFifo(), { vm: plan.vm, machine: m });
    expect(r.vm.abi.isEnabled('evtchn-fifo')).toBe(false);
    expect(r.linux.initControlBlock(0, gfn(CB_PAGE))).toBe(E.ENOSYS);
    m.memory.writeU64(RAM + BigInt(VCPU_INFO_PAGE * 4096 + 8), 0n); // a 2-level guest xchg'd its selector
    raiseEvent(r.vm, p);
    expect(m.memory.readU64(RAM + BigInt(VCPU_INFO_PAGE * 4096 + 8))).toBe(1n);
    expect(r.m.interrupts[0]!.has(31)).toBe(true); // still 2-level, still delivering
    expect(xenDomain(r.vm).abi).toBe('2l');
  });

  it('refuses corrupted FIFO state', () => {
    const svc = createEvtchnFifoService();
    expect(() => svc.state!.load({ active: false, pages: [1n], vcpus: [], ports: [] }, 1, undefined as never)).toThrow(/2-level domain with FIFO pages/);
    expect(() => svc.state!.load({ active: true, pages: [], vcpus: [[1n, 3, []]], ports: [] }, 1, undefined as never)).toThrow(/vcpus\[0\]/);
    expect(() => svc.state!.load({ active: true, pages: [], vcpus: [], ports: [[1, 16, 0, 0]] }, 1, undefined as never)).toThrow(/port entry/);
  });
});

describe('FIFO per-port fields are allocated lazily', () => {
  it('a VM that never switches to FIFO holds none; the first init_control allocates them, a reset keeps them', () => {
    const off = boot(withFifo(), { fifo: false });
    expect(linuxBoot(off)).toBe('2l');
    const f0 = off.vm.stateOf<FifoDomain>('@plugvisor/svc-evtchn-fifo');
    expect(f0.hasPortFields).toBe(false);
    expect(f0.priority.length + f0.pending.length + f0.lastq.length).toBe(0);

    const on = boot(withFifo());
    const f = on.vm.stateOf<FifoDomain>('@plugvisor/svc-evtchn-fifo');
    expect(f.hasPortFields).toBe(false); // opted in, but the guest has not asked yet
    expect(linuxBoot(on)).toBe('fifo');
    expect(f.priority.length).toBe(131072);
    expect(on.g.reset()).toBe(0);
    expect(f.hasPortFields).toBe(true);

    // a 2-level snapshot restores without them; a FIFO one with them
    const plain = planRestore(saveSnapshot(off.vm, { arch: 'arm64', description: {}, vcpus: [new Uint8Array(1), new Uint8Array(1)], memory: off.m.memory.regions() }), withFifo());
    expect(plain.vm.stateOf<FifoDomain>('@plugvisor/svc-evtchn-fifo').hasPortFields).toBe(false);
  });
});
