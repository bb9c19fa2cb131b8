/**
 * The arm64 machine: a QEMU-virt-like board (RAM, PL011 UART, a minimal GIC CPU interface)
 * with N vCPUs, each a Unicorn engine over the same host RAM, scheduled round-robin on the one
 * JS thread by the core's MachineRuntime (power states, a pending CPU_ON applied at a safe
 * point, parking, trap budgets and pauses, hang and all-off detection); this file is the
 * Unicorn backend's `runSlice`. Hypercalls are routed inside Unicorn's interrupt hook
 * (cpu/vcpu.ts onInterrupt → onHypercall here → MachineRuntime.trapped for the budget).
 *
 * Slices. A vCPU runs until something needs the host: a hypercall handler asked to stop
 * (power change, system event, pause, an interrupt for the running vCPU), a guest exception
 * that must be delivered, WFI (Unicorn ends the run on WFI: EXCP_HLT), or — when another vCPU
 * is runnable, or an interrupt waits for the guest to unmask it — the slice's instruction count
 * runs out (uc_emu_start's count; never its timeout, see runEngine). So a vCPU spinning on a
 * flag gets preempted and the vCPU that will set the flag runs. A lone runnable vCPU with
 * nothing pending runs with no limit at all, so the single-vCPU hot path pays nothing for
 * scheduling.
 *
 * Code written by one vCPU (or the host) is not seen by another engine's cache of translated
 * blocks (Unicorn keeps one TB cache per uc_engine: qemu/accel/tcg/translate-all.c): whenever the scheduler switches engines it flushes the incoming
 * engine's translation cache.
 */
import { FlatGuestMemory, MachineRuntime, RuntimeMachine, YIELD, HALT, type VcpuExit, type CapabilityName, type MachineCapabilities, type Arch, type GuestMemory, type Machine, type MachineImage } from '@plugvisor/core';
import { HostRam, UcMemType, UNLIMITED_COUNT, type CpuInternals, type MemFault } from './ffi/unicorn.js';
import { GUEST_PAGE_SIZE, GuestPageHoles, HoleAwareMemory } from './memory/holes.js';
import { openVcpu } from './board/engines.js';
import { Layout, entryProblem } from './board/layout.js';
import { PSTATE_I, SAVED_SYSREGS, SCTLR_M, Sys } from './cpu/sysregs.js';
import { Pl011 } from './devices/pl011.js';
import { GICD_MAX_CPUS, GicDistributor } from './devices/gicd.js';
import { COUNTER_HZ } from './devices/generic-timer.js';
import { checkArm64Options, parseArm64Holes, validateArm64Description, type Arm64MachineDescription, type Arm64MachineOptions } from './description.js';
import { deliverException } from './cpu/exceptions.js';
import { Vcpu, Excp, MPIDR_AFF_MASK, type TakenException, type VcpuHost } from './cpu/vcpu.js';
import { CNTPCT_EL0, CNTVCT_EL0, sampleClock, type ClockSample } from './cpu/clock.js';
import { GuestFault, MachineError } from './errors.js';
import { isElf, loadElf, loadRaw, type LoadedImage } from './loader/elf.js';
import { SMC_UNKNOWN_IMM_X0, TrapKind, hvcConduit, personalityOf, smcConduit, trapPaths, type HvcImmediates, type TrapRouter } from './traps.js';
import type { CpuOnEndianness } from './description.js';
import { arm64VcpuCodec, arm64VcpuStateValue, type Arm64VcpuState, type Arm64VcpuStateValue } from './cpu/state.js';

/** The CPU identity registers 'cpu-identity' reads (Arm ARM D23.2: MIDR_EL1 at EL1 under EL2 reads VPIDR_EL2). */
const VPIDR_EL2 = Object.freeze({ name: 'VPIDR_EL2', op0: 3, op1: 4, crn: 0, crm: 0, op2: 0 });
const REVIDR_EL1 = Object.freeze({ name: 'REVIDR_EL1', op0: 3, op1: 0, crn: 0, crm: 0, op2: 6 });
const AIDR_EL1 = Object.freeze({ name: 'AIDR_EL1', op0: 3, op1: 1, crn: 0, crm: 0, op2: 7 });

export type { Arm64MachineOptions, Arm64MachineDescription } from './description.js';

/** Code invalidated by other vCPUs that one vCPU's engine must drop: everything, or [begin, end) ranges. */
interface StaleCode {
  all: boolean;
  ranges: [bigint, bigint][];
}
/** The architectural minimum data/instruction cache line (CTR_EL0 IminLine 4 words: 64 bytes on Unicorn's max CPU). */
const CACHE_LINE = 64n;
const PAGE_MASK = 0xfffn;
/** Upper half of the 48/52-bit virtual address space (TTBR1: the kernel's, shared by every CPU). */
const KERNEL_VA = 0xffff_0000_0000_0000n;
const MAX_STALE_RANGES = 4096;
/** Slice bounds for a vCPU running alone in count mode (see soloSlice). */
const SOLO_SLICE_MAX = 2_000_000;
const SLICE_MIN = 10_000;
/** How often (host ms) 'interrupt-pending' reads the vCPU's timers: 10 µs. */
const TIMER_POLL_MS = 0.01;

export class Arm64Machine extends RuntimeMachine<TrapRouter, Arm64VcpuStateValue, Arm64VcpuState> implements Machine, VcpuHost {
  readonly arch: Arch = 'arm64';
  readonly vcpuCount: number;
  readonly memory: GuestMemory;
  readonly ramSize: number;
  readonly ram32: Uint32Array;
  readonly uart: Pl011;
  private readonly ram: HostRam;
  private readonly vcpus: Vcpu[] = [];
  private readonly sliceInstructions: number;
  /** VcpuHost: the Machine handlers see through VcpuContext.machine. */
  get machine(): Machine {
    return this;
  }
  /** The router whose trap paths the vCPUs are prepared for. */
  private prepared: TrapRouter | undefined;
  private readonly registerWindow: boolean;
  protected readonly runtime: MachineRuntime;
  protected readonly vcpuCodec = arm64VcpuCodec;
  /** Per vCPU, the code other vCPUs invalidated since it last ran (see codeChanged). */
  private readonly staleCode: StaleCode[] = [];
  private memFault: MemFault | undefined;
  /** The GIC distributor (devices/gicd.ts), shared by every vCPU. */
  readonly gicd!: GicDistributor;
  /** Guest pages removed from RAM (memory/holes.ts): removeGuestPages / addGuestPages. */
  private readonly holes: GuestPageHoles;
  /**
   * What an HVC with a non-zero immediate does (traps.ts HvcImmediates): the option, else a
   * restored snapshot's, else the build's personality when a router is attached.
   */
  private hvcRule: HvcImmediates | undefined;
  /**
   * Whether a CPU_ON gives its target the caller's data endianness (SCTLR_EL1.EE), as KVM does:
   * 'caller'; or always little-endian, as this machine did before: 'little', kept for VMs
   * restored from snapshots that predate the field.
   */
  private readonly cpuOnEndian: CpuOnEndianness;
  /** vCPUs whose pending CPU_ON came from a big-endian caller: they reset with SCTLR_EL1.EE set. */
  private readonly bigEndianOn = new Set<number>();
  /** The vCPU whose hypercall is being handled (the CPU_ON caller), else undefined. */
  private trapping: Vcpu | undefined;

  constructor(options: Arm64MachineOptions = {}) {
    super();
    const { vcpus: n, ramSize: size } = checkArm64Options(options);
    this.vcpuCount = n;
    this.ramSize = size;
    this.sliceInstructions = options.sliceInstructions ?? 100_000;
    this.hvcRule = options.hvcImmediates;
    this.cpuOnEndian = options.cpuOnEndianness ?? 'caller';
    this.registerWindow = options.registerWindow ?? process.env.PLUGVISOR_ARM64_REGISTER_WINDOW !== '0';
    const sink = options.console ?? ((b: Uint8Array) => void process.stdout.write(b));
    this.uart = new Pl011(sink);
    this.ram = HostRam.allocate(size);
    this.ram32 = new Uint32Array(this.ram.bytes.buffer, this.ram.bytes.byteOffset, size >>> 2);
    this.holes = new GuestPageHoles(this.vcpus, this.ram, size);
    this.memory = new HoleAwareMemory(new FlatGuestMemory([{ base: Layout.RAM_BASE, bytes: this.ram.bytes }]), this.holes.set);
    this.runtime = new MachineRuntime(
      {
        reset: (i, entry, context) => this.vcpus[i]!.reset(entry, context, this.bigEndianOn.delete(i)),
        interruptPending: (i) => {
          const v = this.vcpus[i]!;
          v.pollTimers();
          return v.gic.irqAsserted;
        },
        wakeAt: (i) => this.wakeAt(this.vcpus[i]!),
        runSlice: (i, slice) => this.slice(this.vcpus[i]!, slice.shared),
        // Only flagged: the trap path stops the engine after a hypercall handler. A stop from
        // inside a device access (uc_emu_stop in an MMIO hook) makes Unicorn execute the access
        // again when the engine next starts — a GICD_SGIR store re-sent its SGI forever — so a
        // request raised there (an interrupt, a console line an operator waits for) takes
        // effect at the end of the slice.
        stop: (i) => {
          this.vcpus[i]!.kick = true;
        },
        entryFault: (_i, entry, translated) => entryProblem(entry, translated, this.ramSize),
      },
      n,
    );
    try {
      const board = {
        ram: this.ram,
        uart: this.uart,
        host: this,
        registerWindow: this.registerWindow,
        codeChanged: (v: Vcpu) => this.codeChanged(v),
        memFault: (f: MemFault) => void (this.memFault ??= f),
        distributor: () => this.gicd,
      };
      for (let i = 0; i < n; i++) this.vcpus.push(openVcpu(i, board));
      // The virtual counter starts at 0 when the machine is made, as under KVM
      // (arch/arm64/kvm/arch_timer.c: a new VM's CNTVOFF is the physical count at creation).
      this.continueCounter(0n);
      // A distributor access can raise another vCPU's IRQ (an SGI, an enable, a retargeted SPI):
      // it is woken, or the running one stopped, as for Machine.setInterrupt.
      // A GICv2 serves at most 8 CPUs (GICD_ITARGETSR has 8 bits): vCPUs past the eighth have
      // their CPU interface (interrupts raised by the machine) but no distributor.
      this.gicd = new GicDistributor(
        this.vcpus.slice(0, GICD_MAX_CPUS).map((v) => v.gic),
        (i) => {
          if (this.vcpus[i]!.gic.irqAsserted) this.runtime.interruptRaised(i);
        },
      );
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  // ---- images ---------------------------------------------------------------------------------

  /** Loads an ELF64 (PT_LOAD at p_paddr) or, for anything else, a raw image at `rawAddress`. */
  loadImage(bytes: Uint8Array, rawAddress: bigint = Layout.RAM_BASE): LoadedImage {
    const img = isElf(bytes) ? loadElf(bytes, this.memory) : loadRaw(bytes, this.memory, rawAddress);
    // Engines may hold translations of the old contents (one TB cache per engine).
    // An empty segment (a zero-length raw image) has nothing to drop: uc_ctl refuses an empty range (UC_ERR_ARG).
    for (const v of this.vcpus) for (const seg of img.segments) if (seg.end > seg.start) v.engine.removeCache(seg.start, seg.end);
    return img;
  }

  /**
   * How traps move registers: 'window' (the engines' register memory, no FFI call) or
   * 'batches' (uc_reg_read_batch / uc_reg_write_batch per mask). See registerWindow.
   */
  get registerTransport(): 'window' | 'batches' {
    return this.vcpus.every((v) => v.directRegisters) ? 'window' : 'batches';
  }

  // ---- Machine interface --------------------------------------------------------------------

  affinityOf(vcpu: number): bigint {
    return this.vcpu(vcpu).affinity;
  }

  vcpuByAffinity(affinity: bigint): number {
    const want = affinity & MPIDR_AFF_MASK;
    for (const v of this.vcpus) if (v.affinity === want) return v.index;
    return -1;
  }

  /** Capabilities: 'counter-clock' (sampleClock), 'interrupt-config' (configureInterrupt), 'cpu-identity', 'guest-pages' (the page holes), 'interrupt-pending'; made once. */
  private readonly capabilities: Partial<MachineCapabilities> = Object.freeze({
    'counter-clock': { sample: (c: 'virtual' | 'physical') => this.sampleClock(c) },
    'interrupt-config': { configure: (i: number, t: 'level' | 'edge') => this.configureInterrupt(i, t) },
    // MIDR_EL1 as an EL1 guest reads it is VPIDR_EL2 (Arm ARM D23.2.110); REVIDR_EL1, AIDR_EL1 as the CPU model has them.
    'cpu-identity': {
      read: (i: number) => {
        const e = this.vcpu(i).engine;
        return { midr: e.readSys(VPIDR_EL2), revidr: e.readSys(REVIDR_EL1), aidr: e.readSys(AIDR_EL1) };
      },
    },
    // For preemptible calls between units of work (core continueCall): timers are brought up to
    // date first, so a tick that fell due during a long call counts.
    // The memory reservation ops (Xen's guest_remove_page / guest_physmap_add_page): memory/holes.ts.
    'guest-pages': {
      remove: (gpa: bigint, count: number) => this.removeGuestPages(gpa, count),
      add: (gpa: bigint, count: number) => this.addGuestPages(gpa, count),
      isPresent: (gpa: bigint) => this.isGuestPagePresent(gpa),
      size: () => {
        const pages = this.ramSize / GUEST_PAGE_SIZE;
        return { base: Layout.RAM_BASE, pages, present: pages - this.holes.count };
      },
    },
    // Xen's hypercall_preempt_check asks local_events_need_delivery(), which is false while the
    // guest masks IRQs (vcpu_event_delivery_is_enabled: PSTATE.I at the trap,
    // xen/arch/arm/include/asm/event.h): a call made with IRQs masked runs its full budget.
    // Reading the timers costs engine calls (about 4 µs), and a preemptible call asks between
    // every unit of work (Xen: every extent), so they are read at most every TIMER_POLL_MS of host
    // time; a line raised otherwise (setInterrupt, an SGI) is in the GIC state and seen at once.
    // Hypercall pointer arguments as the guest's translation gives them (copy_from_guest on Xen).
    'guest-virtual': { translate: (i: number, va: bigint) => this.vcpu(i).physicalOf(va) },
    'interrupt-pending': {
      pending: (i: number) => {
        const v = this.vcpu(i);
        const now = performance.now();
        if (!(now - (this.timersPolledAt[i] ?? -Infinity) < TIMER_POLL_MS)) {
          this.timersPolledAt[i] = now;
          v.pollTimers();
        }
        return v.gic.irqAsserted && (v.pstate() & PSTATE_I) === 0;
      },
    },
  });

  /** Per vCPU: performance.now() when 'interrupt-pending' last read its timers. */
  private readonly timersPolledAt: number[] = [];

  capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    return this.capabilities[name] as MachineCapabilities[K] | undefined;
  }

  configureInterrupt(intid: number, trigger: 'level' | 'edge'): void {
    for (const v of this.vcpus) v.gic.configure(intid, trigger);
  }

  setInterrupt(vcpu: number, intid: number, level: boolean): void {
    const v = this.vcpu(vcpu);
    v.gic.setLine(intid, level);
    // The runtime stops the running vCPU if the interrupt is for it, or wakes a parked one
    // (which must now get time slices).
    if (level) this.runtime.interruptRaised(vcpu);
  }

  /**
   * The host wall clock and the guest-visible virtual or physical counter, sampled together
   * (KVM PTP), as seen by the vCPU currently trapping (vCPU 0 between runs). See cpu/clock.ts.
   */
  sampleClock(counter: 'virtual' | 'physical'): ClockSample {
    const running = this.runtime.runningVcpu;
    return sampleClock(this.vcpus[running >= 0 ? running : 0]!.engine, counter);
  }

  private vcpu(i: number): Vcpu {
    return this.vcpuAt(this.vcpus, i);
  }

  /** The virtual counter value at which run() pauses (pauseAtGuestTime), or undefined. */
  private pauseAtCounter: bigint | undefined;

  /**
   * run() returns { kind: 'paused' } once the guest's virtual counter (its time: 0 when the
   * machine was made, continued across restores) has reached `seconds`: a counted slice ends
   * there (soloSlice), and a sleep with every vCPU in WFI ends there too (wakeAt) — a tickless
   * kernel may sleep far past it otherwise.
   */
  pauseAtGuestTime(seconds: number): void {
    this.pauseAtCounter = BigInt(Math.round(seconds * this.counterHz));
  }

  /** Counter ticks until the pause an operator aimed at (pauseAtGuestTime), or undefined. */
  private ticksToPause(v: Vcpu): bigint | undefined {
    if (this.pauseAtCounter === undefined) return undefined;
    const now = v.engine.readSys(CNTVCT_EL0);
    return now >= this.pauseAtCounter ? 0n : this.pauseAtCounter - now;
  }

  /** Requests the pause once the guest's clock has reached the time aimed at (one pause only); true then. */
  private checkGuestTime(v: Vcpu): boolean {
    if (this.ticksToPause(v) !== 0n) return false;
    this.runtime.requestPause(`guest time ${this.guestTime().toFixed(3)} s`);
    this.pauseAtCounter = undefined;
    return true;
  }

  /** The guest's time in seconds: its virtual counter over its frequency. */
  guestTime(): number {
    return Number(this.vcpus[0]!.engine.readSys(CNTVCT_EL0)) / this.counterHz;
  }

  /** The generic timer's counter frequency (CNTFRQ_EL0; 62.5 MHz on Unicorn's QEMU), read once. */
  private get counterHz(): number {
    return (this.counterFrequency ||= Number(this.vcpus[0]!.engine.readSys(Sys.CNTFRQ_EL0)) || COUNTER_HZ);
  }
  private counterFrequency = 0;

  /** Guest instructions per ms, as the last full slices ran (a moving average). */
  private instructionsPerMs = 100_000;

  /**
   * The slice of a vCPU running alone in count mode: up to its next timer deadline at the speed
   * the engine has been running (so the interrupt is on time), at most SOLO_SLICE_MAX
   * instructions (a pause or a device interrupt waits no longer), at least SLICE_MIN.
   */
  private soloSlice(v: Vcpu): number {
    const ticks = earlier(v.timer.ticksToNext(), this.ticksToPause(v));
    if (ticks === undefined) return SOLO_SLICE_MAX;
    const n = ((Number(ticks) * 1000) / this.counterHz) * this.instructionsPerMs;
    return Math.max(SLICE_MIN, Math.min(SOLO_SLICE_MAX, Math.round(n)));
  }

  /** Learns the engine's speed from a slice that ran its whole `count` in `ms` (long enough ones only). */
  private measureSpeed(count: number, ms: number): void {
    if (count >= UNLIMITED_COUNT || count < SLICE_MIN || ms < 0.2) return;
    this.instructionsPerMs = this.instructionsPerMs * 0.8 + (count / ms) * 0.2;
  }

  /** When vCPU `v`'s next timer interrupt is due, as a performance.now() time (runtime wakeAt). */
  private wakeAt(v: Vcpu): number | undefined {
    // An idle guest (every vCPU in WFI, a tickless kernel's timer far off) still pauses at the
    // time an operator aimed at: the sleep ends there, and the pause is requested once it is reached.
    if (this.checkGuestTime(v)) return performance.now();
    const ticks = earlier(v.timer.ticksToNext(), this.ticksToPause(v));
    if (ticks === undefined) return undefined;
    return performance.now() + (Number(ticks) * 1000) / this.counterHz;
  }

  /**
   * Every engine counts instructions from its first run (see runEngine: count mode). An OS arms
   * its timers — and so needs slices — right after turning its MMU on, when entering count mode
   * would cost a full translation flush (UC_CTL_TB_FLUSH, seconds with a kernel's worth of
   * blocks); counting from the start costs nothing then. Call before the first run.
   */
  countFromStart(): void {
    for (const v of this.vcpus) if (!v.ran) v.counted = true;
  }

  /**
   * A vCPU invalidated code (VcpuHost.codeChanged): every other engine drops its translations of
   * it before it next runs (see runEngine). A kernel line (upper half of the address space: the
   * same mapping on every vCPU) is dropped by address, contiguous lines as one range; anything
   * else — a user address, whose mapping depends on the process a vCPU runs, IC IALLU(IS), or
   * too many ranges — drops everything.
   */
  codeChanged(from: Vcpu, line?: bigint): void {
    if (this.vcpuCount === 1) return;
    for (const v of this.vcpus) {
      if (v === from) continue;
      const stale = (this.staleCode[v.index] ??= { all: false, ranges: [] });
      if (stale.all) continue;
      if (line === undefined || line < KERNEL_VA || stale.ranges.length >= MAX_STALE_RANGES) {
        stale.all = true;
        stale.ranges.length = 0;
        continue;
      }
      const begin = line & ~(CACHE_LINE - 1n);
      const last = stale.ranges[stale.ranges.length - 1];
      if (last && last[1] === begin) last[1] = begin + CACHE_LINE;
      else stale.ranges.push([begin, begin + CACHE_LINE]);
    }
  }

  /** Drops what other vCPUs invalidated from `v`'s engine (see codeChanged). */
  private dropStaleCode(v: Vcpu): void {
    const stale = this.staleCode[v.index];
    if (!stale || (!stale.all && stale.ranges.length === 0)) return;
    if (stale.all) this.dropTranslations(v);
    else {
      // uc_ctl_remove_cache translates only a range's first address: one page at a time.
      for (const [begin, end] of stale.ranges) {
        for (let a = begin; a < end; a = (a | PAGE_MASK) + 1n) v.engine.removeCache(a, end < (a | PAGE_MASK) + 1n ? end : (a | PAGE_MASK) + 1n);
      }
    }
    stale.all = false;
    stale.ranges.length = 0;
  }

  /**
   * Drops every block `v`'s engine translated from RAM, by physical range: uc_ctl_remove_cache
   * takes the address through the engine's current translation, so with the MMU on it is
   * turned off for the call (Vcpu.withMmuOff). Not UC_CTL_TB_FLUSH: it rewrites the engine's
   * whole code buffer, seconds of page zeroing the first time. An engine that never ran has none.
   */
  dropTranslations(v: Vcpu): void {
    if (!v.ran) return;
    // From the first page the guest still has: no translation exists of removed pages, and
    // uc_ctl_remove_cache drops nothing when the range's first address cannot be translated.
    const from = this.holes.firstPresent();
    if (from !== undefined) v.withMmuOff(() => v.engine.removeCache(from, Layout.RAM_BASE + BigInt(this.ramSize)));
  }

  // ---- guest pages (memory/holes.ts) -------------------------------------------------------------

  /**
   * Removes `count` 4 KiB pages from guest RAM at `gpa` (4 KiB aligned, inside RAM; pages already
   * removed stay so): a guest access to one then takes the abort Xen injects (memory/holes.ts),
   * a service's access through `memory` fails, and the host memory is given back. Returns how
   * many pages were removed. May be called from a hypercall handler.
   */
  removeGuestPages(gpa: bigint, count: number): number {
    return this.holes.remove(gpa, count);
  }

  /** Puts removed pages of [gpa, gpa + count pages) back, zeroed; returns how many. */
  addGuestPages(gpa: bigint, count: number): number {
    return this.holes.add(gpa, count);
  }

  /** Is the 4 KiB page holding `gpa` RAM the guest has (not removed, inside RAM)? */
  isGuestPagePresent(gpa: bigint): boolean {
    return this.holes.isPresent(gpa);
  }

  /** The removed pages as ascending runs. */
  guestPageHoles(): { gpa: bigint; pages: number }[] {
    return this.holes.save().map(([gpa, pages]) => ({ gpa: BigInt(gpa), pages }));
  }

  /** VcpuHost: an exception the CPU model took to EL2 that may be a stage 2 abort on a removed page. */
  stage2Abort(v: Vcpu, cpu: CpuInternals): boolean | GuestFault {
    return this.holes.count === 0 ? false : this.holes.onStage2Abort(v, cpu);
  }

  // ---- traps (called from the engine's interrupt hook) ---------------------------------------

  /**
   * The VM's HVC personality (traps.ts HvcImmediates). Fixed once known: by the option, by a
   * restored snapshot, or by the first router attached (`personalityOf` its build).
   */
  get hvcImmediates(): HvcImmediates {
    return (this.hvcRule ??= 'kvm-xen');
  }

  /**
   * CPU_ON (the runtime's, pending until the target next runs). Called from a hypercall handler
   * (svc-psci), the target resets with the caller's data endianness, as KVM's kvm_psci_vcpu_on
   * records it (`reset_state.be = kvm_vcpu_is_be(source_vcpu)`, Linux arch/arm64/kvm/psci.c) and
   * kvm_reset_vcpu applies it (SCTLR_EL1.EE); from the host (no caller) little-endian, as a
   * vCPU's KVM_ARM_VCPU_INIT reset. A machine made 'little' (an older snapshot's) never sets it.
   */
  override powerOn(vcpu: number, entry: bigint, context: bigint): void {
    super.powerOn(vcpu, entry, context);
    if (this.cpuOnEndian === 'caller' && this.trapping?.dataBigEndian()) this.bigEndianOn.add(vcpu);
    else this.bigEndianOn.delete(vcpu);
  }

  /** Attaches the VM's router; a machine whose HVC personality is not fixed yet takes its build's. */
  override attach(router: TrapRouter): void {
    super.attach(router);
    this.hvcRule ??= personalityOf(router);
  }

  onHypercall(v: Vcpu, intno: number, imm16: number): void {
    const conduit = intno === Excp.HVC ? hvcConduit(imm16, this.hvcRule ?? 'kvm-xen') : smcConduit(imm16);
    if (conduit) {
      this.trapping = v;
      let back: number;
      try {
        back = v.route(conduit.index);
      } finally {
        this.trapping = undefined;
      }
      if (back !== 0) v.rewind(back);
      // A handler removed guest pages: this engine sees it before the guest runs on (memory/holes.ts).
      if (this.holes.unsettled(v)) this.holes.settle(v);
    } else if (intno === Excp.SMC) {
      v.setX0Signed(SMC_UNKNOWN_IMM_X0); // TrapKind.SMC_REJECT
    } else {
      // HVC with an immediate no conduit takes: Xen's UNDEF (ELR past it) or the legacy one (ELR at it)
      v.exception = { intno: this.hvcRule === 'xen' ? -TrapKind.UNDEF_PAST : -TrapKind.UNDEF };
      v.kick = true;
    }
    this.runtime.trapped();
  }

  // ---- the run loop: the runtime's (RuntimeMachine.run), with this backend's slices ----------

  /** The ABI is frozen once the router started: each vCPU prepares the register transfer of every call class. */
  protected override prepareRun(router: TrapRouter): void {
    if (this.prepared === router) return;
    const paths = trapPaths(router);
    for (const v of this.vcpus) v.prepare(paths);
    this.prepared = router;
  }

  protected flushConsole(): void {
    this.uart.flush();
  }

  /** Runs one vCPU for one slice (MachineRuntime's runSlice). */
  private slice(v: Vcpu, others: boolean): VcpuExit {
    const end = this.runEngine(v, others);
    this.checkGuestTime(v);
    if (end === 'wfi') return HALT;
    return end ? { kind: 'fault', fault: end } : YIELD;
  }

  private runEngine(v: Vcpu, others: boolean): GuestFault | 'wfi' | undefined {
    // Code another vCPU wrote is invisible to this engine's translation cache. Guests
    // publish code changes with IC maintenance instructions, as the architecture requires
    // (other CPUs' instruction fetches are not coherent with stores until then): what other
    // vCPUs invalidated since this one last ran is dropped first.
    this.dropStaleCode(v);
    // Guest pages removed since this engine last ran (memory/holes.ts).
    if (this.holes.unsettled(v)) this.holes.settle(v);
    try {
      // The timers' lines follow the counter; the vCPU's IRQ input follows its GIC CPU
      // interface (a virtual IRQ the CPU model takes itself when PSTATE.I allows: Vcpu.syncIrq).
      v.pollTimers();
      // Slices end on an instruction count, on 1 vCPU as on N — never on uc_emu_start's timeout:
      // the timeout stops the engine from Unicorn's timer thread (uc.c enable_emu_timer ->
      // uc_emu_stop), and a stop landing while a hook runs made Unicorn execute the trapping
      // instruction again (a store applied twice, a console line printed twice, registers
      // corrupted) or lose the stop (a spinning vCPU never yielded). A count stops on an
      // instruction boundary (uc.c hook_count_cb, a code hook run before every instruction) and
      // makes the run deterministic. An engine runs without any limit (count 0: no code hook, the
      // single-vCPU hot path) until it first needs a slice — another vCPU is runnable, or a timer
      // is armed. From then on it counts, and always runs in slices: timer deadlines, a pause an
      // operator asked for and interrupts raised from devices are checked between them, and a
      // timer armed in the middle of a slice is met by the next one. A start with count 0 would
      // delete the count hook and drop every translation, and adding the hook does not
      // retranslate blocks translated without it (they would never count), so this engine's RAM
      // translations are dropped once when it enters count mode (an OS guest counts from the
      // start instead: countFromStart).
      let count = 0;
      if (others || v.counted || v.timer.armed()) {
        count = others ? this.sliceInstructions : this.soloSlice(v);
        if (!v.counted) {
          v.counted = true;
          this.dropTranslations(v);
        }
      }
      v.ran = true;
      v.kick = false;
      v.exception = null;
      this.memFault = undefined;
      const begin = v.pc();
      const started = performance.now();
      const rc = v.engine.start(begin, 0n, 0, count);
      const ms = performance.now() - started;
      this.uart.flush();
      const pc = v.pc();
      // A slice nothing cut short ran its whole count: the engine's speed.
      if (rc === 0 && !v.kick && v.exception === null && this.memFault === undefined && !v.stoppedAtWfi(pc)) this.measureSpeed(count, ms);
      if (rc !== 0 || (this.memFault as MemFault | undefined)) {
        const f = this.memFault as MemFault | undefined;
        const cause = f
          ? `${UcMemType[f.type] ?? `memory fault type ${f.type}`} at 0x${f.address.toString(16)} (size ${f.size}): outside RAM and devices`
          : `engine error ${rc}`;
        return new GuestFault(v.index, pc, cause);
      }
      const exc = v.exception as TakenException | null;
      if (exc?.fault) return exc.fault;
      if (exc?.aboveEl1 !== undefined) {
        v.exception = null;
        v.undefFromAbove(exc.aboveEl1);
        return undefined;
      }
      if (exc) return deliverException(v, exc.intno, pc, this.ram32, this.ramSize);
      if (v.kick || this.runtime.powerState(v.index) !== 'on') return undefined;
      if (pc === 0n) return new GuestFault(v.index, pc, 'jump to address 0');
      // WFI: the runtime parks the vCPU until an interrupt is pending (it may already be, e.g. masked).
      if (v.stoppedAtWfi(pc)) return 'wfi';
      // No progress: Unicorn 2.0.1 returns success without calling the invalid-fetch hook when
      // the PC it starts at cannot be fetched (past RAM, a device); restarting would spin
      // forever. Backstop to the runtime's entry check: a PC we cannot run from is a fault, and
      // so is a slice without a count limit that ended where it began with nothing to stop it.
      if (pc === begin) {
        const why = entryProblem(pc, v.mmu, this.ramSize);
        if (why !== undefined) return new GuestFault(v.index, pc, `cannot execute there: ${why}`);
        if (count === 0) return new GuestFault(v.index, pc, 'no progress: the engine ran no instruction from this address');
      }
      return undefined;
    } catch (e) {
      if (e instanceof GuestFault) return e;
      throw e;
    }
  }

  // ---- snapshots: framing in RuntimeMachine (vcpuState, saveVcpu, image); codec cpu/state.ts --

  protected saveCpu(i: number): Omit<Arm64VcpuStateValue, 'run'> {
    return arm64VcpuStateValue(this.vcpu(i).save());
  }

  protected restoreCpu(i: number, state: Arm64VcpuState, enter: boolean): void {
    const v = this.vcpu(i);
    v.restore(state, enter);
    if (enter) this.dropTranslations(v);
  }

  /** A restored vCPU resumes at its PC, a virtual address when its SCTLR_EL1.M is set. */
  protected override entryOf(state: Arm64VcpuState): { pc: bigint; translated: boolean } {
    const sctlr = state.cpu.sysregs[SAVED_SYSREGS.indexOf(Sys.SCTLR_EL1)] ?? 0n;
    return { pc: state.cpu.core[31]!, translated: (sctlr & SCTLR_M) !== 0n };
  }

  describe(): Arm64MachineDescription {
    const ramBase = `0x${Layout.RAM_BASE.toString(16)}`;
    const virtualCounter = this.vcpus[0]!.engine.readSys(CNTVCT_EL0).toString();
    return {
      board: 'plugvisor-virt',
      schema: 1,
      ramBase,
      ramSize: this.ramSize,
      vcpus: this.vcpuCount,
      uart: this.uart.save(),
      gicd: this.gicd.save(),
      nextVcpu: this.runtime.nextVcpu,
      virtualCounter,
      ...(this.holes.count > 0 ? { holes: this.holes.save() } : {}),
      hvcImmediates: this.hvcImmediates,
      cpuOnEndianness: this.cpuOnEndian,
      ...(this.bigEndianOn.size > 0 ? { bigEndianCpuOn: [...this.bigEndianOn].sort((a, b) => a - b) } : {}),
    };
  }

  /** Builds a machine from a snapshot image (RAM contents, device and vCPU state); the caller attaches the restored VM and calls run(). */
  static fromImage(image: MachineImage, options: Omit<Arm64MachineOptions, 'vcpus' | 'memSize'> = {}): Arm64Machine {
    const d = validateArm64Description(image.description, image.vcpus.length);
    // A snapshot from before HVC personalities: its guest saw the legacy rule, and keeps it.
    // ... and one from before CPU_ON carried the caller's endianness started every target little-endian.
    const build = () =>
      new Arm64Machine({ ...options, vcpus: d.vcpus, memSize: d.ramSize, hvcImmediates: d.hvcImmediates ?? 'legacy', cpuOnEndianness: d.cpuOnEndianness ?? 'little' });
    return RuntimeMachine.restoreImage(image, arm64VcpuCodec.decode, build, d.nextVcpu, (m) => {
      m.uart.restore(d.uart);
      if (d.gicd) m.gicd.restore(d.gicd);
      // Removed pages (absent in snapshots of builds before them, and when none were removed).
      if (d.holes) m.holes.restore(parseArm64Holes(d));
      for (const i of d.bigEndianCpuOn ?? []) m.bigEndianOn.add(i);
      // A snapshot from before the counter was saved: its guest saw the host's counter (CNTVOFF 0).
      if (d.virtualCounter !== undefined) m.continueCounter(BigInt(d.virtualCounter));
      else for (const v of m.vcpus) v.engine.writeSys(Sys.CNTVOFF_EL2, 0n);
    });
  }

  /**
   * Makes every vCPU's virtual counter read `value` now and run on from there (CNTVOFF_EL2 =
   * CNTPCT_EL0 - value: qemu/target/arm/helper.c gt_virt_cnt_read), so a restored guest's clock
   * neither jumps nor runs backwards whatever host or process it left. The virtual timers' compare
   * values are in the same units and stay valid. (The physical counter follows the host; Linux
   * at EL1 uses the virtual one: drivers/clocksource/arm_arch_timer.c.)
   */
  private continueCounter(value: bigint): void {
    const physical = this.vcpus[0]!.engine.readSys(CNTPCT_EL0);
    const offset = BigInt.asUintN(64, physical - value);
    for (const v of this.vcpus) v.engine.writeSys(Sys.CNTVOFF_EL2, offset);
  }

  /** Closes every engine and frees guest RAM. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vcpus) v.engine.close();
    this.holes.dispose();
    this.ram.free();
  }
}


/** The sooner of two optional tick counts. */
function earlier(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a < b ? a : b;
}
