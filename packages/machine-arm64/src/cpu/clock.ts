/**
 * The generic timer's counters as a paravirtual clock source (KVM's PTP hypercall,
 * `kvm_ptp_get_time`): the host wall clock and the guest-visible virtual or physical counter,
 * sampled together.
 *
 * The counters are read through Unicorn's CP_REG interface, which calls the same read function
 * an `mrs x0, cntvct_el0` / `mrs x0, cntpct_el0` in the guest does (QEMU `gt_virt_cnt_read` /
 * `gt_cnt_read`: the host's monotonic clock / 16 ns, minus CNTVOFF_EL2 for the virtual one), so
 * the value is exactly what the guest would have read at that instant.
 */
import type { SysReg, UcEngine } from '../ffi/unicorn.js';

export const CNTPCT_EL0: SysReg = Object.freeze({ name: 'CNTPCT_EL0', op0: 3, op1: 3, crn: 14, crm: 0, op2: 1 });
export const CNTVCT_EL0: SysReg = Object.freeze({ name: 'CNTVCT_EL0', op0: 3, op1: 3, crn: 14, crm: 0, op2: 2 });

export interface ClockSample {
  /** Host CLOCK_REALTIME, ns since the Unix epoch. */
  readonly wallClockNs: bigint;
  /** The guest-visible counter (CNTVCT_EL0 or CNTPCT_EL0) at the same instant. */
  readonly counter: bigint;
}

// CLOCK_REALTIME with sub-microsecond resolution: the performance time origin (a realtime
// instant, µs-precise) plus the monotonic performance.now(). If the system clock is stepped
// while we run, the sum drifts from CLOCK_REALTIME; Date.now() (ms, always realtime) notices a
// difference above 2 ms and the origin is re-anchored to it.
const origin = performance.timeOrigin;
let offsetNs = BigInt(Math.floor(origin)) * 1_000_000n + BigInt(Math.round((origin % 1) * 1e6));
const REANCHOR_MS = 2;

/** Host CLOCK_REALTIME in ns since the Unix epoch. */
export function realtimeNs(): bigint {
  const sinceOrigin = BigInt(Math.round(performance.now() * 1e6));
  const ns = offsetNs + sinceOrigin;
  const ms = Date.now();
  const drift = Number(ns / 1_000_000n) - ms;
  if (drift > REANCHOR_MS || drift < -REANCHOR_MS) {
    offsetNs = BigInt(ms) * 1_000_000n - sinceOrigin;
    return offsetNs + sinceOrigin;
  }
  return ns;
}

/**
 * Reads `counter` on `engine` (the vCPU whose view is wanted) and the wall clock together: the
 * clock is read just before and just after the counter and the midpoint is returned.
 */
export function sampleClock(engine: UcEngine, counter: 'virtual' | 'physical'): ClockSample {
  const before = realtimeNs();
  const value = engine.readSys(counter === 'virtual' ? CNTVCT_EL0 : CNTPCT_EL0);
  const after = realtimeNs();
  return { wallClockNs: before + (after - before) / 2n, counter: value };
}
