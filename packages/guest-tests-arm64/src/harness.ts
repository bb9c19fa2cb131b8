/**
 * Runs this package's aarch64 test guest (guests/src/smccc.c) on the arm64 machine with a VM
 * composed from real services, and reads back what the guest printed.
 *
 * The guest takes its instructions from a parameter block the test writes into guest RAM
 * before boot (PARAMS_GPA): a mode and, for the script mode, a list of operations — SMCCC
 * calls with x0..x7 as given (HVC #0, SMC #0 or SMC #1), calls bracketed by generic-counter
 * reads, and u64 stores/loads. For every call the guest prints x0..x3 as it got them back and
 * which of x0..x17 the call changed; the tests assert on that transcript.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hypervisor, type RestorePlan, type ServicePlugin, type Vm, type VmOverrides } from '@plugvisor/core';
import { Arm64Machine, Layout, machineFromPlan, type RunResult } from '@plugvisor/machine-arm64';
import { createKvmVendorService } from '@plugvisor/svc-kvm-vendor';
import { createPsciService, type PsciOptions } from '@plugvisor/svc-psci';
import { createPtpService } from '@plugvisor/svc-ptp';
import { createPvTimeService } from '@plugvisor/svc-pvtime';
import { createSmcccArchService } from '@plugvisor/svc-smccc-arch';
import { createTrngService } from '@plugvisor/svc-trng';

export const GUEST_BIN_DIR = fileURLToPath(new URL('../guests/bin/', import.meta.url));
export const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));

export function guestImage(name = 'smccc'): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}

/** Guest RAM used by the tests: 16 MiB at the board's RAM base. */
export const MEM_SIZE = 16 << 20;
export const RAM_BASE = Layout.RAM_BASE;
/** Where the guest reads its parameters (guests/src/smccc.c PARAMS_GPA). */
export const PARAMS_GPA = RAM_BASE + 0x80_0000n;
/** A free, 64-byte aligned page the tests use for guest data (e.g. a stolen-time structure). */
export const SCRATCH_GPA = RAM_BASE + 0x90_0000n;
const PARAMS_MAGIC = 0x5354_5345_5456_5650n; // "PVVTESTS"

export const Mode = Object.freeze({ SCRIPT: 0, SMP: 1 });

const OpKind = Object.freeze({ hvc: 1, smc: 2, smc1: 3, timed: 4, store: 5, load: 6, flush: 7 });

export type Conduit = 'hvc' | 'smc' | 'smc1';

export type Op =
  | { readonly kind: Conduit; readonly name: string; readonly x: readonly bigint[] }
  | { readonly kind: 'timed'; readonly name: string; readonly counter: 'virtual' | 'physical'; readonly x: readonly bigint[] }
  | { readonly kind: 'store'; readonly gpa: bigint; readonly value: bigint }
  | { readonly kind: 'load'; readonly name: string; readonly gpa: bigint }
  | { readonly kind: 'flush' };

/** What the guest printed for one operation. */
export interface CallResult {
  /** x0..x3 after the call, as the guest read them. */
  readonly x: readonly bigint[];
  /** Bit n set: the call changed xn (n = 0..17). */
  readonly changed: number;
  /** Timed calls: the counter just before and just after the trap. */
  readonly counter?: { readonly before: bigint; readonly after: bigint };
}

const u64 = (v: bigint | number) => BigInt.asUintN(64, BigInt(v));

/** Builds a script: each call has a unique name its result is found by. */
export class Script {
  readonly ops: Op[] = [];

  private add(op: Op): this {
    if ('name' in op && this.ops.some((o) => 'name' in o && o.name === op.name)) throw new Error(`duplicate script name ${op.name}`);
    this.ops.push(op);
    return this;
  }

  /** x0 is taken whole (64 bits); x1.. as given, the rest 0. */
  call(name: string, x0: bigint | number, ...args: Array<bigint | number>): this {
    return this.via('hvc', name, x0, ...args);
  }

  via(conduit: Conduit, name: string, x0: bigint | number, ...args: Array<bigint | number>): this {
    return this.add({ kind: conduit, name, x: regs(x0, args) });
  }

  timed(name: string, counter: 'virtual' | 'physical', x0: bigint | number, ...args: Array<bigint | number>): this {
    return this.add({ kind: 'timed', name, counter, x: regs(x0, args) });
  }

  store(gpa: bigint, value: bigint): this {
    return this.add({ kind: 'store', gpa, value });
  }

  load(name: string, gpa: bigint): this {
    return this.add({ kind: 'load', name, gpa });
  }

  /** Writes what the guest collected so far to the UART (it prints at the end otherwise). */
  flush(): this {
    return this.add({ kind: 'flush' });
  }

  /** The same calls again under other names (e.g. to repeat a probe after a restore). */
  names(): string[] {
    return this.ops.flatMap((o) => ('name' in o ? [o.name] : []));
  }
}

function regs(x0: bigint | number, args: Array<bigint | number>): bigint[] {
  if (args.length > 7) throw new Error('at most x1..x7');
  const x = [u64(x0), ...args.map(u64)];
  while (x.length < 8) x.push(0n);
  return x;
}

/** The parameter block (guests/src/smccc.c struct params / struct op). */
export function encodeParams(mode: number, ops: readonly Op[] = []): Uint8Array {
  const OP_SIZE = 8 + 8 * 8;
  const b = Buffer.alloc(16 + ops.length * OP_SIZE);
  b.writeBigUInt64LE(PARAMS_MAGIC, 0);
  b.writeUInt32LE(mode, 8);
  b.writeUInt32LE(ops.length, 12);
  ops.forEach((op, i) => {
    const o = 16 + i * OP_SIZE;
    b.writeUInt32LE(OpKind[op.kind], o);
    let x: readonly bigint[];
    if (op.kind === 'store') x = [op.gpa, op.value];
    else if (op.kind === 'load') x = [op.gpa];
    else if (op.kind === 'flush') x = [];
    else x = op.x;
    if (op.kind === 'timed') b.writeUInt32LE(op.counter === 'virtual' ? 0 : 1, o + 4);
    x.forEach((v, k) => b.writeBigUInt64LE(u64(v), o + 8 + 8 * k));
  });
  return b;
}

// ---- builds ---------------------------------------------------------------------------------

export type ServiceName = 'smccc-arch' | 'psci' | 'trng' | 'kvm-vendor' | 'ptp' | 'pvtime';

export interface BuildOptions {
  /** Services to leave out of the default set. */
  readonly without?: readonly ServiceName[];
  readonly psci?: PsciOptions;
  /** Test-only services composed beside the real ones. */
  readonly extra?: readonly ServicePlugin<any>[];
  readonly name?: string;
}

/** The SMCCC build: every SMCCC service, as a KVM/arm64 VMM would have them. */
export function composeBuild(options: BuildOptions = {}): Hypervisor {
  const without = new Set(options.without ?? []);
  const all: Array<[ServiceName, () => ServicePlugin<any>]> = [
    ['smccc-arch', createSmcccArchService],
    ['psci', () => createPsciService(options.psci)],
    ['trng', createTrngService],
    ['kvm-vendor', createKvmVendorService],
    ['ptp', createPtpService],
    ['pvtime', createPvTimeService],
  ];
  const services = all.filter(([n]) => !without.has(n)).map(([, make]) => make());
  return Hypervisor.compose([...services, ...(options.extra ?? [])], { name: options.name ?? (without.size ? `without ${[...without].join(', ')}` : 'smccc') });
}

// ---- one guest --------------------------------------------------------------------------------

export interface BootOptions {
  readonly hv?: Hypervisor;
  readonly overrides?: VmOverrides;
  readonly vcpus?: number;
  readonly mode?: number;
  readonly script?: Script;
  /** Runs after the VM and machine exist, before the first run (ONE_REG writes, pvtime bases). */
  readonly setup?: (vm: Vm, machine: Arm64Machine) => void;
}

/** A VM on the arm64 machine running the test guest. */
export class GuestSession {
  private out: string[] = [];
  readonly script: Script | undefined;

  private constructor(
    readonly vm: Vm,
    readonly machine: Arm64Machine,
    script: Script | undefined,
  ) {
    this.script = script;
  }

  /** Creates the VM (build defaults + overrides), the machine, loads and boots the guest. */
  static boot(options: BootOptions = {}): GuestSession {
    const hv = options.hv ?? composeBuild();
    const vm = hv.createVm(options.overrides);
    let session: GuestSession | undefined;
    const machine = new Arm64Machine({
      vcpus: options.vcpus ?? 1,
      memSize: MEM_SIZE,
      console: (b) => session!.out.push(Buffer.from(b).toString('latin1')),
    });
    session = new GuestSession(vm, machine, options.script);
    try {
      vm.attachMachine(machine);
      machine.attach(vm);
      machine.memory.write(PARAMS_GPA, encodeParams(options.mode ?? Mode.SCRIPT, options.script?.ops ?? []));
      const img = machine.loadImage(guestImage());
      machine.boot(img.entry);
      options.setup?.(vm, machine);
    } catch (e) {
      machine.dispose();
      throw e;
    }
    return session;
  }

  /**
   * The machine for a verified restore plan (machine-arm64's machineFromPlan), its VM attached;
   * console output continues in this session.
   */
  static restore(plan: RestorePlan, script?: Script): GuestSession {
    let session: GuestSession | undefined;
    const machine = machineFromPlan(plan, { console: (b) => session!.out.push(Buffer.from(b).toString('latin1')) });
    session = new GuestSession(plan.vm, machine, script);
    return session;
  }

  run(options: { pauseAfterTraps?: number } = {}): RunResult {
    return this.machine.run(options);
  }

  /** Runs to the end and expects the guest to finish its script and power off. */
  runToEnd(): string {
    const r = this.run();
    if (r.kind !== 'system-event' || r.event.kind !== 'off') {
      throw new Error(`guest did not finish: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}\n${this.text()}`);
    }
    if (!this.text().endsWith('done\n')) throw new Error(`guest powered off early:\n${this.text()}`);
    return this.text();
  }

  text(): string {
    return this.out.join('');
  }

  /** Results by script name (the guest prints them by op index). */
  results(): Map<string, CallResult & { value?: bigint }> {
    const ops = this.script?.ops ?? [];
    const map = new Map<string, CallResult & { value?: bigint }>();
    for (const line of this.text().split('\n')) {
      const m = /^#(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const op = ops[Number(m[1])];
      if (!op || !('name' in op)) throw new Error(`guest printed a result for op ${m[1]}, which the script does not have: ${line}`);
      const words = m[2]!.split(' ');
      if (op.kind === 'load') {
        map.set(op.name, { x: [], changed: 0, value: BigInt(`0x${words[0]}`) });
        continue;
      }
      const x = words.slice(0, 4).map((w) => BigInt(`0x${w}`));
      const changed = parseInt(words[4]!.slice(1), 16);
      const res: CallResult = words[5]?.startsWith('t')
        ? { x, changed, counter: { before: BigInt(`0x${words[5].slice(1)}`), after: BigInt(`0x${words[6]}`) } }
        : { x, changed };
      map.set(op.name, res);
    }
    return map;
  }

  /** x0..x30 of vCPU `i` as the machine holds them (between runs). */
  xregs(i = 0): bigint[] {
    const blob = Buffer.from(this.machine.saveVcpu(i));
    return Array.from({ length: 31 }, (_, n) => blob.readBigUInt64LE(16 + 8 * n));
  }

  dispose(): void {
    this.machine.dispose();
  }
}

/** −n as the guest sees it in a 64-bit register. */
export const neg = (n: number): bigint => BigInt.asUintN(64, BigInt(-n));
export const NOT_SUPPORTED = neg(1);
