/**
 * A stand-in for the core's router in this package's tests: just enough SMCCC/PSCI to boot the
 * test guests (SMCCC_VERSION, PSCI CPU_ON / SYSTEM_OFF), the test-only vendor calls of
 * guests/src/test-calls.h, and a recognisable Xen answer. Real builds route through @plugvisor/core.
 */
import type { Conduit, Machine, VcpuContext } from '@plugvisor/core';
import type { TrapRouter } from '../traps.js';

export const TEST_GET_MODE = 0xc6000f01;
export const TEST_SET_IRQ = 0xc6000f02;
export const TEST_REPORT = 0xc6000f03;
/** x1 = guest-physical address, x2 = pages: the machine removes them (x0 = how many it removed). */
export const TEST_REMOVE_PAGES = 0xc6000f04;
/** x1 = guest-physical address, x2 = pages: the machine adds them back (x0 = how many). */
export const TEST_ADD_PAGES = 0xc6000f05;

/** A machine that can remove guest pages (Arm64Machine). */
interface PageMachine {
  removeGuestPages(gpa: bigint, count: number): number;
  addGuestPages(gpa: bigint, count: number): number;
}

export interface TestRouterOptions {
  mode?: number;
  /** Benchmark behaviour: any SMCCC id other than SYSTEM_OFF returns x0 + 1. */
  echoPlusOne?: boolean;
  /** Answer SYSTEM_OFF NOT_SUPPORTED instead (the guest then parks in WFI forever). */
  ignoreSystemOff?: boolean;
}

export class TestRouter implements TrapRouter {
  started = 0;
  readonly reports: bigint[] = [];
  readonly calls: { conduit: string; id: number; vcpu: number }[] = [];
  record = true;

  constructor(
    private readonly machine: Machine,
    private readonly options: TestRouterOptions = {},
  ) {}

  start(): void {
    this.started++;
  }

  dispatch(conduit: Conduit, vcpu: VcpuContext): void {
    const r = vcpu.regs;
    const id = conduit.functionId(r);
    if (this.options.echoPlusOne && id !== 0x84000008) {
      // x0 + 1 on u32 halves: no BigInt per trap
      const lo = r.u32[0]! + 1;
      r.u32[0] = lo >>> 0;
      if (lo > 0xffff_ffff) r.u32[1] = (r.u32[1]! + 1) >>> 0;
      return;
    }
    if (this.record) this.calls.push({ conduit: conduit.name, id, vcpu: vcpu.index });
    if (conduit.name === 'xen') {
      // op * 1000 + sum of the five arguments: proves x16 and x0..x4 arrived
      let sum = 0n;
      for (let i = 0; i < 5; i++) sum += r.get(i);
      r.set(0, BigInt(id) * 1000n + sum);
      return;
    }
    if (id === 0x84000008 && !this.options.ignoreSystemOff) {
      this.machine.systemEvent({ kind: 'off', vcpu: vcpu.index, data: [] });
      return;
    }
    switch (id) {
      case 0x80000000:
        r.set(0, 0x10001n);
        break;
      case 0xc4000003: {
        const target = this.machine.vcpuByAffinity(r.get(1));
        if (target < 0) r.setSigned(0, -2);
        else if (this.machine.powerState(target) !== 'off') r.setSigned(0, -4);
        else {
          this.machine.powerOn(target, r.get(2), r.get(3));
          r.set(0, 0n);
        }
        break;
      }
      case TEST_GET_MODE:
        r.set(0, BigInt(this.options.mode ?? 0));
        break;
      case TEST_SET_IRQ:
        this.machine.setInterrupt(Number(r.get(1)), Number(r.get(2)), r.get(3) !== 0n);
        r.set(0, 0n);
        break;
      case TEST_REPORT:
        this.reports.push(r.get(1));
        r.set(0, 0n);
        break;
      case TEST_REMOVE_PAGES:
      case TEST_ADD_PAGES: {
        const m = this.machine as unknown as PageMachine;
        const n = id === TEST_REMOVE_PAGES ? m.removeGuestPages(r.get(1), Number(r.get(2))) : m.addGuestPages(r.get(1), Number(r.get(2)));
        r.set(0, BigInt(n));
        break;
      }
      default:
        conduit.notSupported(r);
        return;
    }
    r.set(1, 0n);
    r.set(2, 0n);
    r.set(3, 0n);
  }
}
