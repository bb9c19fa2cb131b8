import type { Conduit, VcpuContext } from '@plugvisor/core';
import type { TrapRouter } from '../traps.js';

/**
 * A stand-in for the core's Vm in machine tests: rax = (rdi * 3 + 1) for every call, and a
 * record of (id, rdi) per call. `record = false` for benchmarks.
 */
export class TestRouter implements TrapRouter {
  readonly calls: { id: number; rdi: bigint }[] = [];
  record = true;
  started = 0;
  start(): void {
    this.started++;
  }
  dispatch(_conduit: Conduit, vcpu: VcpuContext): void {
    const r = vcpu.regs;
    if (this.record) this.calls.push({ id: r.u32[0]!, rdi: r.u64[5]! });
    r.u64[0] = BigInt.asUintN(64, r.u64[5]! * 3n + 1n);
  }
}
