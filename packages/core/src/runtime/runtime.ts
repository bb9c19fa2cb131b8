import type { Arch, SystemEvent, VcpuPowerState } from '../machine/machine.js';
import type { GuestMemory } from '../machine/memory.js';
import { GuestFault, MachineError, type RunOptions, type RunResult } from '../machine/run.js';
import type { StateValue } from '../plugin/service.js';
import type { MachineImage } from '../snapshot/snapshot.js';
import { StateReader, hex64 } from './persist.js';

/**
 * The machine runtime: what every backend's run loop used to write for itself, written once.
 * It owns the vCPUs' power states (including a CPU_ON that is pending until a safe point),
 * parking until an interrupt, round-robin slices, the trap budget and pause requests, system
 * events, and hang / all-off detection. A backend supplies the CPU: reset to an entry state
 * and `runSlice`, which runs one vCPU until it must come back to the scheduler and says why
 * (like crosvm's `Vcpu::run() -> VcpuExit`).
 *
 * Hypercalls are not a runSlice exit: backends route them inside their trap hook (Unicorn's
 * interrupt hook, KVM's I/O exit) and call {@link MachineRuntime.trapped} per call, which
 * counts the budget and asks the backend to stop when a pause is due. So the trap path costs
 * one method call over a backend-private loop.
 */

/** Why runSlice returned to the scheduler. */
export type VcpuExit =
  /** The slice ended (time slice, a stop request, a trap that changed power state). */
  | { readonly kind: 'yield' }
  /** The vCPU waits for an interrupt (WFI, HLT): parked unless one is pending. */
  | { readonly kind: 'halt' }
  | { readonly kind: 'fault'; readonly fault: GuestFault }
  | { readonly kind: 'system-event'; readonly event: SystemEvent };

export const YIELD: VcpuExit = Object.freeze({ kind: 'yield' });
/** Blocks the thread until `performance.now()` reaches `at` (ms): the machine is idle. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepUntil(at: number): void {
  const ms = at - performance.now();
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

export const HALT: VcpuExit = Object.freeze({ kind: 'halt' });

/** What the scheduler tells runSlice about the slice. */
export interface Slice {
  /** Another vCPU is runnable: the backend must return within a time slice. */
  readonly shared: boolean;
}

/** The CPU side of a machine: what differs between Unicorn, KVM or a test double. */
export interface VcpuBackend {
  /** Puts vCPU `vcpu` at the architecture's entry state at `entry`, `context` in its first argument register. */
  reset(vcpu: number, entry: bigint, context: bigint): void;
  /** An interrupt is pending for `vcpu` that wakes it from a halt. */
  interruptPending(vcpu: number): boolean;
  /** Runs `vcpu` until it must come back to the scheduler. */
  runSlice(vcpu: number, slice: Slice): VcpuExit;
  /** Asks the running vCPU to stop after the current trap (it returns 'yield'). */
  stop(vcpu: number): void;
  /**
   * When a parked `vcpu` will have an interrupt pending without anything else happening (its
   * next timer deadline), as a `performance.now()` time in ms; undefined if never. When every
   * powered-on vCPU is parked, the runtime sleeps until the earliest such time instead of
   * reporting a hang. A backend without timers leaves it out.
   */
  wakeAt?(vcpu: number): number | undefined;
  /**
   * Why vCPU `vcpu` cannot execute from `entry` (outside RAM, a device, misaligned, an address
   * that wraps...), or undefined if it can. `translated`: the address is virtual (the restored
   * vCPU has its MMU on), so only what holds for every translation can be checked. Asked before
   * the engine is touched for every entry — boot (the image's entry point), a CPU_ON taking
   * effect and a restored vCPU's PC — so an entry no CPU could fetch from ends as a guest fault
   * naming the vCPU and the address instead of reaching the engine. A backend without it (a
   * test double) accepts every entry.
   */
  entryFault?(vcpu: number, entry: bigint, translated: boolean): string | undefined;
}

/** Who hears about a pending CPU_ON taking effect (the core Vm's vcpuReset). */
export interface ResetListener {
  vcpuReset?(vcpu: number): void;
}

/** One vCPU's scheduler state, as saved. */
export interface VcpuRunState {
  readonly power: VcpuPowerState;
  readonly parked: boolean;
  /** The CPU_ON not yet applied: entry point and context (u64 hex strings). */
  readonly pendingOn: { readonly entry: string; readonly context: string } | null;
}

interface Pending {
  entry: bigint;
  context: bigint;
}

export class MachineRuntime {
  readonly vcpuCount: number;
  private readonly power: VcpuPowerState[];
  private readonly parked: boolean[];
  private readonly pending: (Pending | null)[];
  /** A vCPU that is on but could not be entered: the fault run() reports when it is scheduled. */
  private readonly entryFaults: (GuestFault | null)[];
  private next = 0;
  private running = -1;
  private stopping = false;
  private event: SystemEvent | undefined;
  private pauseReason: string | undefined;
  private trapBudget = Infinity;
  private listener: ResetListener | undefined;

  constructor(
    private readonly backend: VcpuBackend,
    vcpuCount: number,
  ) {
    this.vcpuCount = vcpuCount;
    this.power = Array.from({ length: vcpuCount }, () => 'off');
    this.parked = Array.from({ length: vcpuCount }, () => false);
    this.pending = Array.from({ length: vcpuCount }, () => null);
    this.entryFaults = Array.from({ length: vcpuCount }, () => null);
  }

  /** The vCPU now in runSlice, or -1. */
  get runningVcpu(): number {
    return this.running;
  }

  /** True once something asked the running vCPU to come back to the scheduler. */
  get stopRequested(): boolean {
    return this.stopping;
  }

  /** Index of the vCPU the round-robin scheduler looks at first. */
  get nextVcpu(): number {
    return this.next;
  }

  set nextVcpu(i: number) {
    this.check(i);
    this.next = i;
  }

  /**
   * Boot: vCPU 0 on at `entry` with `context` in its first argument register (0 unless a boot
   * protocol passes something, e.g. arm64 Linux's device tree address in x0); the others off. An
   * entry it cannot run from is the run's guest fault.
   */
  boot(entry: bigint, context = 0n): void {
    this.enter(0, entry, context);
    this.power[0] = 'on';
  }

  /**
   * The guest fault for vCPU `vcpu` starting at `entry`, or undefined if the backend can run it
   * from there (VcpuBackend.entryFault). The one place every entry point is checked.
   */
  entryFault(vcpu: number, entry: bigint, translated = false): GuestFault | undefined {
    this.check(vcpu);
    const why = this.backend.entryFault?.(vcpu, entry, translated);
    return why === undefined ? undefined : new GuestFault(vcpu, entry, `cannot start there: ${why}`);
  }

  /**
   * Resets vCPU `i` to `entry` after checking it; a bad entry point, or a reset the backend
   * refuses with a GuestFault, leaves the vCPU's registers alone and becomes its entry fault.
   */
  private enter(i: number, entry: bigint, context: bigint): void {
    let fault = this.entryFault(i, entry);
    if (!fault) {
      try {
        this.backend.reset(i, entry, context);
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        fault = e;
      }
    }
    this.entryFaults[i] = fault ?? null;
  }

  // ---- what services ask for (the Machine interface's power part) ------------------------------

  powerState(vcpu: number): VcpuPowerState {
    this.check(vcpu);
    return this.power[vcpu]!;
  }

  /** CPU_ON: 'on-pending' until the scheduler applies it at its next safe point. */
  powerOn(vcpu: number, entry: bigint, context: bigint): void {
    this.check(vcpu);
    if (this.power[vcpu] !== 'off') throw new MachineError(`vCPU ${vcpu} is not off (${this.power[vcpu]})`);
    this.power[vcpu] = 'on-pending';
    this.pending[vcpu] = { entry, context };
    // A vCPU running alone may run without a time slice: stop it so slicing starts.
    this.requestStop();
  }

  powerOff(vcpu: number): void {
    this.check(vcpu);
    this.power[vcpu] = 'off';
    this.entryFaults[vcpu] = null;
    this.parked[vcpu] = false;
    this.pending[vcpu] = null;
    if (vcpu === this.running) this.requestStop();
  }

  /** Parks `vcpu` until an interrupt is pending (Machine.idle, WFI/HLT). */
  idle(vcpu: number): void {
    this.check(vcpu);
    this.parked[vcpu] = true;
    if (vcpu === this.running) this.requestStop();
  }

  /** An interrupt was raised for `vcpu`: unpark it, and stop the running vCPU so it is scheduled. */
  interruptRaised(vcpu: number): void {
    this.check(vcpu);
    const wasParked = this.parked[vcpu]!;
    if (this.backend.interruptPending(vcpu) || wasParked) this.parked[vcpu] = false;
    if (this.running >= 0 && (vcpu === this.running || wasParked)) this.requestStop();
  }

  systemEvent(event: SystemEvent): void {
    if (!this.event) this.event = event;
    this.requestStop();
  }

  /** run() returns { kind: 'paused' } after the current trap. */
  requestPause(reason = 'requested'): void {
    this.pauseReason = reason;
    this.requestStop();
  }

  /**
   * The process owner gives up the run in progress from inside a trap handler that will never
   * return (a hypercall watchdog stopped the thread there): the runtime is idle from now on, so
   * the VM can be imaged as it is at the trap. Nothing may run again.
   */
  abandon(): void {
    this.running = -1;
  }

  /** Counts one routed trap against the run's budget (call from the backend's trap path). */
  trapped(): void {
    if (--this.trapBudget <= 0) {
      this.pauseReason ??= 'trap budget reached';
      this.requestStop();
    }
  }

  private requestStop(): void {
    this.stopping = true;
    if (this.running >= 0) this.backend.stop(this.running);
  }

  private check(vcpu: number): void {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpuCount) throw new MachineError(`no vCPU ${vcpu} (this machine has ${this.vcpuCount})`);
  }

  // ---- the run loop --------------------------------------------------------------------------

  /**
   * Runs until a system event, a fault, a hang (every powered-on vCPU parked with nothing
   * pending), all vCPUs off, or a pause. May be called again after 'paused'.
   */
  run(options: RunOptions = {}, listener?: ResetListener): RunResult {
    this.listener = listener;
    this.trapBudget = options.pauseAfterTraps ?? Infinity;
    this.pauseReason = undefined;
    try {
      return this.loop();
    } finally {
      this.running = -1;
    }
  }

  private loop(): RunResult {
    const n = this.vcpuCount;
    const power = this.power;
    const parked = this.parked;
    for (;;) {
      if (this.event) return { kind: 'system-event', event: this.event };
      if (this.pauseReason !== undefined) return { kind: 'paused', reason: this.pauseReason };
      let pick = -1;
      let runnable = 0;
      let on = 0;
      for (let k = 0; k < n; k++) {
        const i = (this.next + k) % n;
        if (power[i] === 'on-pending') this.applyPowerOn(i);
        if (power[i] !== 'on') continue;
        on++;
        // A vCPU that is on but could not be entered stops the run, parked or not (KVM: the
        // target of a CPU_ON to a bad entry point faults when it runs, arch/arm64/kvm/psci.c).
        const entryFault = this.entryFaults[i];
        if (entryFault) return { kind: 'fault', fault: entryFault };
        if (parked[i] && this.backend.interruptPending(i)) parked[i] = false;
        if (parked[i]) continue;
        runnable++;
        if (pick < 0) pick = i;
      }
      if (on === 0) return { kind: 'all-off' };
      if (pick < 0) {
        // Every powered-on vCPU waits for an interrupt: sleep until the first timer deadline,
        // or, with none armed, nothing can ever wake them.
        const wake = this.earliestWake();
        if (wake === undefined) return { kind: 'hang', message: `all ${on} powered-on vCPU(s) wait for an interrupt and none is pending` };
        sleepUntil(wake);
        continue;
      }
      this.next = (pick + 1) % n;
      this.stopping = false;
      this.running = pick;
      let exit: VcpuExit;
      try {
        exit = this.backend.runSlice(pick, { shared: runnable > 1 });
      } finally {
        this.running = -1;
      }
      switch (exit.kind) {
        case 'yield':
          break;
        case 'halt':
          if (power[pick] === 'on' && !this.backend.interruptPending(pick)) parked[pick] = true;
          break;
        case 'system-event':
          this.systemEvent(exit.event);
          break;
        case 'fault':
          return { kind: 'fault', fault: exit.fault };
      }
    }
  }

  private earliestWake(): number | undefined {
    const at = this.backend.wakeAt;
    if (!at) return undefined;
    let best: number | undefined;
    for (let i = 0; i < this.vcpuCount; i++) {
      if (this.power[i] !== 'on') continue;
      const t = at.call(this.backend, i);
      if (t !== undefined && (best === undefined || t < best)) best = t;
    }
    return best;
  }

  /**
   * The safe point: a pending CPU_ON resets the vCPU to its entry and turns it on. An entry point
   * it cannot run from is not refused to the caller (PSCI allows INVALID_ADDRESS, but KVM does
   * not check the address: arch/arm64/kvm/psci.c kvm_psci_vcpu_on); the target is on and its
   * first turn is a guest fault naming it and the address.
   */
  private applyPowerOn(i: number): void {
    const p = this.pending[i]!;
    this.enter(i, p.entry, p.context);
    this.pending[i] = null;
    this.power[i] = 'on';
    this.parked[i] = false;
    this.listener?.vcpuReset?.(i);
  }

  // ---- persistence ---------------------------------------------------------------------------

  /** vCPU `i`'s scheduler state: power (with a pending CPU_ON's entry and context) and parking. */
  saveVcpu(i: number): VcpuRunState {
    this.check(i);
    const p = this.pending[i];
    return {
      power: this.power[i]!,
      parked: this.parked[i]!,
      pendingOn: p ? { entry: hex64(p.entry), context: hex64(p.context) } : null,
    };
  }

  /**
   * Restores vCPU `i`'s scheduler state from {@link validateVcpuRunState}'s value. `entryFault`:
   * the restored vCPU is on but cannot be entered (see RuntimeMachine.restoreVcpuState): the
   * next run reports it when the vCPU is scheduled.
   */
  restoreVcpu(i: number, state: unknown, entryFault?: GuestFault): void {
    this.check(i);
    const s = validateVcpuRunState(state, `vCPU ${i} run state`);
    if (this.running >= 0) throw new MachineError('vCPU state can only be restored between runs');
    this.power[i] = s.power;
    this.parked[i] = s.parked;
    this.pending[i] = s.pendingOn;
    this.entryFaults[i] = s.power === 'on' ? (entryFault ?? null) : null;
  }
}

/** Validates a saved {@link VcpuRunState}; throws StateError naming `component` and the field. */
export function validateVcpuRunState(state: unknown, component: string): { power: VcpuPowerState; parked: boolean; pendingOn: Pending | null } {
  const r = new StateReader(component, state);
  const power = r.oneOf('power', ['on', 'off', 'on-pending'] as const);
  const parked = r.bool('parked');
  const p = r.object('pendingOn', true);
  const pendingOn = p ? { entry: p.u64('entry'), context: p.u64('context') } : null;
  if (power === 'on-pending' && !pendingOn) r.fail('pendingOn', 'is null for a vCPU whose CPU_ON is pending (its entry point would be lost)');
  if (power !== 'on-pending' && pendingOn) r.fail('pendingOn', `is set for a vCPU that is ${power}`);
  if (parked && power !== 'on') r.fail('parked', `is true for a vCPU that is ${power}`);
  return { power, parked, pendingOn };
}

/** A trap router a RuntimeMachine runs with (the core's Vm): started once, told about CPU_ON resets. */
export interface RuntimeRouter extends ResetListener {
  /** Freezes the ABI; called once before the first vCPU runs. */
  start(): void;
}

/**
 * A backend's vCPU state codec: the plain, JSON-safe value (bigints, if any, as the core's
 * encodeJson tags them) that the persistence contract checks, and the versioned blob a snapshot's
 * VCPU record carries. `validate` is the validating `from_state`: it throws StateError naming the
 * component and the field, and returns what the backend's CPU restore takes.
 */
export interface VcpuStateCodec<V extends { readonly run: VcpuRunState }, D extends { readonly run: VcpuRunState }> {
  /** The plain value as a blob (validated first). */
  encode(value: V): Uint8Array;
  /** A blob (this build's format or an older one) as the plain value; throws on a bad header or a refused field. */
  decode(blob: Uint8Array): V;
  validate(value: unknown, component: string): D;
}

/**
 * The Machine interface's power and event part, delegated to a MachineRuntime, and the framing
 * every backend's machine class used to write for itself: attach and run (router started once,
 * console flushed after every run), vCPU lookup, vCPU state save/restore through the backend's
 * {@link VcpuStateCodec} with the runtime's run state inside, the snapshot image, and the restore
 * framing of fromImage. A backend extends it and supplies the rest of Machine (memory, affinity,
 * interrupts), its VcpuBackend, its CPU state and its description.
 */
export abstract class RuntimeMachine<R extends RuntimeRouter = RuntimeRouter, V extends { readonly run: VcpuRunState } = { readonly run: VcpuRunState }, D extends { readonly run: VcpuRunState } = V> {
  protected abstract readonly runtime: MachineRuntime;
  abstract readonly arch: Arch;
  abstract readonly memory: GuestMemory;
  protected abstract readonly vcpuCodec: VcpuStateCodec<V, D>;
  protected router: R | undefined;
  protected disposed = false;
  private routerStarted = false;

  /** The board and device state a snapshot carries beside the vCPU records. */
  abstract describe(): object;
  /** The CPU part of vCPU `i`'s state (everything but `run`), as the codec's plain value. */
  protected abstract saveCpu(i: number): Omit<V, 'run'>;
  /**
   * Writes a validated CPU state into vCPU `i` (the runtime then takes `state.run`). `enter`
   * false: the vCPU is on but its PC was refused (see entryOf): keep the registers as restored
   * without entering them (they are saved back unchanged), the run reports the fault.
   */
  protected abstract restoreCpu(i: number, state: D, enter: boolean): void;
  /**
   * Where a restored vCPU that is on resumes, for the entry check (VcpuBackend.entryFault):
   * its PC and whether that is a virtual address (MMU on). Undefined: nothing to check.
   */
  protected entryOf(_state: D): { readonly pc: bigint; readonly translated: boolean } | undefined {
    return undefined;
  }
  /** Writes out buffered console output (after every run, before an image). */
  protected abstract flushConsole(): void;
  /** Before every run, with the attached (started) router: e.g. prepare trap paths for it. */
  protected prepareRun(_router: R): void {}
  abstract dispose(): void;

  /** Attach the VM's trap router (the core's Vm). Must be done before run(). */
  attach(router: R): void {
    this.router = router;
  }

  /**
   * Runs the guest until a system event, a fault, a hang (every powered-on vCPU waits for an
   * interrupt nobody can send), all vCPUs off, or a pause. Console output is flushed on return.
   * May be called again after 'paused' to continue.
   */
  run(options: RunOptions = {}): RunResult {
    if (this.disposed) throw new MachineError('machine disposed');
    const router = this.router;
    if (!router) throw new MachineError('no trap router attached: call attach(vm) before run()');
    if (!this.routerStarted) {
      router.start();
      this.routerStarted = true;
    }
    this.prepareRun(router);
    try {
      return this.runtime.run(options, router);
    } finally {
      this.flushConsole();
    }
  }

  protected vcpuAt<T>(vcpus: readonly T[], i: number): T {
    const v = vcpus[i];
    if (v === undefined) throw new MachineError(`no vCPU ${i} (this machine has ${vcpus.length})`);
    return v;
  }

  protected assertIdle(): void {
    if (this.runtime.runningVcpu >= 0) throw new MachineError('vCPU state can only be saved or restored between runs');
  }

  /** vCPU `i`'s state as a plain value: the backend's CPU state with the runtime's run state. Only between runs. */
  vcpuState(i: number): V {
    this.assertIdle();
    return { run: this.runtime.saveVcpu(i), ...this.saveCpu(i) } as unknown as V;
  }

  /**
   * Restores vCPU `i` from a plain value, validated first (StateError naming `vCPU i` and the
   * field). A vCPU that is on at a PC it cannot run from (the runtime's entry check, or a
   * GuestFault from the backend entering it) is restored as saved, not entered: the next run
   * stops with that guest fault, naming the vCPU and the address.
   */
  restoreVcpuState(i: number, state: unknown): void {
    this.assertIdle();
    const s = this.vcpuCodec.validate(state, `vCPU ${i} state`);
    const entry = s.run.power === 'on' ? this.entryOf(s) : undefined;
    let fault = entry ? this.runtime.entryFault(i, entry.pc, entry.translated) : undefined;
    if (!fault) {
      try {
        this.restoreCpu(i, s, true);
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        fault = e;
      }
    }
    if (fault) this.restoreCpu(i, s, false);
    this.runtime.restoreVcpu(i, s.run, fault);
  }

  /**
   * A vCPU state plain value (vcpuState's, possibly edited: a failure snapshot puts PC back on
   * the trapping instruction) as a VCPU record payload, validated; no vCPU is touched, so it is
   * safe from inside a trap handler.
   */
  encodeVcpuState(state: unknown): Uint8Array {
    return this.vcpuCodec.encode(state as V);
  }

  /** vCPU `i`'s state as the snapshot's VCPU record payload. */
  saveVcpu(i: number): Uint8Array {
    return this.vcpuCodec.encode(this.vcpuState(i));
  }

  restoreVcpu(i: number, blob: Uint8Array): void {
    this.restoreVcpuState(i, this.vcpuCodec.decode(blob));
  }

  /**
   * Everything the core's snapshot stream needs: description, vCPU records, RAM. The memory
   * entries are live views of guest RAM: write the stream (saveSnapshot) before dispose().
   */
  image(): MachineImage {
    this.assertIdle();
    this.flushConsole();
    return {
      arch: this.arch,
      description: this.describe() as unknown as StateValue,
      vcpus: Array.from({ length: this.runtime.vcpuCount }, (_, i) => this.saveVcpu(i)),
      memory: this.memory.regions(),
    };
  }

  /**
   * The restore framing of every backend's fromImage: decode every vCPU record first (a bad one
   * refuses the image before anything is built), build the machine, fill RAM from the image,
   * let `restoreBoard` restore devices and VM-level state, set the scheduler's next vCPU, then
   * restore the vCPUs (Firecracker's order). The machine is disposed if anything throws.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any backend's machine
  protected static restoreImage<M extends RuntimeMachine<any, any, any>>(
    image: MachineImage,
    decode: (blob: Uint8Array) => unknown,
    build: () => M,
    nextVcpu: number,
    restoreBoard: (m: M) => void,
  ): M {
    const states = image.vcpus.map((blob) => decode(blob));
    const m = build();
    try {
      for (const r of image.memory) m.memory.write(r.base, r.bytes);
      restoreBoard(m);
      m.runtime.nextVcpu = nextVcpu;
      states.forEach((s, i) => m.restoreVcpuState(i, s));
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  powerState(vcpu: number): VcpuPowerState {
    return this.runtime.powerState(vcpu);
  }

  powerOn(vcpu: number, entry: bigint, context: bigint): void {
    this.runtime.powerOn(vcpu, entry, context);
  }

  powerOff(vcpu: number): void {
    this.runtime.powerOff(vcpu);
  }

  idle(vcpu: number): void {
    this.runtime.idle(vcpu);
  }

  systemEvent(event: SystemEvent): void {
    this.runtime.systemEvent(event);
  }

  /** The vCPU whose slice is running (its hypercall is being handled), -1 between runs. */
  get runningVcpu(): number {
    return this.runtime.runningVcpu;
  }

  /** See MachineRuntime.abandon: the run in progress is given up; the machine can be imaged, not run. */
  abandonRun(): void {
    this.runtime.abandon();
  }

  /** Ask run() to return { kind: 'paused' } after the current trap (e.g. to take a snapshot). */
  requestPause(reason = 'requested'): void {
    this.runtime.requestPause(reason);
  }

  /** Boot: vCPU 0 on at `entry` with `context` in its first argument register (default 0); the others off. */
  boot(entry: bigint, context = 0n): void {
    this.runtime.boot(entry, context);
  }
}
