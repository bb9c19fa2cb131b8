/**
 * One vCPU's EL1 generic timers (Arm ARM D11.2 "The AArch64 view of the Generic Timer"): the
 * EL1 physical timer (CNTP_CTL_EL0 / CNTP_CVAL_EL0 / CNTP_TVAL_EL0, PPI 30 on QEMU virt) and the
 * virtual timer (CNTV_*, PPI 27), emulated by the machine. Unicorn keeps the registers but never
 * fires a timer (QEMU's gt_recalc_timer has no QEMUTimer to arm there), so the vCPU's MRS/MSR
 * hooks hand these accesses here instead, and the machine asks `deadline` how long a vCPU may
 * run or sleep before its next interrupt.
 *
 * A plain state machine over a counter function (the vCPU's CNTPCT_EL0 / CNTVCT_EL0 at the
 * moment of the call), so it is tested without an engine.
 *
 *   CTL   bit 0 ENABLE, bit 1 IMASK (RW); bit 2 ISTATUS (RO): ENABLE and counter >= CVAL.
 *   CVAL  64-bit compare value.
 *   TVAL  reads (CVAL - counter) as a signed 32-bit value; a write sets CVAL = counter + sext(TVAL).
 * The interrupt line is ENABLE && !IMASK && ISTATUS, level-sensitive.
 */
export const enum TimerId {
  Physical = 0,
  Virtual = 1,
}

/**
 * The counter's frequency, CNTFRQ_EL0 as the guest reads it: Unicorn's CPU model counts in
 * QEMU's GTIMER_SCALE ticks of 16 ns (qemu target/arm/cpu.h; helper.c resets CNTFRQ_EL0 to
 * 1e9 / GTIMER_SCALE) = 62.5 MHz. The machine does not set it; its guest-ABI test reads it.
 */
export const COUNTER_HZ = 62_500_000;

/** QEMU virt's PPIs as INTIDs (hw/arm/virt.c ARCH_TIMER_NS_EL1_IRQ 14, ARCH_TIMER_VIRT_IRQ 11, + 16). */
export const TIMER_INTID: readonly [number, number] = Object.freeze([30, 27]);

const ENABLE = 1;
const IMASK = 2;
const ISTATUS = 4;

/** Which timer register an MRS/MSR names: CNTx_TVAL (op2 0), CNTx_CTL (1), CNTx_CVAL (2), with CRm 2 (physical) or 3 (virtual). */
export interface TimerRegister {
  readonly timer: TimerId;
  readonly reg: 'tval' | 'ctl' | 'cval';
}

/** Decodes an MRS/MSR encoding (op0 3, op1 3, CRn 14, CRm 2|3, op2 0..2), or undefined for any other register. */
export function timerRegister(op0: number, op1: number, crn: number, crm: number, op2: number): TimerRegister | undefined {
  if (op0 !== 3 || op1 !== 3 || crn !== 14 || (crm !== 2 && crm !== 3) || op2 > 2) return undefined;
  return { timer: crm === 2 ? TimerId.Physical : TimerId.Virtual, reg: op2 === 0 ? 'tval' : op2 === 1 ? 'ctl' : 'cval' };
}

export interface TimerState {
  /** [physical, virtual] CTL (ENABLE | IMASK) and CVAL. */
  ctl: [number, number];
  cval: [bigint, bigint];
}

export class GenericTimer {
  private readonly ctl: [number, number] = [0, 0];
  private readonly cval: [bigint, bigint] = [0n, 0n];

  constructor(
    /** The timer's counter now: CNTPCT_EL0 for Physical, CNTVCT_EL0 for Virtual. */
    private readonly counter: (t: TimerId) => bigint,
  ) {}

  read(r: TimerRegister): bigint {
    const t = r.timer;
    switch (r.reg) {
      case 'ctl':
        return BigInt(this.ctl[t] | (this.fired(t, this.counter(t)) ? ISTATUS : 0));
      case 'cval':
        return this.cval[t];
      case 'tval':
        return BigInt.asUintN(64, BigInt.asIntN(32, this.cval[t] - this.counter(t)));
    }
  }

  write(r: TimerRegister, value: bigint): void {
    const t = r.timer;
    switch (r.reg) {
      case 'ctl':
        this.ctl[t] = Number(value & BigInt(ENABLE | IMASK));
        return;
      case 'cval':
        this.cval[t] = BigInt.asUintN(64, value);
        return;
      case 'tval':
        this.cval[t] = BigInt.asUintN(64, this.counter(t) + BigInt.asIntN(32, value));
        return;
    }
  }

  private fired(t: TimerId, now: bigint): boolean {
    return (this.ctl[t] & ENABLE) !== 0 && now >= this.cval[t];
  }

  /** The timer's interrupt line: ENABLE, not IMASK, and the counter reached CVAL. */
  line(t: TimerId): boolean {
    return (this.ctl[t] & (ENABLE | IMASK)) === ENABLE && this.counter(t) >= this.cval[t];
  }

  /**
   * Counter ticks until an enabled, unmasked timer's line next rises, or undefined if none will
   * (none armed, or every armed one already fired: its line is high, nothing more will happen).
   */
  ticksToNext(): bigint | undefined {
    let best: bigint | undefined;
    for (const t of [TimerId.Physical, TimerId.Virtual]) {
      if ((this.ctl[t] & (ENABLE | IMASK)) !== ENABLE) continue;
      const now = this.counter(t);
      if (this.cval[t] <= now) continue;
      const left = this.cval[t] - now;
      if (best === undefined || left < best) best = left;
    }
    return best;
  }

  /** Is an enabled, unmasked timer waiting for its deadline or already firing? (The vCPU then runs in slices.) */
  armed(): boolean {
    return (this.ctl[0] & (ENABLE | IMASK)) === ENABLE || (this.ctl[1] & (ENABLE | IMASK)) === ENABLE;
  }

  save(): TimerState {
    return { ctl: [this.ctl[0], this.ctl[1]], cval: [this.cval[0], this.cval[1]] };
  }

  restore(s: TimerState): void {
    this.ctl[0] = s.ctl[0] & (ENABLE | IMASK);
    this.ctl[1] = s.ctl[1] & (ENABLE | IMASK);
    this.cval[0] = BigInt.asUintN(64, s.cval[0]);
    this.cval[1] = BigInt.asUintN(64, s.cval[1]);
  }
}
