/**
 * Runs the fuzz guest (guests/src/fuzz.c) on the arm64 machine against a VM of a real build, in
 * this process, and reads back what it found.
 *
 * Before boot the harness writes the guest's parameter block (struct params in fuzz.c) at
 * PARAMS_GPA: the seed, the calls per vCPU (0: until the harness sets `stop`), the vCPU count,
 * RAM's end and the PV-time structure base it configured for each vCPU. The guest reports over
 * the console: one `FUZZ-VIOLATION …` line per violation, `FUZZ-DONE cpu=… calls=… digest=…`
 * per vCPU and `FUZZ-END calls=… violations=…` before PSCI SYSTEM_OFF.
 *
 * With `snapshots`, the run is stopped at that many seeded trap counts; at each, the VM and the
 * machine are saved to a snapshot stream, the machine is thrown away, and the run continues on
 * a machine restored from the stream (core's planRestore, machine-arm64's machineFromPlan) —
 * the outcome must be the same as an uninterrupted run of the same seed.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { planRestore, saveSnapshot, type Hypervisor, type RunResult, type Vm, type VmOverrides } from '@plugvisor/core';
import { Arm64Machine, Layout, checkArm64Snapshot, machineFromPlan } from '@plugvisor/machine-arm64';
import { setStolenTimeBase } from '@plugvisor/svc-pvtime';

export const FUZZ_IMAGE = fileURLToPath(new URL('../guests/bin/fuzz.elf', import.meta.url));
export const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));

/** Guest layout (fuzz.c): RAM at the board's base; the parameter block; the shared window. */
export const MEM_SIZE = 16 << 20;
export const RAM_BASE = Layout.RAM_BASE;
export const PARAMS_GPA = RAM_BASE + 0x80_0000n;
const STOP_OFFSET = 48n;
const PARAMS_MAGIC = 0x3130_5a5a_5546_5650n; // "PVFUZZ01"
/** The last page of the shared window: vCPU k's stolen-time structure at + 64 k. */
export const PVTIME_GPA = RAM_BASE + 0x8f_f000n;
/** The guest's slot and stack layout covers at most this many vCPUs. */
export const MAX_VCPUS = 8;

export interface FuzzOptions {
  readonly hv: Hypervisor;
  readonly overrides?: VmOverrides;
  readonly seed: bigint | number;
  readonly vcpus: number;
  /** Calls per vCPU; without it the guest runs until `seconds` have passed. */
  readonly callsPerVcpu?: number;
  readonly seconds?: number;
  /** Snapshot and restore at this many seeded trap counts (needs callsPerVcpu). */
  readonly snapshots?: number;
}

export interface FuzzResult {
  /** Hypercalls the guest made (its own count, all vCPUs). */
  readonly calls: number;
  /** Wall time of the run. */
  readonly seconds: number;
  /** Every violation: the guest's lines, and the harness's own (a fault, a missing end). */
  readonly violations: string[];
  /** The transcript's outcome lines (FUZZ-DONE per vCPU, sorted, and FUZZ-END). */
  readonly outcome: string[];
  readonly transcript: string;
  /** Trap counts at which the VM was snapshotted and restored. */
  readonly restoredAt: number[];
  readonly end: RunResult;
}

/** A small seeded generator for the harness's own choices (snapshot points). */
export function rng(seed: bigint | number): () => number {
  let s = BigInt.asUintN(64, BigInt(seed) ^ 0x5eed_f022n);
  return () => {
    s = BigInt.asUintN(64, s + 0x9e37_79b9_7f4a_7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58_476d_1ce4_e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d0_49bb_1331_11ebn);
    return Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53;
  };
}

function params(seed: bigint, callsPerVcpu: number, vcpus: number, pvtime: bigint): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(PARAMS_MAGIC, 0);
  b.writeBigUInt64LE(BigInt.asUintN(64, seed), 8);
  b.writeBigUInt64LE(BigInt(callsPerVcpu), 16);
  b.writeBigUInt64LE(BigInt(vcpus), 24);
  b.writeBigUInt64LE(RAM_BASE + BigInt(MEM_SIZE), 32);
  b.writeBigUInt64LE(pvtime, 40);
  return b;
}

const show = (r: RunResult) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v instanceof Error ? v.message : v));

export function runFuzz(o: FuzzOptions): FuzzResult {
  if (!Number.isInteger(o.vcpus) || o.vcpus < 1 || o.vcpus > MAX_VCPUS) throw new RangeError(`vcpus: 1..${MAX_VCPUS}`);
  if (o.callsPerVcpu === undefined && o.seconds === undefined) throw new RangeError('callsPerVcpu or seconds');
  if (o.snapshots && o.callsPerVcpu === undefined) throw new RangeError('snapshots need a fixed call count');
  const seed = BigInt(o.seed);
  const out: string[] = [];
  const consoleOut = (b: Uint8Array) => out.push(Buffer.from(b).toString('latin1'));
  const vm: Vm = o.hv.createVm(o.overrides);
  let machine = new Arm64Machine({ vcpus: o.vcpus, memSize: MEM_SIZE, console: consoleOut });
  const hasPvTime = o.hv.catalog.services.has('@plugvisor/svc-pvtime');
  let current = vm;
  try {
    vm.attachMachine(machine);
    machine.attach(vm);
    machine.memory.write(PARAMS_GPA, params(seed, o.callsPerVcpu ?? 0, o.vcpus, hasPvTime ? PVTIME_GPA : 0n));
    const img = machine.loadImage(readFileSync(FUZZ_IMAGE));
    machine.boot(img.entry);
    if (hasPvTime) for (let i = 0; i < o.vcpus; i++) setStolenTimeBase(vm, i, PVTIME_GPA + 64n * BigInt(i));

    // Snapshot points: seeded trap counts spread over the run.
    const points: number[] = [];
    if (o.snapshots && o.callsPerVcpu) {
      const next = rng(seed);
      const traps = o.callsPerVcpu * o.vcpus;
      for (let i = 0; i < o.snapshots; i++) points.push(1 + Math.floor(next() * traps));
      points.sort((a, b) => a - b);
    }
    const restoredAt: number[] = [];
    const t0 = process.hrtime.bigint();
    const deadline = o.seconds !== undefined ? t0 + BigInt(Math.round(o.seconds * 1e9)) : undefined;
    let trapped = 0;
    let end: RunResult;
    let stopped = false;
    for (;;) {
      let budget: number | undefined;
      if (points.length) budget = points[0]! - trapped;
      else if (deadline !== undefined && !stopped) budget = 20_000;
      const r = budget !== undefined ? machine.run({ pauseAfterTraps: Math.max(1, budget) }) : machine.run();
      if (r.kind !== 'paused') {
        end = r;
        break;
      }
      trapped += Math.max(1, budget!);
      if (points.length && trapped >= points[0]!) {
        while (points.length && trapped >= points[0]!) points.shift();
        const bytes = saveSnapshot(current, machine.image());
        machine.dispose();
        const plan = planRestore(bytes, o.hv, { arch: 'arm64', checkMachine: checkArm64Snapshot });
        machine = machineFromPlan(plan, { console: consoleOut });
        current = plan.vm;
        restoredAt.push(trapped);
      }
      if (deadline !== undefined && !stopped && process.hrtime.bigint() >= deadline) {
        machine.memory.write(PARAMS_GPA + STOP_OFFSET, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
        stopped = true;
      }
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const transcript = out.join('');
    const lines = transcript.split('\n');
    const violations = lines.filter((l) => l.startsWith('FUZZ-VIOLATION'));
    const done = lines.filter((l) => l.startsWith('FUZZ-DONE')).sort();
    const fin = lines.find((l) => l.startsWith('FUZZ-END'));
    if (end.kind !== 'system-event' || end.event.kind !== 'off') violations.push(`FUZZ-VIOLATION harness kind=run-end: the run ended with ${show(end)}`);
    if (!fin) violations.push('FUZZ-VIOLATION harness kind=run-end: the guest did not finish (no FUZZ-END line)');
    else if (done.length !== o.vcpus) violations.push(`FUZZ-VIOLATION harness kind=run-end: ${done.length} of ${o.vcpus} vCPUs finished`);
    const calls = fin ? Number(/calls=(\d+)/.exec(fin)![1]) : 0;
    // The guest prints its first 64 violations per vCPU and counts them all.
    const counted = fin ? Number(/violations=(\d+)/.exec(fin)![1]) : 0;
    const printed = violations.filter((l) => !l.startsWith('FUZZ-VIOLATION harness')).length;
    if (counted > printed) violations.push(`FUZZ-VIOLATION harness kind=unprinted: ${counted - printed} more violations the guest counted but did not print`);
    return { calls, seconds, violations, outcome: fin ? [...done, fin] : done, transcript, restoredAt, end };
  } finally {
    machine.dispose();
  }
}

/** The overrides that turn on every opt-in feature of a build (the "opt-in" build). */
export function allOptIn(hv: Hypervisor): VmOverrides {
  const features: Record<string, boolean> = {};
  for (const [name, { decl }] of hv.catalog.features) if (decl.default === 'opt-in') features[name] = true;
  return { features };
}

/**
 * Runs `calls` per vCPU uninterrupted and again with `snapshots` seeded snapshot/restore
 * points; a different outcome (per-vCPU call counts, digests, violations) is a violation.
 */
export function compareWithRestores(o: Omit<FuzzOptions, 'seconds' | 'snapshots'> & { callsPerVcpu: number; snapshots: number }): {
  whole: FuzzResult;
  restored: FuzzResult;
  violations: string[];
} {
  const whole = runFuzz({ ...o, snapshots: 0 });
  const restored = runFuzz(o);
  const violations: string[] = [];
  // With several vCPUs, how their Xen event-channel calls interleave on the domain's shared
  // ports is scheduling, which a restore may change as real hardware may (the machine restarts
  // its instruction-count slice at a restore): the digest leaves those results out and the
  // comparison leaves out xen-ok, their success count. Everything else must match.
  const norm = (r: FuzzResult) => [...r.outcome, ...r.violations].map((l) => (o.vcpus > 1 ? l.replace(/ xen-ok=\d+/, '') : l)).join('\n');
  const a = norm(whole);
  const b = norm(restored);
  if (a !== b) {
    violations.push(
      `FUZZ-VIOLATION harness kind=snapshot seed=${o.seed} vcpus=${o.vcpus} restored at traps ${restored.restoredAt.join(',')}: outcome differs from the uninterrupted run:\n  whole:    ${a.replace(/\n/g, '\n            ')}\n  restored: ${b.replace(/\n/g, '\n            ')}`,
    );
  }
  return { whole, restored, violations };
}
