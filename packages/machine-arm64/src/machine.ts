import type { RunOptions, RunResult } from '@plugvisor/core';
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
 * is runnable, or an interrupt waits for the guest to unmask it — the time slice ends
 * (uc_emu_start's timeout). So a vCPU spinning on a flag gets preempted and the vCPU that will
 * set the flag runs. A lone runnable vCPU with nothing pending runs with no timeout at all, so
 * the single-vCPU hot path pays nothing for scheduling.
 *
 * Code written by one vCPU (or the host) is not seen by another engine's cache of translated
 * blocks (Unicorn keeps one TB cache per uc_engine: qemu/accel/tcg/translate-all.c): whenever the scheduler switches engines it flushes the incoming
 * engine's translation cache.
 */
import {
  FlatGuestMemory,
  MachineRuntime,
  RuntimeMachine,
  YIELD,
  HALT,
  type VcpuExit,
  type CapabilityName,
  type MachineCapabilities,
  type Arch,
  type GuestMemory,
  type Machine,
  type MachineImage,
} from '@plugvisor/core';
import { HostRam, UcEngine, UcMemType, UNLIMITED_COUNT, type MemFault } from './ffi/unicorn.js';
import { Layout } from './board/layout.js';
import { Pl011 } from './devices/pl011.js';
import { validateArm64Description, type Arm64MachineDescription, type Arm64MachineOptions } from './description.js';
import { deliverException } from './cpu/exceptions.js';
import { Vcpu, Excp, MPIDR_AFF_MASK, type VcpuHost } from './cpu/vcpu.js';
import { sampleClock, type ClockSample } from './cpu/clock.js';
import { GuestFault, MachineError } from './errors.js';
import { isElf, loadElf, loadRaw, type LoadedImage } from './loader/elf.js';
import { TrapKind, hvcConduit, smcConduit, startRouter, trapPaths, type TrapRouter } from './traps.js';

export type { Arm64MachineOptions } from './description.js';

export type { Arm64MachineDescription } from './description.js';

const ROM = (() => {
  const rom = new Uint8Array(Layout.ROM_SIZE);
  new DataView(rom.buffer).setUint32(Layout.ROM_ERET, 0xd69f03e0, true); // eret
  return rom;
})();

export class Arm64Machine extends RuntimeMachine implements Machine, VcpuHost {
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
  protected readonly runtime: MachineRuntime;
  /** Bumped when a guest invalidates its instruction cache; see slice(). */
  private codeGeneration = 0;
  private readonly seenGeneration: number[] = [];
  private memFault: MemFault | undefined;
  private disposed = false;

  constructor(options: Arm64MachineOptions = {}) {
    super();
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
    this.runtime = new MachineRuntime(
      {
        reset: (i, entry, context) => this.vcpus[i]!.reset(entry, context),
        interruptPending: (i) => this.vcpus[i]!.gic.irqAsserted,
        runSlice: (i, slice) => this.slice(this.vcpus[i]!, slice.shared),
        stop: (i) => {
          this.vcpus[i]!.kick = true;
        },
      },
      n,
    );
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
    // Engines may hold translations of the old contents (one TB cache per engine).
    for (const v of this.vcpus) for (const seg of img.segments) v.engine.removeCache(seg.start, seg.end);
    return img;
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

  /** Capabilities: 'counter-clock' (sampleClock) and 'interrupt-config' (configureInterrupt). */
  capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    const caps: Partial<MachineCapabilities> = {
      'counter-clock': { sample: (c) => this.sampleClock(c) },
      'interrupt-config': { configure: (i, t) => this.configureInterrupt(i, t) },
    };
    return caps[name] as MachineCapabilities[K] | undefined;
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
    this.runtime.trapped();
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
    try {
      return this.runtime.run(options, this.router);
    } finally {
      this.uart.flush();
    }
  }

  /** Runs one vCPU for one slice (MachineRuntime's runSlice). */
  private slice(v: Vcpu, others: boolean): VcpuExit {
    const end = this.runEngine(v, others);
    if (end === 'wfi') return HALT;
    return end ? { kind: 'fault', fault: end } : YIELD;
  }

  private runEngine(v: Vcpu, others: boolean): GuestFault | 'wfi' | undefined {
    // Code another vCPU wrote is invisible to this engine's translation cache. Guests
    // publish code changes with IC maintenance instructions, as the architecture requires
    // (other CPUs' instruction fetches are not coherent with stores until then); we count them
    // and drop this engine's translations when one happened since it last ran.
    if ((this.seenGeneration[v.index] ?? 0) !== this.codeGeneration) {
      this.dropTranslations(v);
      this.seenGeneration[v.index] = this.codeGeneration;
    }
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
      const begin = v.pc();
      this.uart.lineFlush = timeout === 0 && count === 0; // see Pl011.lineFlush
      const rc = v.engine.start(begin, 0n, timeout, count);
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
      if (exc) return deliverException(v, exc.intno, pc, this.ram32, this.ramSize);
      if (v.kick || this.runtime.powerState(v.index) !== 'on') return undefined;
      if (pc === 0n) return new GuestFault(v.index, pc, 'jump to address 0');
      // WFI: the runtime parks the vCPU until an interrupt is pending (it may already be, e.g. masked).
      if ((timeout === 0 || !v.engine.timedOut()) && v.stoppedAtWfi(pc)) return 'wfi';
      return undefined;
    } catch (e) {
      if (e instanceof GuestFault) return e;
      throw e;
    }
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /** The full state of vCPU i (see Vcpu.save for the format). Call only while run() is not active. */
  saveVcpu(i: number): Uint8Array {
    this.assertIdle();
    return this.vcpu(i).save(this.runtime.saveVcpu(i));
  }

  restoreVcpu(i: number, blob: Uint8Array): void {
    this.assertIdle();
    const v = this.vcpu(i);
    this.runtime.restoreVcpu(i, v.restore(blob));
    this.dropTranslations(v);
  }

  describe(): Arm64MachineDescription {
    return {
      board: 'plugvisor-virt',
      schema: 1,
      ramBase: `0x${Layout.RAM_BASE.toString(16)}`,
      ramSize: this.ramSize,
      vcpus: this.vcpuCount,
      uart: this.uart.save(),
      nextVcpu: this.runtime.nextVcpu,
    };
  }

  /** Everything the core's snapshot stream needs: description, vCPU blobs, RAM. */
  image(): MachineImage {
    this.assertIdle();
    this.uart.flush();
    return {
      arch: 'arm64',
      description: this.describe() as unknown as MachineImage['description'],
      vcpus: this.vcpus.map((_, i) => this.saveVcpu(i)),
      memory: this.memory.regions(),
    };
  }

  /**
   * Builds a machine from a snapshot image (RAM contents, device and vCPU state). The caller
   * attaches the restored VM and calls run(); the router is already started in the source, so
   * `started` tells run() not to start it again only if the router says so (Vm.start is idempotent).
   */
  static fromImage(image: MachineImage, options: Omit<Arm64MachineOptions, 'vcpus' | 'memSize'> = {}): Arm64Machine {
    const d = validateArm64Description(image.description, image.vcpus.length);
    const m = new Arm64Machine({ ...options, vcpus: d.vcpus, memSize: d.ramSize });
    try {
      for (const r of image.memory) m.memory.write(r.base, r.bytes);
      m.uart.restore(d.uart);
      m.runtime.nextVcpu = d.nextVcpu;
      image.vcpus.forEach((blob, i) => m.restoreVcpu(i, blob));
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  private assertIdle(): void {
    if (this.runtime.runningVcpu >= 0) throw new MachineError('vCPU state can only be saved or restored between runs');
  }

  /** Closes every engine and frees guest RAM. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vcpus) v.engine.close();
    this.ram.free();
  }
}

