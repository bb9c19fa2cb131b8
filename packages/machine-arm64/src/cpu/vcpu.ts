/**
 * One arm64 vCPU: a Unicorn engine over the shared RAM, its register transfer for traps, and
 * the architectural operations the hypervisor performs on it (reset, exception entry, state
 * save/restore).
 *
 * How guest state is entered (reset, CPU_ON, restore, a host-delivered exception). With the CPU
 * internals (ffi/unicorn.ts) the registers are written and QEMU's cached translation flags
 * (`hflags`: current EL, MMU index, TBI, ...) rebuilt with `arm_rebuild_hflags`, which Unicorn
 * does not do for registers written from outside. Without them, every change of exception level
 * goes through a one-instruction EL3 trampoline (`eret` in a private ROM page; an exception
 * return recomputes the flags): SPSR_EL3/ELR_EL3 hold the target PSTATE/PC, the CPU is put at
 * EL3 and runs that `eret`, stopping exactly at the target PC (`until`), with SCTLR_EL1.M held
 * at 0 meanwhile so the fetch is untranslated; afterwards SCTLR_EL1 is restored and the TLB
 * flushed. That path cannot enter EL0 or a virtual address the identity map lacks.
 *
 * How the vCPU is configured (invisible to the guest): SCR_EL3 = NS | HCE | RW | API | APK —
 * EL1 is Non-secure AArch64 like a KVM guest, HVC traps to the hypervisor as interrupt 11 with
 * PC past it (QEMU target/arm takes HVC/SMC with the return address after the instruction: no
 * PC write), pointer authentication does not trap; HCR_EL2 = RW | IMO | API | APK, plus TID3 and
 * TPU with the CPU internals (see HCR_BASE and emulateEl2Trap); VMPIDR_EL2 = the KVM-style MPIDR
 * (a Non-secure EL1 read of MPIDR_EL1 returns VMPIDR_EL2, so each engine shows its own affinity).
 */
import type { VcpuContext, Machine } from '@plugvisor/core';
import { RegisterFile } from '@plugvisor/core';
import type { Arm64VcpuState } from './state.js';
import { Reg, WINDOW_PC, xReg, type CpuInternals, type RegBatch, type SysReg, type UcEngine } from '../ffi/unicorn.js';
import type { TrapPath } from '../traps.js';
import { compileWindowRoute, maskRegisters, type WindowRoute } from './transfer.js';
import { Layout, entryProblem } from '../board/layout.js';
import { GicCpuInterface } from '../devices/gicc.js';
import { GenericTimer, TIMER_INTID, TimerId, timerRegister } from '../devices/generic-timer.js';
import { CNTPCT_EL0, CNTVCT_EL0 } from './clock.js';
import { GuestFault } from '../errors.js';
import {
  HCR_API,
  HCR_APK,
  HCR_IMO,
  HCR_RW,
  HCR_TID3,
  HCR_TPU,
  HCR_VI,
  HCR_VM,
  MODE_EL1H,
  MODE_EL3H,
  PSTATE_DAIF,
  PSTATE_I,
  PSTATE_PAN,
  PSTATE_SSBS,
  SAVED_SYSREGS,
  SCR_API,
  SCR_APK,
  SCR_HCE,
  SCR_NS,
  SCR_RW,
  SCTLR_DSSBS,
  SCTLR_EE,
  SCTLR_M,
  SCTLR_SPAN,
  Sys,
} from './sysregs.js';

/** Bit 31 of MPIDR_EL1 is RES1; U (bit 30) = 0: a multiprocessor system. */
export const MPIDR_RES1 = 1n << 31n;
/** MPIDR affinity fields Aff3 (39:32), Aff2 (23:16), Aff1 (15:8), Aff0 (7:0). */
export const MPIDR_AFF_MASK = 0xff_00ff_ffffn;

/** KVM's vCPU-index -> MPIDR mapping (arch/arm64/kvm/sys_regs.c reset_mpidr). */
export function affinityOfIndex(n: number): bigint {
  return BigInt((n & 0xf) | (((n >> 4) & 0xff) << 8) | (((n >> 12) & 0xff) << 16));
}

/** Exception-class values used in ESR_EL1. */
export const EC = Object.freeze({ UNKNOWN: 0x00, SVC64: 0x15, SYS64: 0x18, BRK64: 0x3c });
/** ESR_ELx.IL: a 32-bit instruction trapped. */
export const ESR_IL = 1n << 25n;

/**
 * HCR_EL2 as the vCPU runs (the guest never sees it): RW (EL1 is AArch64), IMO (IRQs are
 * virtual: see syncIrq), API/APK (pointer authentication instructions and key registers do not
 * trap to our absent EL2 — Arm ARM D13.2.47).
 */
const HCR_BASE = HCR_RW | HCR_IMO | HCR_API | HCR_APK;
/** The SAVED_SYSREGS slots of the emulated timers' registers. */
const TIMER_SLOTS: ReadonlyMap<SysReg, { timer: TimerId; reg: 'ctl' | 'cval' }> = new Map([
  [Sys.CNTP_CTL_EL0, { timer: TimerId.Physical, reg: 'ctl' }],
  [Sys.CNTP_CVAL_EL0, { timer: TimerId.Physical, reg: 'cval' }],
  [Sys.CNTV_CTL_EL0, { timer: TimerId.Virtual, reg: 'ctl' }],
  [Sys.CNTV_CVAL_EL0, { timer: TimerId.Virtual, reg: 'cval' }],
] as const);
const TIMERS = [TimerId.Physical, TimerId.Virtual] as const;
/** Each timer's CTL as the emulation names it, by TimerId. */
const TIMER_CTL_REG = TIMERS.map((timer) => Object.freeze({ timer, reg: 'ctl' as const }));
/** Each timer's CTL and CVAL register, by TimerId. */
const TIMER_CTL = [Sys.CNTP_CTL_EL0, Sys.CNTV_CTL_EL0] as const;
const TIMER_CVAL = [Sys.CNTP_CVAL_EL0, Sys.CNTV_CVAL_EL0] as const;
const U64_MASK = (1n << 64n) - 1n;
/** ID_AA64PFR0_EL1.SVE, bits [35:32] (Arm ARM D13.2.64). */
const ID_AA64PFR0_SVE = 0xfn << 32n;

/**
 * The ID registers (op0 3, op1 0, CRn 0, trapped by HCR_EL2.TID3) whose value the machine
 * changes, by CRm/op2, and the bits it clears: SVE is hidden (Unicorn exposes only V0–V31, so
 * SVE state could not be saved). Every other ID register reads as the CPU model has it.
 */
export const SANITISED_ID_REGISTERS: readonly { readonly name: string; readonly crm: number; readonly op2: number; readonly clear: bigint }[] = Object.freeze([
  Object.freeze({ name: 'ID_AA64PFR0_EL1', crm: 4, op2: 0, clear: ID_AA64PFR0_SVE }),
  Object.freeze({ name: 'ID_AA64ZFR0_EL1', crm: 4, op2: 4, clear: U64_MASK }),
]);
/** CNTHCTL_EL2 as the vCPU runs: EL1PCTEN | EL1PCEN, EL1 reads the physical counter and timer untrapped. */
export const CNTHCTL_EL1_ACCESS = 3n;

/** Vector offsets from VBAR_EL1 (Arm ARM D1.10.2). */
const VEC_CURRENT_SP0 = 0x000;
const VEC_CURRENT_SPX = 0x200;
const VEC_LOWER_A64 = 0x400;
const VEC_IRQ = 0x80;

/** Unicorn's exception numbers (QEMU EXCP_*) seen by the interrupt hook. */
export const Excp = Object.freeze({ UDEF: 1, SWI: 2, PREFETCH_ABORT: 3, DATA_ABORT: 4, BKPT: 7, HVC: 11, SMC: 13 });

const WFI_INSN = 0xd503207f;
/** The last 4-byte-aligned address: `pc + 4` would wrap past 2^64. */
const LAST_WORD = (1n << 64n) - 4n;
const RAM_BASE = Number(Layout.RAM_BASE);

/** Batch mode: how one transfer class moves registers on one vCPU. */
interface ClassPlan {
  /** Registers to load that the head batch does not hold, ascending, and their batch. */
  readonly ins: Int8Array;
  readonly inBatch: RegBatch | undefined;
  /** Registers to load that the head batch holds (besides the id), and where it holds them. */
  readonly fromHead: Int8Array;
  readonly fromHeadAt: Int8Array;
  /** Registers written back, ascending, and their batch. */
  readonly outs: Int8Array;
  readonly outBatch: RegBatch | undefined;
  /** Registers the class reads but does not write: written back too after a preempted call. */
  readonly backs: Int8Array;
}

/** One conduit's trap path on one vCPU, prepared when the router starts. */
interface ConduitPlan {
  readonly classOf: (regs: RegisterFile) => number;
  /** u32 index of the id register's low half, in ctx.regs and in the window. */
  readonly idWord: number;
  /** The generated moves (register window), and zeroing of a class's registers (both modes). */
  readonly moves: WindowRoute;
  /** Batch mode: u32 index of the id register's low half in the head batch. */
  readonly idHead: number;
  readonly dispatch: (vcpu: VcpuContext) => number;
  /** Batch mode: per transfer class. */
  readonly classes: readonly ClassPlan[];
}

/** What the machine offers a vCPU's trap handler. */
export interface VcpuHost {
  readonly machine: Machine;
  /** How many vCPUs (engines) the machine has. */
  readonly vcpuCount: number;
  /**
   * Handles a trapped HVC/SMC with immediate `imm16`: `vcpu.route(conduit index)`, or the
   * answers of traps that reach no conduit. Sets `vcpu.kick` to stop the engine after it.
   */
  onHypercall(vcpu: Vcpu, intno: number, imm16: number): void;
  /** RAM as 32-bit words, for instruction fetch by the trap decoder. */
  readonly ram32: Uint32Array;
  readonly ramSize: number;
  /**
   * `vcpu` invalidated instructions: the cache line at virtual address `line` (IC IVAU), or
   * everything (IC IALLU, IC IALLUIS, or no address known). Other engines must drop their
   * translations of it before they next run.
   */
  codeChanged(vcpu: Vcpu, line?: bigint): void;
  /**
   * The CPU model took an exception to EL2 that is not a trapped system instruction: a stage 2
   * abort is the machine's (memory/holes.ts) — true if it was injected into the guest (the
   * engine runs on), a GuestFault to stop with, false if it is not one.
   */
  stage2Abort(vcpu: Vcpu, cpu: CpuInternals): boolean | GuestFault;
}

/** The trapping vCPU as handlers see it; the vCPU sets `viaSmc` before each dispatch. */
export interface TrapContext extends VcpuContext {
  viaSmc: boolean;
  /** HVC and SMC are 4 bytes and leave PC past themselves: a preempted call rewinds 4 (core continueCall). */
  readonly trapLength: 4;
}

/** A guest exception Unicorn reported that is not a hypercall: handled after the slice. */
export interface TakenException {
  intno: number;
  /** The CPU model took it, to this EL above EL1 (see Vcpu.undefFromAbove). */
  aboveEl1?: number;
  /** The CPU model took it to EL1, where the guest cannot handle it (Vcpu.vectorProblem). */
  fault?: GuestFault;
}

export { parseVcpuBlob, type VcpuStateExtras } from './state.js';

export class Vcpu {
  /** Set when something happened during a trap that needs the engine to stop after it. */
  kick = false;
  /**
   * SCTLR_EL1.M as the guest last set it (the MSR hook in board/engines.ts, and every entry):
   * read on every hypercall, so kept here rather than read through the FFI.
   */
  mmu = false;
  /** The engine has run guest code (it may hold translations). */
  ran = false;
  /** The engine runs with Unicorn's instruction count (see Arm64Machine.runEngine): once set, stays set. */
  counted = false;
  /** Set by the hook for a non-hypercall exception; handled by the run loop. */
  exception: TakenException | null = null;
  readonly gic = new GicCpuInterface();
  /**
   * The engine's CPU internals (ffi/unicorn.ts): with them the CPU model takes every exception
   * that targets EL1 itself, from any EL and at any virtual address, with its real syndrome.
   * Without them (another libunicorn build) exceptions are delivered by takeException below,
   * which cannot deliver MMU aborts or exceptions taken from EL0.
   */
  readonly cpu: CpuInternals | undefined;
  /** The EL1 physical and virtual timers, emulated (devices/generic-timer.ts). */
  readonly timer = new GenericTimer((t) => this.engine.readSys(t === TimerId.Virtual ? CNTVCT_EL0 : CNTPCT_EL0));
  /** HCR_EL2 without VI (see the constructor; VM while guest pages are removed: setStage2). */
  private hcr: bigint;
  /** HCR_EL2.VI as last written: the vCPU's IRQ input (see syncIrq). */
  private irqLine = false;
  /**
   * The registers restored into a vCPU that is off or CPU_ON-pending: such a vCPU is not entered
   * (its next run starts with reset()), so they are kept as saved and saved back unchanged.
   */
  private held: Arm64VcpuState['cpu'] | undefined;
  readonly ctx: TrapContext;
  readonly affinity: bigint;
  traps = 0;

  /**
   * The engine's x0..x30 and PC as live memory (ffi/unicorn.ts, findRegisterWindow): a trap
   * then moves registers without an FFI call. Undefined where it is not available (or not
   * wanted): the trap path uses `head` and per-mask batches instead.
   */
  private readonly window: Uint32Array | undefined;
  /**
   * Batch mode: [PC, then every conduit's id and default result registers (x0..x3, x16)], read
   * with one FFI call at each trap (a register costs ~2 ns inside a batch, a call ~50 ns).
   */
  private head: RegBatch | undefined;
  /** Per conduit index, set by prepare() when the router starts. */
  private plans: ConduitPlan[] = [];
  /** The conduit plan and transfer class of the last routed call (see route: lazy zeroing). */
  private lastPlan: ConduitPlan | undefined;
  private lastClass = 0;
  /** Batches by register mask (bit n = xn), shared by every class and conduit that uses the mask. */
  private readonly batches = new Map<number, RegBatch>();
  private x0Batch: RegBatch | undefined;
  private readonly stateRegs: RegBatch;
  private readonly resetSysregs: bigint[];
  private readonly resetSctlr: bigint;
  private readonly vbuf = new Uint8Array(16);
  /** One instruction fetched through the guest's translation (the HVC immediate). */
  private readonly insn = new Uint8Array(4);
  private readonly insn32 = new Uint32Array(this.insn.buffer);

  constructor(
    readonly index: number,
    readonly engine: UcEngine,
    private readonly host: VcpuHost,
    /** Move trap registers through the register window when there is one (default). */
    useWindow = true,
  ) {
    this.affinity = affinityOfIndex(index);
    this.ctx = { index, regs: new RegisterFile(32), machine: host.machine, viaSmc: false, trapLength: 4 };
    const xs = Array.from({ length: 31 }, (_, i) => xReg(i));
    // The register window is looked for even when traps use batches: the CPU internals are
    // located from it.
    const window = engine.registerWindow();
    this.window = useWindow ? window : undefined;
    this.stateRegs = engine.batch([...xs, Reg.PC, Reg.SP, Reg.PSTATE, Reg.SP_EL0, Reg.SP_EL1, Reg.FPCR, Reg.FPSR]);

    engine.writeSys(Sys.SCR_EL3, SCR_NS | SCR_HCE | SCR_RW | SCR_API | SCR_APK);
    engine.writeSys(Sys.VMPIDR_EL2, MPIDR_RES1 | this.affinity);
    // EL1 may read the physical counter and timer without trapping to (our absent) EL2, as
    // under KVM.
    engine.writeSys(Sys.CNTHCTL_EL2, CNTHCTL_EL1_ACCESS);
    this.resetSctlr = engine.readSys(Sys.SCTLR_EL1);
    this.resetSysregs = SAVED_SYSREGS.map((r) => engine.readSys(r));
    this.cpu = engine.cpuInternals();
    engine.onInterrupt((intno) => this.onInterrupt(intno));
    // With the CPU internals, two groups of guest instructions trap to (our absent) EL2 and are
    // finished in the interrupt hook (emulateEl2Trap): ID register reads (HCR_EL2.TID3), so SVE
    // can be hidden, and cache maintenance to the Point of Unification (HCR_EL2.TPU), which is
    // how a guest says it changed code (other engines must drop their translations of it).
    // (One engine needs no news of code changes: QEMU sees its own stores to code. TPU would
    // only cost a trap per line of every cache maintenance loop.)
    this.hcr = this.cpu ? HCR_BASE | HCR_TID3 | (host.vcpuCount > 1 ? HCR_TPU : 0n) : HCR_BASE;
    engine.writeSys(Sys.HCR_EL2, this.hcr);
  }

  /** A guest MSR to a timer register (board/engines.ts): true if it was one (the write is done). */
  timerWrite(op0: number, op1: number, crn: number, crm: number, op2: number, value: bigint): boolean {
    const r = timerRegister(op0, op1, crn, crm, op2);
    if (!r) return false;
    this.timer.write(r, value);
    // The guest reads CTL, CVAL and TVAL natively (the MRS path has no hook: it is the hottest
    // path there is — TPIDR_EL1, SP_EL0 and DAIF reads): Unicorn's copy of CVAL and CTL is
    // written raw (its own write functions drop the value: helper.c gt_cval_write/gt_ctl_write
    // are compiled out), TVAL reads follow from CVAL (gt_tval_read).
    this.engine.writeSys(TIMER_CVAL[r.timer], this.timer.read({ timer: r.timer, reg: 'cval' }));
    this.storedCtl[r.timer] = -1;
    this.pollTimers();
    return true;
  }
  /** Unicorn's copy of each timer's CTL as last written (ISTATUS included); -1: unknown. */
  private readonly storedCtl: [number, number] = [-1, -1];

  /** Drives the timer PPIs from the timers' state now, and the vCPU's IRQ input from that. */
  pollTimers(): void {
    // Only a change of a timer's output moves its PPI's line, so a line raised by other means
    // (Machine.setInterrupt) is left alone while the timer is idle.
    for (const t of TIMERS) {
      // One counter read: CTL with ISTATUS gives the line too (ENABLE, not IMASK, ISTATUS).
      const ctl = Number(this.timer.read(TIMER_CTL_REG[t]));
      const level = (ctl & 7) === 5;
      if (level !== this.timerLines[t]) {
        this.timerLines[t] = level;
        this.gic.setLine(TIMER_INTID[t], level);
      }
      // CTL's ISTATUS as the guest reads it natively: refreshed here, before each slice and at
      // each timer write (an interrupt handler reading it after the line rose sees it set).
      if (ctl !== this.storedCtl[t]) {
        this.storedCtl[t] = ctl;
        this.engine.writeSys(TIMER_CTL[t], BigInt(ctl));
      }
    }
    this.syncIrq();
  }
  /** The timers' outputs as last driven onto their PPIs. */
  private readonly timerLines: [boolean, boolean] = [false, false];

  /**
   * Drives the vCPU's IRQ input from its GIC CPU interface: HCR_EL2.VI, a virtual IRQ that the
   * CPU model takes itself (qemu/target/arm/cpu.c arm_cpu_exec_interrupt, EXCP_VIRQ to EL1) as
   * soon as PSTATE.I allows, at EL1 or EL0, and that wakes a WFI. With HCR_EL2.IMO set the guest
   * sees it exactly as a physical IRQ from its GIC (Arm ARM D1.14.2: virtual interrupts are
   * taken to EL1 at the IRQ vector). Writing HCR_EL2 goes through its write function, which
   * raises or drops the CPU's interrupt request (helper.c do_hcr_write → arm_cpu_update_virq),
   * also from inside a hook: the running block then exits and the interrupt is taken.
   */
  syncIrq(): void {
    const want = this.gic.irqAsserted;
    if (want === this.irqLine) return;
    this.irqLine = want;
    this.engine.writeSys(Sys.HCR_EL2, want ? this.hcr | HCR_VI : this.hcr);
  }

  /**
   * Stage 2 translation on or off (HCR_EL2.VM), for removed guest pages (memory/holes.ts, which
   * sets VTCR_EL2/VTTBR_EL2 first). Changing VM flushes the TLB (helper.c hcr_write).
   */
  setStage2(on: boolean): void {
    this.hcr = on ? this.hcr | HCR_VM : this.hcr & ~HCR_VM;
    this.engine.writeSys(Sys.HCR_EL2, this.irqLine ? this.hcr | HCR_VI : this.hcr);
  }

  /** True if traps move registers through the register window (no FFI call). */
  get directRegisters(): boolean {
    return this.window !== undefined;
  }

  private batchOf(mask: number): RegBatch | undefined {
    if (mask === 0) return undefined;
    let b = this.batches.get(mask);
    if (!b) {
      b = this.engine.batch(maskRegisters(mask).map(xReg));
      this.batches.set(mask, b);
    }
    return b;
  }

  /**
   * Prepares the trap path of every conduit (the router has started: its transfers are fixed):
   * the generated moves per conduit, or in batch mode one plan per transfer class with batches
   * made once per distinct mask.
   */
  prepare(paths: readonly TrapPath[]): void {
    // Batch mode reads PC and, in the same call, every conduit's id register and default result
    // registers (x0..x3, x16): a register costs ~2 ns in a batch, another call ~50 ns, and every
    // call without a signature reads exactly those.
    const live = paths.filter(Boolean);
    const headRegs = [...new Set(live.flatMap((p) => [p.transfer.idRegister, ...p.conduit.resultRegisters]))].sort((a, b) => a - b);
    const headMask = headRegs.reduce((m, r) => m | (1 << r), 0);
    const batches = this.window === undefined;
    if (batches) this.head = this.engine.batch([Reg.PC, ...headRegs.map(xReg)]);
    const headAt = (r: number) => 2 + 2 * headRegs.indexOf(r);
    this.plans = [];
    for (const path of paths) {
      if (!path) continue;
      const t = path.transfer;
      const idBit = 1 << t.idRegister;
      const classes = !batches
        ? []
        : t.readMasks.map((read, k): ClassPlan => {
            const fromHead = maskRegisters(read & headMask & ~idBit);
            return {
              ins: Int8Array.from(maskRegisters(read & ~headMask)),
              inBatch: this.batchOf(read & ~headMask),
              fromHead: Int8Array.from(fromHead),
              fromHeadAt: Int8Array.from(fromHead.map(headAt)),
              outs: Int8Array.from(maskRegisters(t.writeMasks[k]!)),
              outBatch: this.batchOf(t.writeMasks[k]!),
              backs: Int8Array.from(maskRegisters(read & ~t.writeMasks[k]!)),
            };
          });
      this.plans[path.conduit.index] = {
        classOf: t.classOf,
        idWord: t.idRegister * 2,
        moves: compileWindowRoute(t, path.dispatch),
        idHead: headAt(t.idRegister),
        dispatch: path.dispatch,
        classes,
      };
    }
    this.ctx.regs.u64.fill(0n);
    this.lastPlan = undefined;
  }

  // ---- the trap hot path --------------------------------------------------------------------
  //
  // Per trap: PC (for the HVC/SMC immediate), the conduit's function-id register, the call's
  // transfer class (a generated switch), the registers the class reads (its declared arguments
  // and results); the handler runs on ctx.regs; its declared results go back. No allocation.
  // With the register window nothing here crosses the FFI; with batches: one read (PC, the id
  // registers, x0..x3), one more if the class reads other registers, one write if it has results.
  //
  // ctx.regs holds zero in every register the current call's class does not move: when the
  // class changes, the previous class's registers are zeroed (a loop of calls of one class pays
  // nothing), so a handler never sees a value from another call.

  private onInterrupt(intno: number): void {
    if (intno === Excp.HVC || intno === Excp.SMC) {
      this.traps++;
      let pcLo: number;
      let pcHi: number;
      const w = this.window;
      if (w !== undefined) {
        pcLo = w[WINDOW_PC]!;
        pcHi = w[WINDOW_PC + 1]!;
      } else {
        const h = this.head!;
        h.read();
        pcLo = h.u32[0]!;
        pcHi = h.u32[1]!;
      }
      // HVC/SMC leave PC past the instruction; its immediate is in bits 20:5 of the word at PC-4.
      const off = pcHi === 0 ? pcLo - 4 - RAM_BASE : -1;
      let imm16 = 0;
      if (off >= 0 && off < this.host.ramSize && !this.mmu) {
        imm16 = (this.host.ram32[off >>> 2]! >>> 5) & 0xffff;
      } else if (this.cpu?.readVirtual(((BigInt(pcHi) << 32n) | BigInt(pcLo)) - 4n, this.insn)) {
        // MMU on: the instruction is fetched through the guest's translation.
        imm16 = (this.insn32[0]! >>> 5) & 0xffff;
      }
      // else: a virtual PC without CPU internals: taken as immediate 0 (SMCCC). See README.
      this.ctx.viaSmc = intno === Excp.SMC; // KVM_HYPERCALL_EXIT_SMC: SMCCC answers some calls per conduit
      this.host.onHypercall(this, intno, imm16);
      if (this.kick) this.engine.stop();
      return;
    }
    // Any other exception: Unicorn hands it to us instead of taking it. With the CPU internals
    // the CPU model takes it now and the engine runs on at the vector — unless the guest has no
    // vector table or faults inside it (reported as faults below), or it was routed above EL1
    // (an SVE access trapped by CPTR_EL3 on a CPU that hides SVE): then the run loop turns it
    // into what the guest sees, an UNDEFINED instruction at EL1. Without the internals the run
    // loop delivers it (cpu/exceptions.ts).
    const cpu = this.cpu;
    if (cpu !== undefined) {
      cpu.takeException();
      const el = (this.pstate() >> 2) & 3;
      // A stage 2 abort (a removed guest page) is injected into the guest as Xen does, or ends
      // the run as a guest fault (an address outside RAM): memory/holes.ts.
      const stage2 = el === 2 && this.host.stage2Abort(this, cpu);
      const fault = el === 1 ? this.vectorProblem() : stage2 instanceof GuestFault ? stage2 : undefined;
      if ((el === 1 && fault === undefined) || stage2 === true || (el === 2 && fault === undefined && this.emulateEl2Trap(cpu))) {
        // Taken: the engine runs on — unless a stop was asked for during the slice from where
        // the engine cannot be stopped (a device access: the machine's stop()). An exception
        // boundary is a safe place, and an OS makes one often (every system call).
        if (this.kick) this.engine.stop();
        return;
      }
      this.exception = fault ? { intno, fault } : { intno, aboveEl1: el };
    } else {
      this.exception = { intno };
    }
    this.engine.stop();
  }

  /**
   * After the CPU model took a synchronous exception to EL1: a guest fault if the guest cannot
   * handle it — no vector table (VBAR_EL1 0), or the exception came from inside the vector table
   * itself (it would be taken again forever).
   */
  private vectorProblem(): GuestFault | undefined {
    const e = this.engine;
    const vbar = e.readSys(Sys.VBAR_EL1);
    const elr = e.readSys(Sys.ELR_EL1);
    if (vbar !== 0n && (elr < vbar || elr >= vbar + 0x800n)) return undefined;
    const what = `synchronous exception (ESR 0x${e.readSys(Sys.ESR_EL1).toString(16)})`;
    if (vbar === 0n) return new GuestFault(this.index, elr, `unhandled ${what}: VBAR_EL1 is 0`);
    return new GuestFault(this.index, elr, `recursive fault: ${what} inside the vector table`);
  }

  /**
   * Finishes a trapped MRS/MSR/SYS (ESR_EL2.EC 0x18; ISS: Arm ARM D13.2.39 "ISS encoding for an
   * exception from MSR, MRS, or System instruction execution in AArch64 state") the way a
   * hypervisor does, inside the interrupt hook, and returns the vCPU to the instruction after
   * it: an ID register read (HCR_EL2.TID3) gets the register's value with SVE hidden, a cache
   * maintenance to the PoU (HCR_EL2.TPU) tells the machine code changed and does nothing else
   * (the engine has no caches). Anything else: false (the guest then sees UNDEFINED).
   */
  private emulateEl2Trap(cpu: CpuInternals): boolean {
    const e = this.engine;
    const esr = e.readSys(Sys.ESR_EL2);
    if (Number(esr >> 26n) !== EC.SYS64) return false;
    const iss = Number(esr & 0x1ff_ffffn);
    const read = (iss & 1) === 1;
    const rt = (iss >> 5) & 0x1f;
    const reg = { name: 'trapped', op0: (iss >> 20) & 3, op2: (iss >> 17) & 7, op1: (iss >> 14) & 7, crn: (iss >> 10) & 0xf, crm: (iss >> 1) & 0xf };
    if (reg.op0 === 3 && read && reg.op1 === 0 && reg.crn === 0) {
      // ID_AA64ZFR0_EL1 reads 0 and ID_AA64PFR0_EL1.SVE 0: SVE is hidden.
      const s = SANITISED_ID_REGISTERS.find((x) => x.crm === reg.crm && x.op2 === reg.op2);
      const value = s === undefined ? e.readSys(reg) : s.clear === U64_MASK ? 0n : e.readSys(reg) & ~s.clear;
      if (rt !== 31) e.write64(xReg(rt), value);
    } else if (reg.op0 === 1 && !read && reg.crn === 7) {
      // IC IVAU (op1 3, CRm 5, op2 1) names one line by virtual address; IC IALLU(IS) (op1 0)
      // everything; DC CVAU (CRm 11) only cleans data toward the PoU: no code changed yet.
      if (reg.op1 === 3 && reg.crm === 5) this.host.codeChanged(this, rt === 31 ? 0n : e.read64(xReg(rt)));
      else if (reg.op1 === 0) this.host.codeChanged(this);
    } else {
      return false;
    }
    this.returnFromEl2(cpu, e.read64(Reg.ELR_EL2) + 4n, Number(e.readSys(Sys.SPSR_EL2) & 0xffff_ffffn));
    return true;
  }

  /**
   * An exception return from EL2 done by the host (ERET's effect, Arm ARM D1.11): PSTATE from
   * the saved SPSR, the live SP from the bank it selects (QEMU banked the guest's SP on entry:
   * helper.c aarch64_save_sp), PC, and the cached translation flags rebuilt.
   */
  private returnFromEl2(cpu: CpuInternals, pc: bigint, spsr: number): void {
    const e = this.engine;
    const el = (spsr >> 2) & 3;
    e.write64(Reg.SP, e.read64(el === 1 && (spsr & 1) === 1 ? Reg.SP_EL1 : Reg.SP_EL0));
    e.write64(Reg.PSTATE, BigInt(spsr >>> 0));
    e.write64(Reg.PC, pc);
    cpu.rebuildFlags();
  }

  /**
   * Runs `fn` with the stopped engine's stage 1 translation off (SCTLR_EL1.M clear, the cached
   * flags and the TLB following), so addresses the engine translates are physical; restores it.
   */
  withMmuOff(fn: () => void): void {
    const e = this.engine;
    const sctlr = e.readSys(Sys.SCTLR_EL1);
    if ((sctlr & SCTLR_M) === 0n) return fn();
    e.writeSys(Sys.SCTLR_EL1, sctlr & ~SCTLR_M);
    this.cpu?.rebuildFlags();
    this.flushTlb();
    try {
      fn();
    } finally {
      e.writeSys(Sys.SCTLR_EL1, sctlr);
      this.cpu?.rebuildFlags();
      this.flushTlb();
    }
  }



  /**
   * An exception the CPU model routed to EL2 or EL3 (`el`), where this machine has no
   * software: the guest at EL1/EL0 sees the instruction as UNDEFINED (an SVE instruction on a
   * CPU whose ID registers hide SVE). Its return state is in ELR/SPSR of that EL.
   */
  undefFromAbove(el: number): void {
    const e = this.engine;
    const elr = e.read64(el === 3 ? Reg.ELR_EL3 : Reg.ELR_EL2);
    const spsr = Number(e.readSys(el === 3 ? Sys.SPSR_EL3 : Sys.SPSR_EL2) & 0xffff_ffffn);
    this.takeException('sync', elr, ESR_IL | (BigInt(EC.UNKNOWN) << 26n), undefined, { pc: elr, pstate: spsr });
  }

  /**
   * Routes the trapped call through conduit `index`'s path (see above). Returns 0, or for a call
   * its handler preempted the bytes to move the PC back (see rewind), with the registers the
   * call reads written back as well as its results.
   */
  route(index: number): number {
    const p = this.plans[index]!;
    const ctx = this.ctx;
    const regs = ctx.regs.u32;
    const id = p.idWord;
    const w = this.window;
    let lo: number;
    let hi: number;
    if (w !== undefined) {
      lo = w[id]!;
      hi = w[id + 1]!;
    } else {
      const h = this.head!.u32;
      lo = h[p.idHead]!;
      hi = h[p.idHead + 1]!;
    }
    regs[id] = lo;
    regs[id + 1] = hi;
    const k = p.classOf(ctx.regs);
    if (k !== this.lastClass || p !== this.lastPlan) {
      const last = this.lastPlan;
      if (last !== undefined) {
        last.moves.zero(regs, this.lastClass);
        regs[id] = lo;
        regs[id + 1] = hi;
      }
      this.lastPlan = p;
      this.lastClass = k;
    }
    if (w !== undefined) return p.moves.route(w, regs, ctx, k);
    const h = this.head!.u32;
    const c = p.classes[k]!;
    const fromHead = c.fromHead;
    for (let i = 0; i < fromHead.length; i++) {
      const o = fromHead[i]! << 1;
      const at = c.fromHeadAt[i]!;
      regs[o] = h[at]!;
      regs[o + 1] = h[at + 1]!;
    }
    const inBatch = c.inBatch;
    if (inBatch !== undefined) {
      inBatch.read();
      const ins = c.ins;
      const v = inBatch.u32;
      for (let i = 0; i < ins.length; i++) {
        const o = ins[i]! << 1;
        regs[o] = v[2 * i]!;
        regs[o + 1] = v[2 * i + 1]!;
      }
    }
    const back = p.dispatch(ctx);
    const outBatch = c.outBatch;
    if (outBatch !== undefined) {
      const outs = c.outs;
      const v = outBatch.u32;
      for (let i = 0; i < outs.length; i++) {
        const o = outs[i]! << 1;
        v[2 * i] = regs[o]!;
        v[2 * i + 1] = regs[o + 1]!;
      }
      outBatch.write();
    }
    if (back !== 0) for (const r of c.backs) this.engine.write64(xReg(r), ctx.regs.u64[r]!);
    return back;
  }

  /**
   * A preempted call (core continueCall): the vCPU re-executes the trapping instruction, `bytes`
   * before the PC the trap left (Xen on Arm's hypercall_create_continuation: `regs->pc -= 4`,
   * xen/arch/arm/domain.c), and the engine stops after the hook, so the next slice starts there:
   * timers are polled, a pending interrupt is taken before the HVC runs again (ELR_EL1 = the
   * HVC), and a pause or snapshot lands between the two legs.
   */
  rewind(bytes: number): void {
    this.engine.write64(Reg.PC, this.pc() - BigInt(bytes));
    this.kick = true;
  }

  /** Writes only x0 = value (sign-extended 32-bit): the answer to SMC #imm != 0. */
  setX0Signed(value: number): void {
    const lo = value >>> 0;
    const hi = value < 0 ? 0xffff_ffff : 0;
    const w = this.window;
    if (w !== undefined) {
      w[0] = lo;
      w[1] = hi;
      return;
    }
    const b = (this.x0Batch ??= this.engine.batch([xReg(0)]));
    b.u32[0] = lo;
    b.u32[1] = hi;
    b.write();
  }

  // ---- state ----------------------------------------------------------------------------------

  pc(): bigint {
    return this.engine.read64(Reg.PC);
  }

  /**
   * The guest-physical address of `va` as this vCPU translates it now (a hypercall's pointer
   * argument: Xen's get_page_from_gva): `va` itself while SCTLR_EL1.M is clear, else through the
   * CPU model's stage 1 and stage 2; undefined where the access would fault. Without the CPU
   * internals the address is taken as physical, as before they existed.
   */
  physicalOf(va: bigint): bigint | undefined {
    if (!this.mmu) return va;
    const translate = this.cpu?.physicalOf;
    return translate ? translate(va) : va;
  }

  /** PSTATE: a 32-bit register (unicorn_aarch64.c reads it as uint32_t). */
  pstate(): number {
    return Number(this.engine.read64(Reg.PSTATE) & 0xffff_ffffn);
  }

  /** Did the slice that just ended stop right after a WFI? */
  stoppedAtWfi(pc: bigint): boolean {
    const off = Number(pc - Layout.RAM_BASE) - 4;
    if (pc < Layout.RAM_BASE || off < 0 || off >= this.host.ramSize) return false;
    return this.host.ram32[off >>> 2] === WFI_INSN;
  }

  /**
   * Enter `pstate` at `pc` through the EL3 trampoline (see the file comment). SP_EL0/SP_EL1 are
   * the banked stack pointers; the live SP follows from the target PSTATE. `elrEl1` is the
   * guest's ELR_EL1 to leave in place afterwards.
   *
   * Unicorn's translator loads the `eret` target from ELR of the EL its cached flags name
   * (always EL1 here), not the real EL3, so the target PC goes in ELR_EL1 for the duration of
   * the trampoline. If the cached EL were 0, `eret` would not translate at all: the callers
   * refuse that case (an exception from EL0 cannot be delivered on Unicorn 2.0.1: README).
   */
  private applyEntry(pstate: number, pc: bigint, spEl0: bigint, spEl1: bigint, sctlr: bigint, elrEl1: bigint): void {
    // Callers pass entry points the runtime checked (MachineRuntime.entryFault); what holds for
    // any address (alignment, 64 bits) is checked again here so no caller can hand the engine
    // one it refuses (uc_ctl(TB_REMOVE_CACHE) on a range that wraps).
    const bad = entryProblem(pc, true, this.host.ramSize);
    if (bad !== undefined) throw new GuestFault(this.index, pc, `cannot start there: ${bad}`);
    const e = this.engine;
    const cpu = this.cpu;
    if (cpu !== undefined) {
      // With the CPU internals the state is written directly and the cached translation flags
      // rebuilt: no trampoline, so any PSTATE (EL0 included) at any address, MMU on or off.
      // The live SP is the bank the target PSTATE selects (QEMU keeps it in xregs[31]).
      e.write64(Reg.SP_EL0, spEl0);
      e.write64(Reg.SP_EL1, spEl1);
      e.writeSys(Sys.SCTLR_EL1, sctlr);
      this.mmu = (sctlr & SCTLR_M) !== 0n;
      e.write64(Reg.PSTATE, BigInt(pstate >>> 0));
      e.write64(Reg.SP, ((pstate >> 2) & 3) !== 0 && (pstate & 1) === 1 ? spEl1 : spEl0);
      e.write64(Reg.PC, pc);
      e.write64(Reg.ELR_EL1, elrEl1);
      cpu.rebuildFlags();
      this.flushTlb();
      return;
    }
    // Unicorn checks the stop address (`until`) only when it translates a block: a block
    // already translated at `pc` would run straight past it. Drop it first (uc_ctl_remove_cache
    // takes the address through the engine's current translation: physical with the MMU off;
    // an unmapped virtual address has no block to drop).
    e.removeCache(pc, pc < LAST_WORD ? pc + 4n : pc + 3n);
    e.write64(Reg.SP_EL0, spEl0);
    e.write64(Reg.SP_EL1, spEl1);
    e.writeSys(Sys.SCTLR_EL1, sctlr & ~SCTLR_M);
    e.write64(Reg.ELR_EL3, pc);
    e.write64(Reg.ELR_EL1, pc);
    e.writeSys(Sys.SPSR_EL3, BigInt(pstate >>> 0));
    e.write64(Reg.PSTATE, BigInt(MODE_EL3H | PSTATE_DAIF));
    const rc = e.start(Layout.ROM_BASE + BigInt(Layout.ROM_ERET), pc, 0);
    const now = e.read64(Reg.PC);
    if (rc !== 0 || now !== pc || (this.pstate() & 0xf) !== (pstate & 0xf)) {
      // The guest's state (a PC or PSTATE the engine cannot enter), not the host's: a guest
      // fault naming the vCPU and the address, like any other the run reports.
      throw new GuestFault(
        this.index,
        pc,
        `entering PSTATE 0x${pstate.toString(16)} there failed (uc_err ${rc}, PC 0x${now.toString(16)}, PSTATE 0x${this.pstate().toString(16)})`,
      );
    }
    e.write64(Reg.ELR_EL1, elrEl1);
    // The block Unicorn translated at `pc` for the stop ("until") would stop every later run
    // there: drop it (while the MMU is still off, so `pc` names the same page it did). The
    // range must not wrap past 2^64 (uc_ctl refuses it: UC_ERR_ARG).
    e.removeCache(pc, pc < LAST_WORD ? pc + 4n : pc + 3n);
    this.mmu = (sctlr & SCTLR_M) !== 0n;
    if (this.mmu) {
      e.writeSys(Sys.SCTLR_EL1, sctlr);
      this.flushTlb();
    }
  }

  /** Refuses host-side state changes while Unicorn's cached flags say EL0 (see applyEntry). */
  private assertNotEl0(what: string): void {
    if (this.cpu) return;
    const pstate = this.pstate();
    if (((pstate >> 2) & 3) === 0) {
      throw new GuestFault(this.index, this.pc(), `${what} while the vCPU is at EL0: not supported on Unicorn 2.0.1`);
    }
  }

  /**
   * Unicorn's SCTLR write path skips QEMU's TLB flush; a TTBR0_EL1 write that changes the ASID
   * flushes it. Change it and change it back.
   */
  private flushTlb(): void {
    const t = this.engine.readSys(Sys.TTBR0_EL1);
    this.engine.writeSys(Sys.TTBR0_EL1, t ^ (1n << 48n));
    this.engine.writeSys(Sys.TTBR0_EL1, t);
  }

  /**
   * Architectural reset into EL1h, MMU and caches off, all interrupts masked, at `entry` with
   * x0 = `context` (PSCI CPU_ON / boot). All EL1 state returns to its reset value.
   */
  /**
   * SCTLR_EL1.EE of this vCPU now: its data endianness at EL1 (Arm ARM D13.2.118). A vCPU makes
   * HVC and SMC only from EL1 (both are UNDEFINED at EL0), so this is Linux's kvm_vcpu_is_be for
   * a CPU_ON caller (arch/arm64/include/asm/kvm_emulate.h: SCTLR_EL1.EE in a privileged mode).
   */
  dataBigEndian(): boolean {
    return (this.engine.readSys(Sys.SCTLR_EL1) & SCTLR_EE) !== 0n;
  }

  /**
   * The vCPU's reset state at `entry` with x0 = `context`; `bigEndian` sets SCTLR_EL1.EE on top of
   * the reset value, as KVM's kvm_reset_vcpu does for a CPU_ON from a big-endian caller
   * (kvm_vcpu_set_be, arch/arm64/kvm/reset.c).
   */
  reset(entry: bigint, context: bigint, bigEndian = false): void {
    this.assertNotEl0('reset');
    this.held = undefined;
    const e = this.engine;
    const s = this.stateRegs;
    s.u64.fill(0n);
    s.u64[0] = BigInt.asUintN(64, context);
    // The batch also writes PC/SP/PSTATE/SP_ELx; applyEntry sets those properly afterwards.
    s.u64[33] = BigInt(MODE_EL1H | PSTATE_DAIF);
    s.write();
    this.vbuf.fill(0);
    for (let i = 0; i < 32; i++) e.writeVector(i, this.vbuf);
    SAVED_SYSREGS.forEach((r, i) => {
      if (r !== Sys.SCTLR_EL1) e.writeSys(r, this.resetSysregs[i]!);
    });
    this.timer.restore({ ctl: [0, 0], cval: [0n, 0n] });
    this.applyEntry(MODE_EL1H | PSTATE_DAIF, entry, 0n, 0n, bigEndian ? this.resetSctlr | SCTLR_EE : this.resetSctlr, this.resetSysregs[SAVED_SYSREGS.indexOf(Sys.ELR_EL1)]!);
    this.exception = null;
  }

  /**
   * Takes an exception to EL1 as the architecture does: SPSR_EL1 = PSTATE, ELR_EL1 = return
   * address, ESR_EL1 (synchronous), FAR_EL1 (if given), PSTATE = EL1h with D, A, I, F masked
   * (PAN set if SCTLR_EL1.SPAN = 0), PC = VBAR_EL1 + vector offset.
   */
  takeException(kind: 'sync' | 'irq', elr: bigint, esr: bigint, far?: bigint, from?: { pc: bigint; pstate: number }): void {
    const e = this.engine;
    const s = this.stateRegs;
    s.read();
    // `from`: the state the exception is taken from when it is not the live one (undefFromAbove).
    const pstate = from ? from.pstate : Number(s.u64[33]! & 0xffff_ffffn);
    const live = s.u64[32]!;
    let spEl0 = s.u64[34]!;
    let spEl1 = s.u64[35]!;
    const el = (pstate >> 2) & 3;
    const spsel = pstate & 1;
    const pc = from ? from.pc : s.u64[31]!;
    const vbar = e.readSys(Sys.VBAR_EL1);
    const what = kind === 'irq' ? 'IRQ' : `synchronous exception (ESR 0x${esr.toString(16)})`;
    if (vbar === 0n) throw new GuestFault(this.index, pc, `unhandled ${what}: VBAR_EL1 is 0`);
    if (kind === 'sync' && elr >= vbar && elr < vbar + 0x800n) {
      throw new GuestFault(this.index, pc, `recursive fault: ${what} inside the vector table`);
    }
    if (el === 0 && !this.cpu) throw new GuestFault(this.index, pc, `${what} from EL0: not supported without the CPU internals (README)`);
    // The live SP is the bank PSTATE selects; `from` a higher EL, the live SP is that EL's, and
    // the banks already hold EL0's and EL1's.
    if (!from) {
      if (el === 0 || spsel === 0) spEl0 = live;
      else spEl1 = live;
    }
    let offset = el === 1 ? (spsel ? VEC_CURRENT_SPX : VEC_CURRENT_SP0) : VEC_LOWER_A64;
    if (kind === 'irq') offset += VEC_IRQ;
    const sctlr = e.readSys(Sys.SCTLR_EL1);
    let next = (pstate & 0xf000_0000) | PSTATE_DAIF | MODE_EL1H;
    if ((sctlr & SCTLR_SPAN) === 0n) next |= PSTATE_PAN;
    else next |= pstate & PSTATE_PAN;
    if (sctlr & SCTLR_DSSBS) next |= PSTATE_SSBS;
    e.writeSys(Sys.SPSR_EL1, BigInt(pstate >>> 0));
    if (kind === 'sync') e.writeSys(Sys.ESR_EL1, esr);
    if (far !== undefined) e.writeSys(Sys.FAR_EL1, far);
    this.applyEntry(next >>> 0, vbar + BigInt(offset), spEl0, spEl1, sctlr, elr);
  }

  /** UNDEFINED instruction at `pc` (EC = 0, IL = 1). */
  injectUndef(pc: bigint): void {
    this.takeException('sync', pc, ESR_IL | (BigInt(EC.UNKNOWN) << 26n));
  }

  // ---- snapshot -------------------------------------------------------------------------------

  /**
   * Everything needed to resume this vCPU but its run state (the runtime's; codec: cpu/state.ts).
   * The live SP is stored in its bank (SP_EL0 or SP_EL1 per PSTATE), so the state holds
   * architectural values, not Unicorn's internal layout.
   */
  save(): Omit<Arm64VcpuState, 'run'> {
    if (this.held) return { cpu: this.held, gicc: this.gic.save() };
    const s = this.stateRegs;
    s.read();
    const pstate = Number(s.u64[33]! & 0xffff_ffffn);
    const live = s.u64[32]!;
    let spEl0 = s.u64[34]!;
    let spEl1 = s.u64[35]!;
    const el = (pstate >> 2) & 3;
    if (el === 0 || (pstate & 1) === 0) spEl0 = live;
    else spEl1 = live;
    const core = [...Array.from({ length: 31 }, (_, i) => s.u64[i]!), s.u64[31]!, BigInt(pstate >>> 0), spEl0, spEl1, s.u64[36]!, s.u64[37]!];
    const vregs = Array.from({ length: 32 }, (_, i) => {
      this.engine.readVector(i, this.vbuf);
      return new Uint8Array(this.vbuf);
    });
    // The timers are the machine's: their slots carry the emulated CTL (ENABLE, IMASK) and CVAL.
    const t = this.timer.save();
    const sysregs = SAVED_SYSREGS.map((r) => {
      const slot = TIMER_SLOTS.get(r);
      if (slot === undefined) return this.engine.readSys(r);
      return slot.reg === 'ctl' ? BigInt(t.ctl[slot.timer]) : t.cval[slot.timer];
    });
    return { cpu: { core, vregs, sysregs }, gicc: this.gic.save() };
  }

  /**
   * Loads a validated state (validateArm64VcpuState) saved on any machine with the same board.
   * `enter` false: the vCPU is on but its PC was refused by the entry check: its registers are
   * kept as saved (like an off vCPU's) and the engine is not entered.
   */
  restore({ cpu, run, gicc }: Arm64VcpuState, enter = true): void {
    if (enter) this.assertNotEl0('restore');
    const e = this.engine;
    const s = this.stateRegs;
    const c = cpu.core;
    for (let i = 0; i < 31; i++) s.u64[i] = c[i]!;
    const pc = c[31]!;
    const pstate = Number(c[32]!);
    const spEl0 = c[33]!;
    const spEl1 = c[34]!;
    s.u64[31] = pc;
    s.u64[32] = 0n;
    s.u64[33] = BigInt(MODE_EL1H | PSTATE_DAIF);
    s.u64[34] = spEl0;
    s.u64[35] = spEl1;
    s.u64[36] = c[35]!;
    s.u64[37] = c[36]!;
    s.write();
    cpu.vregs.forEach((v, i) => e.writeVector(i, v));
    let sctlr = this.resetSctlr;
    let elrEl1 = 0n;
    for (let i = 0; i < SAVED_SYSREGS.length; i++) {
      const r = SAVED_SYSREGS[i]!;
      const v = i < cpu.sysregs.length ? cpu.sysregs[i]! : this.resetSysregs[i]!;
      if (r === Sys.SCTLR_EL1) sctlr = v;
      else e.writeSys(r, v);
      if (r === Sys.ELR_EL1) elrEl1 = v;
    }
    const t = this.timer.save();
    TIMER_SLOTS.forEach((slot, r) => {
      const i = SAVED_SYSREGS.indexOf(r);
      if (i >= cpu.sysregs.length) return;
      if (slot.reg === 'ctl') t.ctl[slot.timer] = Number(cpu.sysregs[i]! & 3n);
      else t.cval[slot.timer] = cpu.sysregs[i]!;
    });
    this.timer.restore(t);
    this.gic.restore(gicc);
    this.exception = null;
    const entered = run.power === 'on' && enter;
    this.held = entered ? undefined : cpu;
    if (entered) this.applyEntry(pstate, pc, spEl0, spEl1, sctlr, elrEl1);
  }
}
