/**
 * The x86-64 machine: a KVM VM with guest RAM at guest-physical 0, N vCPUs entered directly in
 * 64-bit long mode, COM1, Plugvisor's hypercall and exit ports, and (when KVM has it) the
 * in-kernel irqchip (LAPICs, so LAPIC state and mp_state are part of a snapshot).
 *
 * Scheduling. vCPUs run round-robin on the one JS thread; KVM_RUN returns at the guest's next
 * exit to userspace. A vCPU that spins without exiting keeps the thread (worker threads per vCPU
 * are future work: README). A lone vCPU pays nothing for scheduling.
 */
import { FlatGuestMemory, type Arch, type GuestMemory, type Machine, type MachineImage, type SystemEvent, type SystemEventKind, type VcpuPowerState } from '@plugvisor/core';
import type { RunOptions, RunResult } from '@plugvisor/core';
import { assertGuestPolicy, checkXsaveRestore, xsaveAbiOf, type GuestXsavePolicy, type XsaveAbi } from '@plugvisor/xsave';
import { EINTR, HostRam, KvmError, KvmSystem, type KvmVm, type RawCpuidEntry } from './ffi/kvm.js';
import { Layout, writeBootStructures } from './cpu/longmode.js';
import { guestCpuid } from './cpu/cpuid.js';
import { X86Vcpu, type VcpuEnv } from './cpu/vcpu.js';
import { decodeVcpuState, encodeVcpuState } from './cpu/state.js';
import { Serial, type SerialState } from './devices/serial.js';
import { GuestFault, MachineError } from './errors.js';
import { defaultXcr0, kvmHost, kvmUnavailable, type KvmHostInfo } from './host.js';
import { isElf, loadElf, loadRaw, type LoadedImage } from './loader/elf.js';
import { Ports, compiledDispatch, startRouter, type TrapRouter } from './traps.js';
import type { VcpuContext } from '@plugvisor/core';

export interface X86MachineOptions {
  /** Number of vCPUs (default 1). vCPU 0 boots; the others start powered off. */
  vcpus?: number;
  /** Guest RAM size in bytes (default 128 MiB; multiple of 4 KiB, at least 2 MiB, at most 3 GiB). */
  memSize?: number;
  /** Receives console output (COM1 THR writes). Default: process.stdout. */
  console?: (bytes: Uint8Array) => void;
  /**
   * The VM's XSAVE policy (CPUID 0xD it is shown): default everything KVM supports here except
   * dynamic (AMX) components, the supervisor set KVM reports and its 0xD.1 features. A pool
   * baseline's `policy` makes a VM that can move among the pool's hosts.
   */
  xsave?: GuestXsavePolicy;
  /** Create the in-kernel irqchip (default: when KVM has KVM_CAP_IRQCHIP). */
  irqchip?: boolean;
  /** @internal restore: the source's xsave ABI and guest CPUID, used instead of deriving them. */
  restore?: { readonly xsave: XsaveAbi; readonly cpuid: readonly RawCpuidEntry[] };
}

/** Why run() returned. */
/** The board and device state a snapshot carries beside the per-vCPU blobs. */
export interface X86MachineDescription {
  readonly board: 'plugvisor-pc';
  readonly schema: 1;
  readonly ramSize: number;
  readonly vcpus: number;
  readonly irqchip: boolean;
  readonly serial: SerialState;
  readonly nextVcpu: number;
  /** The VM's xfeature set (ABI): a destination must support every component, at the same place. */
  readonly xsave: XsaveAbi;
  /** vCPU 0's guest CPUID (leaf 1 / 0xB APIC ids are per vCPU and rewritten). */
  readonly cpuid: readonly RawCpuidEntry[];
  /**
   * VM-level KVM state (Firecracker's VmState): kvmclock (KVM_GET_CLOCK's clock, ns) and, with
   * the irqchip, the PIC master, PIC slave and IOAPIC (KVM_GET_IRQCHIP, 520 bytes each, hex).
   */
  readonly vm?: { readonly clock: bigint; readonly irqchip: readonly string[] | null };
}

/** KVM exit reasons (kvm.h). */
export const Exit = Object.freeze({
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7, SHUTDOWN: 8,
  FAIL_ENTRY: 9, INTR: 10, NMI: 16, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
});
const EXIT_NAME = Object.fromEntries(Object.entries(Exit).map(([k, v]) => [v, k])) as Record<number, string>;
const IO_OUT = 1;

export class X86Machine implements Machine {
  readonly arch: Arch = 'x86_64';
  readonly vcpuCount: number;
  readonly memory: GuestMemory;
  readonly ramSize: number;
  readonly serial: Serial;
  readonly host: KvmHostInfo;
  /** The VM's XSAVE ABI fragment (xsaveAbiOf of its policy on the creating host). */
  readonly xsaveAbi: XsaveAbi;
  readonly guestPolicy: GuestXsavePolicy;
  readonly irqchip: boolean;
  /** vCPU 0's CPUID as given to KVM_SET_CPUID2. */
  readonly cpuid: readonly RawCpuidEntry[];
  private readonly sys: KvmSystem;
  private readonly vm: KvmVm;
  private readonly ram: HostRam;
  private readonly vcpus: X86Vcpu[] = [];
  private router: TrapRouter | undefined;
  private dispatch: ((ctx: VcpuContext) => void) | undefined;
  private next = 0;
  private kicked = false;
  private event: SystemEvent | undefined;
  private pauseReason: string | undefined;
  private trapBudget = Infinity;
  private running = -1;
  private readonly parked = new Set<number>();
  private disposed = false;

  constructor(options: X86MachineOptions = {}) {
    const why = kvmUnavailable();
    if (why) throw new MachineError(`the x86 machine cannot run here: ${why}`);
    const n = options.vcpus ?? 1;
    const size = options.memSize ?? 128 << 20;
    if (!Number.isInteger(size) || size < Layout.MIN_RAM || size % 4096 !== 0 || size > 0xc000_0000) {
      throw new MachineError(`RAM size must be a multiple of 4 KiB between 2 MiB and 3 GiB, got ${size}`);
    }
    this.host = kvmHost();
    const maxVcpus = this.host.caps.MAX_VCPUS || this.host.caps.NR_VCPUS || 1;
    if (!Number.isInteger(n) || n < 1 || n > Math.min(maxVcpus, 255)) throw new MachineError(`vCPU count must be 1..${Math.min(maxVcpus, 255)}, got ${n}`);
    this.vcpuCount = n;
    this.ramSize = size;
    const hx = this.host.xsave;
    if (options.restore) {
      const problems = checkXsaveRestore(options.restore.xsave, hx);
      if (problems.length) throw new MachineError(`this host cannot run the VM's XSAVE ABI:\n- ${problems.map((p) => p.message).join('\n- ')}`);
      this.xsaveAbi = options.restore.xsave;
    } else {
      const policy = options.xsave ?? { xcr0: defaultXcr0(hx), xss: hx.xss, features: hx.xsaveFeatures };
      assertGuestPolicy(policy, hx);
      this.xsaveAbi = xsaveAbiOf(policy, hx);
    }
    this.guestPolicy = { xcr0: BigInt(this.xsaveAbi.xcr0), xss: BigInt(this.xsaveAbi.xss), features: this.xsaveAbi.features };
    this.cpuid = options.restore?.cpuid ?? guestCpuid(this.host.supportedCpuid, this.xsaveAbi, 0);
    this.irqchip = options.irqchip ?? this.host.caps.IRQCHIP > 0;
    this.serial = new Serial(options.console ?? ((b: Uint8Array) => void process.stdout.write(b)));

    this.sys = KvmSystem.open();
    let vm: KvmVm | undefined;
    let ram: HostRam | undefined;
    try {
      vm = this.sys.createVm();
      if (this.host.caps.SET_TSS_ADDR) vm.setTssAddr(Layout.TSS_ADDR);
      vm.setIdentityMapAddr(Layout.IDENTITY_MAP_ADDR);
      ram = HostRam.allocate(size);
      vm.setUserMemoryRegion(0, 0n, ram);
      if (this.irqchip) vm.createIrqchip();
      this.vm = vm;
      this.ram = ram;
      this.memory = new FlatGuestMemory([{ base: 0n, bytes: ram.bytes }]);
      const env: VcpuEnv = {
        machine: this,
        host: hx,
        guestPolicy: this.guestPolicy,
        xsave2: this.host.caps.XSAVE2 > 0,
        syncRegs: (this.host.caps.SYNC_REGS & 1) !== 0,
        irqchip: this.irqchip,
        immediateExit: this.host.caps.IMMEDIATE_EXIT > 0,
      };
      for (let i = 0; i < n; i++) {
        const v = new X86Vcpu(i, vm.createVcpu(i), env);
        this.vcpus.push(v);
        v.kvm.setCpuid(withApicId(this.cpuid, i));
      }
      const v0 = this.vcpus[0]!;
      // The MSRs to save: KVM's list, minus those this guest's CPUID makes unreadable.
      const list = this.host.msrIndexList.filter((m) => {
        try {
          return v0.kvm.getMsrs([m]).length === 1;
        } catch {
          return false;
        }
      });
      for (const v of this.vcpus) v.msrList = list;
      writeBootStructures(ram.bytes);
    } catch (e) {
      for (const v of this.vcpus) v.kvm.close();
      vm?.close();
      ram?.free();
      this.sys.close();
      throw e;
    }
  }

  // ---- images ---------------------------------------------------------------------------------

  /** Loads an ELF64 x86-64 executable (PT_LOAD at p_paddr) or a raw image at `rawAddress` (1 MiB). */
  loadImage(bytes: Uint8Array, rawAddress: bigint = BigInt(Layout.IMAGE_BASE)): LoadedImage {
    return isElf(bytes) ? loadElf(bytes, this.memory) : loadRaw(bytes, this.memory, rawAddress);
  }

  /** Boot: vCPU 0 on at `entry` in 64-bit mode (rdi = 0); others off. */
  boot(entry: bigint): void {
    const v0 = this.vcpus[0]!;
    v0.reset(entry, 0n);
    v0.power = 'on';
  }

  /** Attach the VM's trap router (the core's Vm). Must be done before run(). */
  attach(router: TrapRouter): void {
    this.router = router;
  }

  // ---- Machine interface ------------------------------------------------------------------------

  affinityOf(vcpu: number): bigint {
    return BigInt(this.vcpu(vcpu).apicId);
  }

  vcpuByAffinity(affinity: bigint): number {
    for (const v of this.vcpus) if (BigInt(v.apicId) === affinity) return v.index;
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
    this.kicked = true;
  }

  powerOff(vcpu: number): void {
    const v = this.vcpu(vcpu);
    v.power = 'off';
    v.pendingOn = null;
    this.parked.delete(vcpu);
    this.kicked = true;
  }

  idle(vcpu: number): void {
    this.vcpu(vcpu);
    this.parked.add(vcpu);
    this.kicked = true;
  }

  systemEvent(event: SystemEvent): void {
    if (!this.event) this.event = event;
    this.kicked = true;
  }

  /**
   * Raises an interrupt with `vector` at vCPU `vcpu`'s LAPIC: an MSI (fixed delivery, edge) to
   * its APIC id through KVM_SIGNAL_MSI. Edge-triggered: level = false does nothing. Needs the
   * in-kernel irqchip.
   */
  setInterrupt(vcpu: number, vector: number, level: boolean): void {
    const v = this.vcpu(vcpu);
    if (!level) return;
    if (!this.irqchip || !this.host.caps.SIGNAL_MSI) throw new MachineError('interrupts need the in-kernel irqchip and KVM_CAP_SIGNAL_MSI');
    if (!Number.isInteger(vector) || vector < 16 || vector > 255) throw new MachineError(`x86 interrupt vector must be 16..255, got ${vector}`);
    this.vm.signalMsi(0xfee0_0000n | (BigInt(v.apicId) << 12n), vector);
    this.parked.delete(vcpu);
  }

  /** Ask run() to return { kind: 'paused' } after the current exit (e.g. to take a snapshot). */
  requestPause(reason = 'requested'): void {
    this.pauseReason = reason;
    this.kicked = true;
  }

  private vcpu(i: number): X86Vcpu {
    const v = this.vcpus[i];
    if (!v) throw new MachineError(`no vCPU ${i} (this machine has ${this.vcpuCount})`);
    return v;
  }

  /** The KVM vCPU of index i, for tests and tools that work on raw state. */
  kvmVcpu(i: number): X86Vcpu {
    return this.vcpu(i);
  }

  // ---- the run loop -------------------------------------------------------------------------------

  /**
   * Runs the guest until a system event, a fault, a hang, all vCPUs off, or a pause. Console
   * output is flushed on return. May be called again after 'paused' to continue.
   */
  run(options: RunOptions = {}): RunResult {
    if (this.disposed) throw new MachineError('machine disposed');
    if (!this.router) throw new MachineError('no trap router attached: call attach(vm) before run()');
    if (!this.dispatch) {
      startRouter(this.router);
      this.dispatch = compiledDispatch(this.router);
    }
    this.trapBudget = options.pauseAfterTraps ?? Infinity;
    this.pauseReason = undefined;
    try {
      return this.loop();
    } finally {
      this.running = -1;
      this.serial.flush();
    }
  }

  private loop(): RunResult {
    const n = this.vcpus.length;
    for (;;) {
      if (this.event) return { kind: 'system-event', event: this.event };
      if (this.pauseReason !== undefined) return { kind: 'paused', reason: this.pauseReason };
      let pick = -1;
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
        if (this.parked.has(v.index)) continue;
        if (pick < 0) pick = v.index;
      }
      if (on === 0) return { kind: 'all-off' };
      if (pick < 0) return { kind: 'hang', message: `all ${on} powered-on vCPU(s) are halted and nothing can wake them` };
      this.next = (pick + 1) % n;
      const fault = this.runVcpu(this.vcpus[pick]!, on > 1);
      if (fault) return { kind: 'fault', fault };
    }
  }

  /** Runs one vCPU until the scheduler must look (or `yieldAfterExit`: after one exit). */
  private runVcpu(v: X86Vcpu, yieldAfterExit: boolean): GuestFault | undefined {
    const k = v.kvm;
    const run8 = k.run8;
    const run32 = k.run32;
    const dispatch = this.dispatch!;
    const ctx = v.ctx;
    this.kicked = false;
    this.running = v.index;
    try {
      for (;;) {
        const rc = k.run();
        if (rc !== 0) {
          if (rc === EINTR) continue;
          throw new KvmError('KVM_RUN', rc, `vCPU ${v.index}`);
        }
        const reason = run32[2]!;
        if (reason === Exit.IO) {
          // io: direction @32, size @33, port @34 (u16), count @36, data_offset @40
          const port = run8[34]! | (run8[35]! << 8);
          if (port === Ports.HYPERCALL && run8[32] === IO_OUT) {
            v.loadRegs();
            dispatch(ctx);
            v.storeRax();
            if (--this.trapBudget <= 0) {
              this.pauseReason ??= 'trap budget reached';
              this.kicked = true;
            }
          } else this.portIo(v, port);
        } else {
          const fault = this.otherExit(v, reason);
          if (fault) return fault;
        }
        if (this.kicked || yieldAfterExit) return undefined;
      }
    } finally {
      this.running = -1;
    }
  }

  private portIo(v: X86Vcpu, port: number): void {
    const k = v.kvm;
    const out = k.run8[32] === IO_OUT;
    const size = k.run8[33]!;
    const count = k.run32[9]!;
    const data = k.run32[10]!;
    const bytes = k.run8;
    if (port >= Ports.COM1 && port <= Ports.COM1_END) {
      for (let i = 0; i < count; i++) {
        const at = data + i * size;
        if (out) this.serial.write(port - Ports.COM1, bytes[at]!);
        else {
          bytes[at] = this.serial.read(port - Ports.COM1);
          for (let j = 1; j < size; j++) bytes[at + j] = 0;
        }
      }
      return;
    }
    if (port === Ports.EXIT && out) {
      let value = 0;
      for (let j = size - 1; j >= 0; j--) value = value * 256 + bytes[data + j]!;
      const kinds: SystemEventKind[] = ['off', 'reset', 'crash'];
      this.systemEvent({ kind: kinds[value & 0xff] ?? 'crash', vcpu: v.index, data: [BigInt(value)] });
      return;
    }
    // Unclaimed ports: reads return zeros (as Firecracker's bus), writes are dropped.
    if (!out) bytes.fill(0, data, data + count * size);
  }

  private otherExit(v: X86Vcpu, reason: number): GuestFault | undefined {
    const k = v.kvm;
    const dv = k.runView;
    switch (reason) {
      case Exit.INTR:
      case Exit.IRQ_WINDOW_OPEN:
        return undefined;
      case Exit.HLT:
        // Only without the in-kernel irqchip (with it, HLT waits inside KVM for an interrupt).
        this.parked.add(v.index);
        this.kicked = true;
        return undefined;
      case Exit.SYSTEM_EVENT: {
        const type = dv.getUint32(32, true);
        const kind: SystemEventKind = type === 2 ? 'reset' : type === 3 ? 'crash' : 'off';
        this.systemEvent({ kind, vcpu: v.index, data: [BigInt(type)] });
        return undefined;
      }
      case Exit.MMIO: {
        const gpa = dv.getBigUint64(32, true);
        const len = dv.getUint32(48, true);
        const write = k.run8[52] !== 0;
        return new GuestFault(v.index, v.rip(), `${write ? 'write to' : 'read from'} 0x${gpa.toString(16)} (${len} bytes): outside RAM and devices`, { register: 'RIP', exitReason: reason });
      }
      case Exit.SHUTDOWN:
        return new GuestFault(v.index, v.rip(), 'triple fault (KVM_EXIT_SHUTDOWN): an exception the guest could not handle', { register: 'RIP', exitReason: reason });
      case Exit.INTERNAL_ERROR: {
        const sub = dv.getUint32(32, true);
        const nd = Math.min(dv.getUint32(36, true), 16);
        const data = Array.from({ length: nd }, (_, i) => `0x${dv.getBigUint64(40 + 8 * i, true).toString(16)}`);
        const what = ['', 'emulation failure', 'exception while delivering an exception', 'delivery of an event failed', 'unexpected exit reason'][sub] ?? `suberror ${sub}`;
        return new GuestFault(v.index, v.rip(), `KVM internal error: ${what}${data.length ? ` (data ${data.join(' ')})` : ''}`, { register: 'RIP', exitReason: reason, suberror: sub });
      }
      case Exit.FAIL_ENTRY:
        return new GuestFault(v.index, v.rip(), `VM entry failed (hardware reason 0x${dv.getBigUint64(32, true).toString(16)})`, { register: 'RIP', exitReason: reason });
      default:
        return new GuestFault(v.index, v.rip(), `unexpected KVM exit ${EXIT_NAME[reason] ?? reason}`, { register: 'RIP', exitReason: reason });
    }
  }

  // ---- snapshots --------------------------------------------------------------------------------

  /** The saved state of vCPU i (see cpu/state.ts). Only between runs. */
  saveVcpu(i: number): Uint8Array {
    this.assertIdle();
    return encodeVcpuState(this.vcpu(i).save());
  }

  restoreVcpu(i: number, blob: Uint8Array): void {
    this.assertIdle();
    const v = this.vcpu(i);
    const s = decodeVcpuState(blob);
    v.restore(s);
    if (s.power === 'off') this.parked.delete(i);
  }

  describe(): X86MachineDescription {
    return {
      board: 'plugvisor-pc',
      schema: 1,
      ramSize: this.ramSize,
      vcpus: this.vcpuCount,
      irqchip: this.irqchip,
      serial: { ...this.serial.state },
      nextVcpu: this.next,
      xsave: this.xsaveAbi,
      cpuid: this.cpuid,
      vm: {
        clock: new DataView(this.vm.getClock().buffer).getBigUint64(0, true),
        irqchip: this.irqchip ? [0, 1, 2].map((c) => Buffer.from(this.vm.getIrqchip(c)).toString('hex')) : null,
      },
    };
  }

  /**
   * Everything the core's snapshot stream needs: description, vCPU blobs, RAM. The memory
   * entries are live views of guest RAM: write the stream (saveSnapshot) before dispose().
   */
  image(): MachineImage {
    this.assertIdle();
    this.serial.flush();
    const vcpus = this.vcpus.map((_, i) => this.saveVcpu(i));
    return {
      arch: 'x86_64',
      description: this.describe() as unknown as MachineImage['description'],
      vcpus,
      memory: this.memory.regions(),
    };
  }

  /** Builds a machine from a snapshot image: a new VM with the source's xsave ABI and CPUID. */
  static fromImage(image: MachineImage, options: Omit<X86MachineOptions, 'vcpus' | 'memSize' | 'xsave' | 'restore' | 'irqchip'> = {}): X86Machine {
    const d = image.description as unknown as X86MachineDescription;
    if (!d || d.board !== 'plugvisor-pc' || d.schema !== 1) throw new MachineError('snapshot machine description is not a plugvisor-pc x86 board (schema 1)');
    if (d.vcpus !== image.vcpus.length) throw new MachineError(`snapshot has ${image.vcpus.length} vCPU blobs for ${d.vcpus} vCPUs`);
    const states = image.vcpus.map(decodeVcpuState); // refuse bad blobs before building anything
    const m = new X86Machine({ ...options, vcpus: d.vcpus, memSize: d.ramSize, irqchip: d.irqchip, restore: { xsave: d.xsave, cpuid: d.cpuid } });
    try {
      for (const r of image.memory) m.memory.write(r.base, r.bytes);
      m.serial.state = { ...d.serial };
      m.next = d.nextVcpu % d.vcpus;
      // VM state first, then vCPUs (Firecracker's restore order).
      if (d.vm) {
        m.vm.setClock(d.vm.clock);
        if (d.irqchip && d.vm.irqchip) for (const chip of d.vm.irqchip) m.vm.setIrqchip(new Uint8Array(Buffer.from(chip, 'hex')));
      }
      states.forEach((s, i) => m.vcpus[i]!.restore(s));
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  private assertIdle(): void {
    if (this.running >= 0) throw new MachineError('vCPU state can only be saved or restored between runs');
  }

  /** Closes every vCPU and the VM, and frees guest RAM. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vcpus) v.kvm.close();
    this.vm.close();
    this.ram.free();
    this.sys.close();
  }
}

/** The CPUID of vCPU `apicId`: vCPU 0's with the APIC ids rewritten (leaf 1 EBX[31:24], 0xB/0x1F EDX). */
export function withApicId(cpuid: readonly RawCpuidEntry[], apicId: number): RawCpuidEntry[] {
  return cpuid.map((e) => {
    if (e.function === 1) return { ...e, ebx: ((e.ebx & 0x00ff_ffff) | ((apicId & 0xff) << 24)) >>> 0 };
    if (e.function === 0xb || e.function === 0x1f) return { ...e, edx: apicId >>> 0 };
    return e;
  });
}

