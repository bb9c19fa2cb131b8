/**
 * The x86-64 machine: a KVM VM with guest RAM at guest-physical 0, N vCPUs entered directly in
 * 64-bit long mode, COM1, Plugvisor's hypercall and exit ports, and (when KVM has it) the
 * in-kernel irqchip (LAPICs, so LAPIC state and mp_state are part of a snapshot).
 *
 * Scheduling, power states (a pending CPU_ON applied at the next safe point), parking, trap
 * budgets and pauses, hang and all-off detection are the core's MachineRuntime; this file is
 * the KVM backend's `runSlice`: KVM_RUN until an exit the runtime must see, handling hypercall
 * and port-I/O exits in place. kvm_run is decoded only in ffi/kvm.ts (`KvmVcpu.exit()`). A vCPU
 * that spins without exiting keeps the thread (worker threads per vCPU are future work: README).
 */
import { FlatGuestMemory, MachineRuntime, RuntimeMachine, YIELD, type Arch, type GuestMemory, type Machine, type MachineImage, type VcpuExit } from '@plugvisor/core';
import { assertGuestPolicy, checkXsaveRestore, xsaveAbiOf, type GuestXsavePolicy, type XsaveAbi } from '@plugvisor/xsave';
import { EINTR, HostRam, KvmError, KvmSystem, type KvmVm, type RawCpuidEntry } from './ffi/kvm.js';
import { Layout, writeBootStructures } from './cpu/longmode.js';
import { guestCpuid, withApicId } from './cpu/cpuid.js';
export { withApicId } from './cpu/cpuid.js';
import { X86Vcpu, type VcpuEnv } from './cpu/vcpu.js';
import { validateX86Description, type X86MachineDescription, type X86MachineOptions } from './description.js';
import { x86VcpuCodec, x86VcpuStateValue, type VcpuState, type X86VcpuStateValue } from './cpu/state.js';
import { Serial } from './devices/serial.js';
import { MachineError } from './errors.js';
import { defaultXcr0, kvmHost, kvmUnavailable, type KvmHostInfo } from './host.js';
import { isElf, loadElf, loadRaw, type LoadedImage } from './loader/elf.js';
import { Ports, compiledDispatch, type TrapRouter } from './traps.js';
import { exitToRuntime, portIo } from './exits.js';
import type { VcpuContext } from '@plugvisor/core';

export { Exit } from './ffi/kvm.js';

export type { X86MachineOptions, X86MachineDescription } from './description.js';

export class X86Machine extends RuntimeMachine<TrapRouter, X86VcpuStateValue, VcpuState> implements Machine {
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
  private dispatch: ((ctx: VcpuContext) => number) | undefined;
  private dispatchFor: TrapRouter | undefined;
  protected readonly runtime: MachineRuntime;
  protected readonly vcpuCodec = x86VcpuCodec;

  constructor(options: X86MachineOptions = {}) {
    super();
    const why = kvmUnavailable();
    if (why) throw new MachineError(`the x86 machine cannot run here: ${why}`);
    const n = options.vcpus ?? 1;
    const size = options.memSize ?? Layout.DEFAULT_RAM_SIZE;
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
    this.runtime = new MachineRuntime(
      {
        reset: (i, entry, context) => this.vcpus[i]!.reset(entry, context),
        // With the irqchip HLT waits inside KVM; without it nothing raises interrupts: a parked
        // vCPU is woken only by setInterrupt (MachineRuntime.interruptRaised).
        interruptPending: () => false,
        runSlice: (i, slice) => this.runSlice(this.vcpus[i]!, slice.shared),
        // runSlice looks at runtime.stopRequested after every exit.
        stop: () => {},
        // The entry runs in 64-bit mode through the identity map of the first 4 GiB
        // (cpu/longmode.ts); guest code can only be in RAM, at guest-physical 0.
        entryFault: (_i, entry) => (entry < BigInt(this.ramSize) ? undefined : `outside RAM (RAM is 0x0..0x${(this.ramSize - 1).toString(16)})`),
      },
      n,
    );

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

  // ---- Machine interface ------------------------------------------------------------------------

  affinityOf(vcpu: number): bigint {
    return BigInt(this.vcpu(vcpu).apicId);
  }

  vcpuByAffinity(affinity: bigint): number {
    for (const v of this.vcpus) if (BigInt(v.apicId) === affinity) return v.index;
    return -1;
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
    this.runtime.interruptRaised(vcpu);
  }

  private vcpu(i: number): X86Vcpu {
    return this.vcpuAt(this.vcpus, i);
  }

  /** The KVM vCPU of index i, for tests and tools that work on raw state. */
  kvmVcpu(i: number): X86Vcpu {
    return this.vcpu(i);
  }

  // ---- the run loop: the runtime's, with this backend's slices ---------------------------------

  /** The router's compiled dispatcher for the hypercall port (the router was started by RuntimeMachine.run). */
  protected override prepareRun(router: TrapRouter): void {
    if (this.dispatchFor === router) return;
    this.dispatch = compiledDispatch(router);
    this.dispatchFor = router;
  }

  protected flushConsole(): void {
    this.serial.flush();
  }

  /** KVM_RUN until an exit the runtime must see (or, when `shared`, after one exit). */
  private runSlice(v: X86Vcpu, shared: boolean): VcpuExit {
    const k = v.kvm;
    const rt = this.runtime;
    const dispatch = this.dispatch!;
    const ctx = v.ctx;
    for (;;) {
      const rc = k.run();
      if (rc !== 0) {
        if (rc === EINTR) continue;
        throw new KvmError('KVM_RUN', rc, `vCPU ${v.index}`);
      }
      const exit = k.exit();
      if (exit.kind === 'io') {
        if (exit.port === Ports.HYPERCALL && exit.out) {
          v.loadRegs();
          const back = dispatch(ctx);
          if (back === 0) v.storeRax();
          else v.continueAt(back); // preempted (core continueCall): the OUT runs again
          rt.trapped();
          // Between two legs: back to the runtime, so a pause or snapshot lands here.
          if (back !== 0) return YIELD;
        } else portIo(exit, k.run8, this.serial, this.runtime, v.index);
      } else if (exit.kind !== 'interrupted') return exitToRuntime(v, exit);
      if (rt.stopRequested || shared) return YIELD;
    }
  }

  // ---- snapshots: framing in RuntimeMachine (vcpuState, saveVcpu, image); codec cpu/state.ts ----

  protected saveCpu(i: number): Omit<X86VcpuStateValue, 'run'> {
    return x86VcpuStateValue(this.vcpu(i).save());
  }

  protected restoreCpu(i: number, state: VcpuState): void {
    this.vcpu(i).restore(state);
  }

  describe(): X86MachineDescription {
    const vm = this.vm;
    const irqchip = this.irqchip ? [0, 1, 2].map((c) => Buffer.from(vm.getIrqchip(c)).toString('hex')) : null;
    const clock = new DataView(vm.getClock().buffer).getBigUint64(0, true);
    const { ramSize, vcpuCount: vcpus, xsaveAbi: xsave, cpuid } = this;
    return { board: 'plugvisor-pc', schema: 1, ramSize, vcpus, irqchip: this.irqchip, serial: this.serial.save(), nextVcpu: this.runtime.nextVcpu, xsave, cpuid, vm: { clock, irqchip } };
  }

  /** Builds a machine from a snapshot image: a new VM with the source's xsave ABI and CPUID; VM state first, then vCPUs (Firecracker's order). */
  static fromImage(image: MachineImage, options: Omit<X86MachineOptions, 'vcpus' | 'memSize' | 'xsave' | 'restore' | 'irqchip'> = {}): X86Machine {
    const d = validateX86Description(image.description, image.vcpus.length);
    const build = () => new X86Machine({ ...options, vcpus: d.vcpus, memSize: d.ramSize, irqchip: d.irqchip, restore: { xsave: d.xsave, cpuid: d.cpuid } });
    return RuntimeMachine.restoreImage(image, x86VcpuCodec.decode, build, d.nextVcpu, (m) => {
      m.serial.restore(d.serial);
      if (d.vm) m.vm.setClock(d.vm.clock);
      if (d.irqchip && d.vm?.irqchip) for (const chip of d.vm.irqchip) m.vm.setIrqchip(new Uint8Array(Buffer.from(chip, 'hex')));
    });
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
