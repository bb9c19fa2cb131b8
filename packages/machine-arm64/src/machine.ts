import type { RunOptions, RunResult } from '@plugvisor/core';
/**
 * The arm64 machine: a QEMU-virt-like board (RAM, PL011 UART, a minimal GIC CPU interface)
 * with N vCPUs, each a Unicorn engine over the same host RAM, scheduled round-robin on the one
 * JS thread.
 *
 * Scheduling. A vCPU runs until something needs the host: a hypercall handler asked to stop
 * (power change, system event, pause, an interrupt for the running vCPU), a guest exception
 * that must be delivered, WFI (Unicorn ends the run on WFI: EXCP_HLT), or — when another vCPU
 * is runnable, or an interrupt waits for the guest to unmask it — the time slice ends
 * (uc_emu_start's timeout). So a vCPU spinning on a flag gets preempted and the vCPU that will
 * set the flag runs. A lone runnable vCPU with nothing pending runs with no timeout at all, so
 * the single-vCPU hot path pays nothing for scheduling.
 *
 * Code written by one vCPU (or the host) is not seen by another engine's cache of translated
 * blocks (node-ffi.md P4): whenever the scheduler switches engines it flushes the incoming
 * engine's translation cache.
 */
import {
  FlatGuestMemory,
  type Arch,
  type GuestMemory,
  type Machine,
  type MachineImage,
  type SystemEvent,
  type VcpuPowerState,
} from '@plugvisor/core';
import { HostRam, UcEngine, UcMemType, UNLIMITED_COUNT, type MemFault } from './ffi/unicorn.js';
import { Layout } from './board/layout.js';
import { Pl011, type Pl011State } from './devices/pl011.js';
import { Vcpu, Excp, EC, MPIDR_AFF_MASK, type VcpuHost } from './cpu/vcpu.js';
import { sampleClock, type ClockSample } from './cpu/clock.js';
import { GuestFault, MachineError } from './errors.js';
import { isElf, loadElf, loadRaw, type LoadedImage } from './loader/elf.js';
import { TrapKind, hvcConduit, smcConduit, startRouter, trapPaths, type TrapRouter } from './traps.js';

export interface Arm64MachineOptions {
  /** Number of vCPUs (default 1). vCPU 0 boots; the others start powered off. */
  vcpus?: number;
  /** Guest RAM size in bytes (default 128 MiB, multiple of 4 KiB). */
  memSize?: number;
  /** Receives console output (UART data register writes). Default: process.stdout. */
  console?: (bytes: Uint8Array) => void;
  /** Instructions per slice when several vCPUs are runnable (default 100000). */
  sliceInstructions?: number;
  /** Polling period while a single vCPU's interrupt waits for the guest to unmask it, µs (default 2000). */
  sliceUs?: number;
  /**
   * Move trap registers through the engine's register memory when it can be found and proven
   * (README "Traps"), else with uc_reg_*_batch calls. False: always batches. Default: true,
   * unless the environment sets PLUGVISOR_ARM64_REGISTER_WINDOW=0 (to test the batch path).
   */
  registerWindow?: boolean;
}

/** The board and device state a snapshot carries beside the per-vCPU blobs. */
export interface Arm64MachineDescription {
  readonly board: 'plugvisor-virt';
  readonly schema: 1;
  readonly ramBase: string;
  readonly ramSize: number;
  readonly vcpus: number;
  readonly uart: Pl011State;
  /** Index of the vCPU the round-robin scheduler runs next. */
  readonly nextVcpu: number;
}

const ROM = (() => {
  const rom = new Uint8Array(Layout.ROM_SIZE);
  new DataView(rom.buffer).setUint32(Layout.ROM_ERET, 0xd69f03e0, true); // eret
  return rom;
})();

export class Arm64Machine implements Machine, VcpuHost {
  readonly arch: Arch = 'arm64';
  readonly vcpuCount: number;
  readonly memory: GuestMemory;
  readonly ramSize: number;
  readonly ram32: Uint32Array;
  readonly uart: Pl011;
  private readonly ram: HostRam;
  private readonly vcpus: Vcpu[] = [];
  private readonly sliceUs: number;
  private readonly sliceInstructions: number;
  /** VcpuHost: the Machine handlers see through VcpuContext.machine. */
  get machine(): Machine {
    return this;
  }
  private router: TrapRouter | undefined;
  private started = false;
  /** The router whose trap paths the vCPUs are prepared for. */
  private prepared: TrapRouter | undefined;
  private readonly registerWindow: boolean;
  private running = -1;
  private lastRan = -1;
  /** Bumped when a guest invalidates its instruction cache; see slice(). */
  private codeGeneration = 0;
  private readonly seenGeneration: number[] = [];
  private next = 0;
  private event: SystemEvent | undefined;
  private pauseReason: string | undefined;
  private memFault: MemFault | undefined;
  private trapBudget = Infinity;
  private disposed = false;

  constructor(options: Arm64MachineOptions = {}) {
    const n = options.vcpus ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 512) throw new MachineError(`vCPU count must be 1..512, got ${n}`);
    const size = options.memSize ?? Layout.DEFAULT_RAM_SIZE;
    if (!Number.isInteger(size) || size < 0x10000 || size % 4096 !== 0 || size > 0xc000_0000) {
      throw new MachineError(`RAM size must be a multiple of 4 KiB between 64 KiB and 3 GiB, got ${size}`);
    }
    this.vcpuCount = n;
    this.ramSize = size;
    this.sliceUs = options.sliceUs ?? 2000;
    this.sliceInstructions = options.sliceInstructions ?? 100_000;
    this.registerWindow = options.registerWindow ?? process.env.PLUGVISOR_ARM64_REGISTER_WINDOW !== '0';
    const sink = options.console ?? ((b: Uint8Array) => void process.stdout.write(b));
    this.uart = new Pl011(sink);
    this.ram = HostRam.allocate(size);
    this.ram32 = new Uint32Array(this.ram.bytes.buffer, this.ram.bytes.byteOffset, size >>> 2);
    this.memory = new FlatGuestMemory([{ base: Layout.RAM_BASE, bytes: this.ram.bytes }]);
    try {
      for (let i = 0; i < n; i++) this.vcpus.push(this.createVcpu(i));
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  private createVcpu(i: number): Vcpu {
    const e = UcEngine.open();
    try {
      e.mapRam(Layout.RAM_BASE, this.ram);
      e.mapRom(Layout.ROM_BASE, Layout.ROM_SIZE, ROM);
      e.mapMmio(
        Layout.UART_BASE,
        Layout.UART_SIZE,
        (off) => this.uart.read(off),
        (off, _size, value) => this.uart.write(off, value),
      );
      const v = new Vcpu(i, e, this, this.registerWindow);
      e.mapMmio(
        Layout.GICC_BASE,
        Layout.GICC_SIZE,
        (off) => v.gic.read(off),
        (off, _size, value) => v.gic.write(off, value),
      );
      e.onSys((op1, crn, crm) => {
        // IC IALLUIS (op1 0, CRm 1), IC IALLU / IC IVAU (CRm 5): the guest says code changed.
        // Other engines may hold stale translations of it: they drop them before they next run.
        if (crn === 7 && (crm === 1 || crm === 5) && (op1 === 0 || op1 === 3)) this.codeGeneration++;
      });
      e.onInvalidMemory((f) => {
        if (!this.memFault) this.memFault = f;
      });
      return v;
    } catch (err) {
      e.close();
      throw err;
    }
  }

  // ---- images ---------------------------------------------------------------------------------

  /** Loads an ELF64 (PT_LOAD at p_paddr) or, for anything else, a raw image at `rawAddress`. */
  loadImage(bytes: Uint8Array, rawAddress: bigint = Layout.RAM_BASE): LoadedImage {
    const img = isElf(bytes) ? loadElf(bytes, this.memory) : loadRaw(bytes, this.memory, rawAddress);
    // Engines may hold translations of the old contents (P4).
    for (const v of this.vcpus) for (const seg of img.segments) v.engine.removeCache(seg.start, seg.end);
    return img;
  }

  /** Boot: vCPU 0 on at `entry` (EL1h, MMU off, x0 = 0); others off. */
  boot(entry: bigint): void {
    const v0 = this.vcpus[0]!;
    v0.reset(entry, 0n);
    v0.power = 'on';
  }

  /**
   * How traps move registers: 'window' (the engines' register memory, no FFI call) or
   * 'batches' (uc_reg_read_batch / uc_reg_write_batch per mask). See registerWindow.
   */
  get registerTransport(): 'window' | 'batches' {
    return this.vcpus.every((v) => v.directRegisters) ? 'window' : 'batches';
  }

  /** Attach the VM's trap router (the core's Vm). Must be done before run(). */
  attach(router: TrapRouter): void {
    this.router = router;
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

  powerState(vcpu: number): VcpuPowerState {
    return this.vcpu(vcpu).power;
  }

  powerOn(vcpu: number, entry: bigint, context: bigint): void {
    const v = this.vcpu(vcpu);
    if (v.power !== 'off') throw new MachineError(`vCPU ${vcpu} is not off (${v.power})`);
    v.power = 'on-pending';
    v.pendingOn = { entry, context };
    // The running vCPU may have been running without a time slice (it was alone): stop it so
    // the scheduler starts slicing between it and the new one.
    if (this.running >= 0) this.vcpus[this.running]!.kick = true;
  }

  powerOff(vcpu: number): void {
    const v = this.vcpu(vcpu);
    v.power = 'off';
    v.parked = false;
    v.pendingOn = null;
    this.kick(v);
  }

  idle(vcpu: number): void {
    const v = this.vcpu(vcpu);
    v.parked = true;
    this.kick(v);
  }

  systemEvent(event: SystemEvent): void {
    if (!this.event) this.event = event;
    if (this.running >= 0) this.kick(this.vcpus[this.running]!);
  }

  configureInterrupt(intid: number, trigger: 'level' | 'edge'): void {
    for (const v of this.vcpus) v.gic.configure(intid, trigger);
  }

  setInterrupt(vcpu: number, intid: number, level: boolean): void {
    const v = this.vcpu(vcpu);
    v.gic.setLine(intid, level);
    // Stop the running vCPU if the interrupt is for it, or wakes a parked one (which must now
    // get time slices).
    if (level && this.running >= 0 && (v.index === this.running || v.parked)) this.vcpus[this.running]!.kick = true;
  }

  /**
   * The host wall clock and the guest-visible virtual or physical counter, sampled together
   * (KVM PTP), as seen by the vCPU currently trapping (vCPU 0 between runs). See cpu/clock.ts.
   */
  sampleClock(counter: 'virtual' | 'physical'): ClockSample {
    return sampleClock(this.vcpus[this.running >= 0 ? this.running : 0]!.engine, counter);
  }

  /** Ask run() to return { kind: 'paused' } after the current trap (e.g. to take a snapshot). */
  requestPause(reason = 'requested'): void {
    this.pauseReason = reason;
    if (this.running >= 0) this.kick(this.vcpus[this.running]!);
  }

  private kick(v: Vcpu): void {
    if (v.index === this.running) v.kick = true;
  }

  private vcpu(i: number): Vcpu {
    const v = this.vcpus[i];
    if (!v) throw new MachineError(`no vCPU ${i} (this machine has ${this.vcpuCount})`);
    return v;
  }

  dropTranslations(v: Vcpu): void {
    v.engine.removeCache(Layout.RAM_BASE, Layout.RAM_BASE + BigInt(this.ramSize));
  }

  // ---- traps (called from the engine's interrupt hook) ---------------------------------------

  onHypercall(v: Vcpu, intno: number, imm16: number): void {
    const conduit = intno === Excp.HVC ? hvcConduit(imm16) : smcConduit(imm16);
    if (conduit) {
      v.route(conduit.index);
    } else if (intno === Excp.SMC) {
      v.setX0Signed(-1); // TrapKind.SMC_REJECT
    } else {
      v.exception = { intno: -TrapKind.UNDEF }; // HVC with an unknown immediate
      v.kick = true;
    }
    if (--this.trapBudget <= 0) {
      this.pauseReason ??= 'trap budget reached';
      v.kick = true;
    }
  }

  // ---- the run loop ---------------------------------------------------------------------------

  /**
   * Runs the guest until a system event, a fault, a hang (every powered-on vCPU waits for an
   * interrupt nobody can send), all vCPUs off, or a pause. Console output is flushed on return.
   * May be called again after 'paused' to continue.
   */
  run(options: RunOptions = {}): RunResult {
    if (this.disposed) throw new MachineError('machine disposed');
    if (!this.router) throw new MachineError('no trap router attached: call attach(vm) before run()');
    if (!this.started) {
      startRouter(this.router);
      this.started = true;
    }
    if (this.prepared !== this.router) {
      // The ABI is frozen now: each vCPU prepares the register transfer of every call class.
      const paths = trapPaths(this.router);
      for (const v of this.vcpus) v.prepare(paths);
      this.prepared = this.router;
    }
    this.trapBudget = options.pauseAfterTraps ?? Infinity;
    this.pauseReason = undefined;
    try {
      return this.loop();
    } finally {
      this.running = -1;
      this.uart.flush();
    }
  }

  private loop(): RunResult {
    const n = this.vcpus.length;
    for (;;) {
      if (this.event) return { kind: 'system-event', event: this.event };
      if (this.pauseReason !== undefined) return { kind: 'paused', reason: this.pauseReason };

      // Pick the next runnable vCPU, round-robin; wake parked ones that have an interrupt.
      let pick = -1;
      let runnable = 0;
      let on = 0;
      for (let k = 0; k < n; k++) {
        const v = this.vcpus[(this.next + k) % n]!;
        if (v.power === 'on-pending') {
          v.reset(v.pendingOn!.entry, v.pendingOn!.context);
          v.pendingOn = null;
          v.power = 'on';
          this.router!.vcpuReset?.(v.index);
        }
        if (v.power !== 'on') continue;
        on++;
        if (v.parked && v.gic.irqAsserted) v.parked = false;
        if (v.parked) continue;
        runnable++;
        if (pick < 0) pick = v.index;
      }
      if (on === 0) return { kind: 'all-off' };
      if (pick < 0) {
        return { kind: 'hang', message: `all ${on} powered-on vCPU(s) wait for an interrupt and none is pending` };
      }
      this.next = (pick + 1) % n;
      const v = this.vcpus[pick]!;
      const fault = this.slice(v, runnable > 1);
      if (fault) return { kind: 'fault', fault };
    }
  }

  /** Runs one vCPU for one slice; returns a fault if the guest cannot continue. */
  private slice(v: Vcpu, others: boolean): GuestFault | undefined {
    // Code another vCPU wrote is invisible to this engine's translation cache (P4). Guests
    // publish code changes with IC maintenance instructions, as the architecture requires
    // (other CPUs' instruction fetches are not coherent with stores until then); we count them
    // and drop this engine's translations when one happened since it last ran.
    if ((this.seenGeneration[v.index] ?? 0) !== this.codeGeneration) {
      this.dropTranslations(v);
      this.seenGeneration[v.index] = this.codeGeneration;
    }
    this.lastRan = v.index;
    try {
      // Deliver an unmasked pending IRQ before running; if it is masked, poll with slices so
      // an unmask (msr daifclr) is noticed within one slice.
      let masked = false;
      if (v.gic.irqAsserted) {
        if (v.irqDeliverable()) v.takeException('irq', v.pc(), 0n);
        else masked = true;
      }
      // Slices. A machine with several vCPUs slices by instruction count: Unicorn's timeout stops
      // the engine from another thread, and a stop landing while a hook runs made Unicorn replay
      // the trapping store (a console newline came out twice under load) or lose the stop (a
      // spinning vCPU never yielded). A count stops on an instruction boundary and makes the
      // interleaving deterministic. Unicorn drops every translation when count mode is turned
      // off, so such a machine stays in it, with an effectively unlimited count when one vCPU
      // runs alone. A single-vCPU machine runs unlimited, polling with the timeout only while an
      // interrupt waits for the guest to unmask it.
      const counted = this.vcpus.length > 1;
      const count = counted ? (others || masked ? this.sliceInstructions : UNLIMITED_COUNT) : 0;
      const timeout = !counted && masked ? this.sliceUs : 0;
      v.kick = false;
      v.exception = null;
      this.memFault = undefined;
      this.running = v.index;
      const begin = v.pc();
      this.uart.lineFlush = timeout === 0 && count === 0; // see Pl011.lineFlush
      const rc = v.engine.start(begin, 0n, timeout, count);
      this.running = -1;
      if (timeout !== 0 || count !== 0) this.uart.flush();
      const pc = v.pc();
      if (rc !== 0 || (this.memFault as MemFault | undefined)) {
        const f = this.memFault as MemFault | undefined;
        const cause = f
          ? `${UcMemType[f.type] ?? `memory fault type ${f.type}`} at 0x${f.address.toString(16)} (size ${f.size}): outside RAM and devices`
          : `engine error ${rc}`;
        return new GuestFault(v.index, pc, cause);
      }
      const exc = v.exception as { intno: number } | null;
      if (exc) return this.deliver(v, exc.intno, pc);
      if (v.kick || v.power !== 'on') return undefined;
      if (pc === 0n) return new GuestFault(v.index, pc, 'jump to address 0');
      if ((timeout === 0 || !v.engine.timedOut()) && v.stoppedAtWfi(pc)) {
        // WFI: park until an interrupt is pending (it may already be, e.g. masked).
        if (!v.gic.irqAsserted) v.parked = true;
      }
      return undefined;
    } catch (e) {
      this.running = -1;
      if (e instanceof GuestFault) return e;
      throw e;
    }
  }

  /** Delivers a guest exception Unicorn reported, or turns it into a fault. */
  private deliver(v: Vcpu, intno: number, pc: bigint): GuestFault | undefined {
    v.exception = null;
    const word = (addr: bigint): number | undefined => {
      const off = Number(addr - Layout.RAM_BASE);
      return addr >= Layout.RAM_BASE && off + 4 <= this.ramSize ? this.ram32[off >>> 2] : undefined;
    };
    switch (intno) {
      case -TrapKind.UNDEF: // HVC with an unknown immediate; PC is past it
        v.injectUndef(pc - 4n);
        return undefined;
      case Excp.UDEF: // PC at the instruction
        v.injectUndef(pc);
        return undefined;
      case Excp.SWI: {
        // SVC: PC past it, preferred return = next instruction
        const imm = ((word(pc - 4n) ?? 0) >>> 5) & 0xffff;
        v.takeException('sync', pc, (1n << 25n) | BigInt(EC.SVC64 << 26) | BigInt(imm));
        return undefined;
      }
      case Excp.BKPT: {
        const imm = ((word(pc) ?? 0) >>> 5) & 0xffff;
        v.takeException('sync', pc, (1n << 25n) | BigInt(EC.BRK64 << 26) | BigInt(imm));
        return undefined;
      }
      case Excp.PREFETCH_ABORT:
      case Excp.DATA_ABORT:
        // Unicorn consumes the exception syndrome and fault address; we cannot rebuild them.
        return new GuestFault(v.index, pc, `${intno === Excp.DATA_ABORT ? 'data' : 'instruction'} abort (MMU fault); not delivered by this machine`);
      default:
        return new GuestFault(v.index, pc, `unexpected CPU exception ${intno}`);
    }
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /** The full state of vCPU i (see Vcpu.save for the format). Call only while run() is not active. */
  saveVcpu(i: number): Uint8Array {
    this.assertIdle();
    return this.vcpu(i).save();
  }

  restoreVcpu(i: number, blob: Uint8Array): void {
    this.assertIdle();
    this.vcpu(i).restore(blob);
    this.dropTranslations(this.vcpu(i));
  }

  describe(): Arm64MachineDescription {
    return {
      board: 'plugvisor-virt',
      schema: 1,
      ramBase: `0x${Layout.RAM_BASE.toString(16)}`,
      ramSize: this.ramSize,
      vcpus: this.vcpuCount,
      uart: { ...this.uart.state },
      nextVcpu: this.next,
    };
  }

  /** Everything the core's snapshot stream needs: description, vCPU blobs, RAM. */
  image(): MachineImage {
    this.assertIdle();
    this.uart.flush();
    return {
      arch: 'arm64',
      description: this.describe() as unknown as MachineImage['description'],
      vcpus: this.vcpus.map((v) => v.save()),
      memory: this.memory.regions(),
    };
  }

  /**
   * Builds a machine from a snapshot image (RAM contents, device and vCPU state). The caller
   * attaches the restored VM and calls run(); the router is already started in the source, so
   * `started` tells run() not to start it again only if the router says so (Vm.start is idempotent).
   */
  static fromImage(image: MachineImage, options: Omit<Arm64MachineOptions, 'vcpus' | 'memSize'> = {}): Arm64Machine {
    const d = image.description as unknown as Arm64MachineDescription;
    if (!d || d.board !== 'plugvisor-virt' || d.schema !== 1) {
      throw new MachineError(`snapshot machine description is not a plugvisor-virt arm64 board (schema 1)`);
    }
    if (d.vcpus !== image.vcpus.length) throw new MachineError(`snapshot has ${image.vcpus.length} vCPU blobs for ${d.vcpus} vCPUs`);
    const m = new Arm64Machine({ ...options, vcpus: d.vcpus, memSize: d.ramSize });
    try {
      for (const r of image.memory) m.memory.write(r.base, r.bytes);
      m.uart.state = { ...d.uart };
      m.next = d.nextVcpu % d.vcpus;
      image.vcpus.forEach((blob, i) => m.restoreVcpu(i, blob));
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  private assertIdle(): void {
    if (this.running >= 0) throw new MachineError('vCPU state can only be saved or restored between runs');
  }

  /** Closes every engine and frees guest RAM. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vcpus) v.engine.close();
    this.ram.free();
  }
}

