import { defineService, packageVersion, type ServicePlugin, type VcpuContext, type Vm } from '@plugvisor/core';

/**
 * A test-only service the Xen test guests call over SMCCC (HVC #0) to talk to the test that
 * runs them: parameters in, reports out, synchronisation points where the test may raise
 * events or pause the machine, and a race-free "block until a word reaches a value". It stands
 * in for what a real guest would get from xenstore, a console and SCHEDOP_block. Function ids
 * are SMC64 fast calls in the vendor-specific hypervisor range (OEN 6, as machine-arm64's test
 * router uses); the feature is opt-in, so only VMs made by these tests see it.
 */
export const GUEST_TEST = '@plugvisor/guest-test';
export const TEST_CALL = Object.freeze({ PARAM: 0xc600_0f10, REPORT: 0xc600_0f11, SYNC: 0xc600_0f12, BLOCK: 0xc600_0f13 });

export interface Report {
  readonly tag: number;
  readonly a: bigint;
  readonly b: bigint;
  readonly vcpu: number;
}

/** Per-VM state: what the test set and what the guest said. Not carried by snapshots. */
export class GuestTestState {
  params: bigint[] = [];
  readonly reports: Report[] = [];
  /** Called for TEST_SYNC(tag, a, b); returns x0 for the guest. */
  onSync: (tag: number, a: bigint, b: bigint, vcpu: number) => number | bigint = () => 0;
  syncs = 0;
  blocks = 0;

  constructor(readonly vm: Vm) {}

  /** Reports with this tag, in order. */
  tagged(tag: number): Report[] {
    return this.reports.filter((r) => r.tag === tag);
  }
}

const ret = (v: VcpuContext, x0: bigint | number) => v.regs.set(0, BigInt.asUintN(64, BigInt(x0)));

export function createGuestTestService(): ServicePlugin<GuestTestState> {
  return defineService<GuestTestState>({
    name: GUEST_TEST,
    version: packageVersion(import.meta.url),
    description: 'Test-only calls for the Xen test guests (parameters, reports, sync points, block)',
    surface: {
      features: [{ name: 'guest-test', default: 'opt-in', description: 'test harness calls for the Xen test guests' }],
      calls: [
        { name: 'TEST_PARAM', conduit: 'smccc', id: TEST_CALL.PARAM, feature: 'guest-test' },
        { name: 'TEST_REPORT', conduit: 'smccc', id: TEST_CALL.REPORT, feature: 'guest-test' },
        { name: 'TEST_SYNC', conduit: 'smccc', id: TEST_CALL.SYNC, feature: 'guest-test' },
        { name: 'TEST_BLOCK', conduit: 'smccc', id: TEST_CALL.BLOCK, feature: 'guest-test' },
      ],
      // Declared so a restored VM gets a fresh one; it carries nothing.
      state: { id: 'guest-test', version: 1 },
    },
    state: {
      create: (vm) => new GuestTestState(vm),
      save: () => ({}),
      load: (_data, _schema, vm) => new GuestTestState(vm),
    },
    handlers: {
      TEST_PARAM: (v, b) => ret(v, b.state.params[Number(v.regs.get(1))] ?? 0n),
      TEST_REPORT: (v, b) => {
        const r = v.regs;
        b.state.reports.push({ tag: Number(r.get(1)), a: r.get(2), b: r.get(3), vcpu: v.index });
        ret(v, 0);
      },
      TEST_SYNC: (v, b) => {
        const r = v.regs;
        b.state.syncs++;
        ret(v, b.state.onSync(Number(r.get(1)), r.get(2), r.get(3), v.index));
      },
      // (u32 *addr, value): 0 if *addr >= value now, else park the vCPU until an interrupt (1).
      // The check and the park happen while the guest is stopped: no wake-up can be lost.
      TEST_BLOCK: (v, b) => {
        const addr = v.regs.get(1);
        const want = Number(v.regs.get(2) & 0xffff_ffffn);
        const mem = v.machine.memory;
        if (!mem.contains(addr, 4) || mem.readU32(addr) >>> 0 >= want) return ret(v, 0);
        b.state.blocks++;
        v.machine.idle(v.index);
        ret(v, 1);
      },
    },
  });
}
