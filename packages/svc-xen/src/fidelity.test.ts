import { describe, expect, it } from 'vitest';
import { Hypervisor, type CapabilityName, type MachineCapabilities, type StateValue } from '@plugvisor/core';
import { MemoryMachine } from '@plugvisor/core/testing';
import { createXenService, SHINFO, SVC_XEN, XENMAPSPACE_dev_mmio, XEN_FIDELITY, xenDomain, type XenDomain } from './index.js';
import { loadDomain, saveDomain } from './state.js';
import { XenGuest } from './testing/index.js';

const RAM = 0x4000_0000n;
const SHINFO_GFN = (RAM >> 12n) + 8n;
const WALL_NS = 1_764_000_000_123_456_789n; // 1764000000 s and 123456789 ns past the Unix epoch
const WALL_NS_HI = (5n << 32n) * 1_000_000_000n + 7n; // seconds past 2^32 (year 2650): wc_sec_hi = 5

/** A MemoryMachine with a host wall clock (arm64's `counter-clock`), or without one. */
class ClockMachine extends MemoryMachine {
  constructor(readonly wallNs: bigint | null) {
    super(2, RAM, 1 << 20);
  }
  override capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    if (name === 'counter-clock' && this.wallNs !== null) {
      const wallClockNs = this.wallNs;
      return { sample: () => ({ wallClockNs, counter: 0n }) } as unknown as MachineCapabilities[K];
    }
    return super.capability(name);
  }
}

function domain(features: Record<string, boolean>, wallNs: bigint | null = WALL_NS) {
  const hv = Hypervisor.compose([createXenService()], { name: 'xen-fidelity-test' });
  const vm = hv.createVm({ features });
  const m = new ClockMachine(wallNs);
  return { hv, vm, m };
}

/** Maps shared_info as a guest does and reads its wallclock fields from guest RAM. */
function wallclock(vm: ReturnType<typeof domain>['vm'], m: MemoryMachine) {
  vm.attachMachine(m);
  vm.start();
  const g = new XenGuest(vm, m);
  expect(g.mapSharedInfo(SHINFO_GFN)).toBe(0);
  const at = (off: number) => m.memory.readU32(SHINFO_GFN * 4096n + BigInt(off));
  return { version: at(SHINFO.WC_VERSION), sec: at(SHINFO.WC_SEC), nsec: at(SHINFO.WC_NSEC), hi: at(SHINFO.WC_SEC_HI), g };
}

describe('shared_info wallclock (update_domain_wallclock_time at domain creation)', () => {
  it('without xen-fidelity: all four fields stay 0, as svc-xen 1.0 left them', () => {
    const { vm, m } = domain({});
    expect(wallclock(vm, m)).toMatchObject({ version: 0, sec: 0, nsec: 0, hi: 0 });
  });

  it("with it: wc_version 2 and the machine's host UTC split into wc_sec / wc_nsec / wc_sec_hi", () => {
    const a = domain({ [XEN_FIDELITY]: true });
    expect(wallclock(a.vm, a.m)).toMatchObject({ version: 2, sec: Number(WALL_NS / 1_000_000_000n), nsec: 123_456_789, hi: 0 });
    const b = domain({ [XEN_FIDELITY]: true }, WALL_NS_HI);
    expect(wallclock(b.vm, b.m)).toMatchObject({ version: 2, sec: 0, nsec: 7, hi: 5 });
  });

  it('a machine without a host clock: wc_version 2, time 0 (Xen before dom0 ever set the time)', () => {
    const { vm, m } = domain({ [XEN_FIDELITY]: true }, null);
    expect(wallclock(vm, m)).toMatchObject({ version: 2, sec: 0, nsec: 0, hi: 0 });
  });

  it('a new domain snapshotted before it met its machine still gets it; a loaded older domain does not', () => {
    const { vm } = domain({ [XEN_FIDELITY]: true });
    const d = vm.stateOf<XenDomain>(SVC_XEN); // no machine yet: nothing synced
    const saved = saveDomain(d) as Record<string, StateValue>;
    expect(saved.wallclockPending).toBe(true);

    const restored = domain({ [XEN_FIDELITY]: true });
    const loaded = loadDomain(saved, restored.vm, d.hooks);
    expect(loaded.wallclockPending).toBe(true);
    restored.vm.attachMachine(restored.m);
    loaded.sync(); // meets its machine: Xen's page (still the host page) gets the wallclock
    expect(loaded.shinfo[SHINFO.WC_VERSION / 4]).toBe(2);
    expect(loaded.wallclockPending).toBe(false);
    const { wallclockPending: _, ...older } = saved;
    expect(loadDomain(older, restored.vm, d.hooks).wallclockPending).toBe(false);
    expect(() => loadDomain({ ...saved, wallclockPending: 1 }, restored.vm, d.hooks)).toThrow(/wallclockPending/);

    // once written, it is not pending any more and not written again
    const { vm: vm2, m: m2 } = domain({ [XEN_FIDELITY]: true });
    expect(wallclock(vm2, m2).version).toBe(2);
    expect((saveDomain(xenDomain(vm2)) as Record<string, StateValue>).wallclockPending).toBeUndefined();
  });
});

describe('add_to_physmap(XENMAPSPACE_dev_mmio) from the domU (xatp_permission_check)', () => {
  const devMmio = (features: Record<string, boolean>, domid: number) => {
    const { vm, m } = domain(features);
    vm.attachMachine(m);
    vm.start();
    const g = new XenGuest(vm, m);
    const arg = g.struct(24, [
      [0, 2, domid],
      [4, 4, XENMAPSPACE_dev_mmio],
      [8, 8, 0x9000n],
      [16, 8, 0x50000n],
    ]);
    return g.hypercall(0, 12, 7, arg);
  };
  it('without xen-fidelity: -ENOSYS into itself, -EPERM into domain 0 (svc-xen 1.0)', () => {
    expect(devMmio({}, 0x7ff0)).toBe(-38);
    expect(devMmio({}, 0)).toBe(-1);
  });
  it("with it: -EACCES for both, Xen's answer before XSM is asked", () => {
    expect(devMmio({ [XEN_FIDELITY]: true }, 0x7ff0)).toBe(-13);
    expect(devMmio({ [XEN_FIDELITY]: true }, 0)).toBe(-13);
  });
});
