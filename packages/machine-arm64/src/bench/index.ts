/**
 * arm64 machine benchmarks, for the root `scripts/bench.mjs`:
 *   import { runArm64Bench } from '@plugvisor/machine-arm64/bench';
 *
 * (a) guest HVC round trips per second through the machine (trap hook -> register transfer ->
 *     router -> write-back) beside the same guest loop on bare libunicorn in C; the same through
 *     FFI register batches instead of the register window, and through the old wholesale
 *     transfer (x0..x17 in, x0..x3 out, batches: the trap path before call signatures);
 * (b) a compute-only guest loop (no traps) beside bare libunicorn running the same image.
 * Plus a breakdown of the trap path (where the time goes). The C baseline is compiled here with
 * the machine's gcc against libunicorn-dev into a temp dir. Medians of interleaved rounds.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Arm64Machine } from '../machine.js';
import { Layout } from '../board/layout.js';
import { TestRouter } from '../testing/test-router.js';
import { defineService, Hypervisor, smcccReturn } from '@plugvisor/core';
import type { TrapRouter } from '../traps.js';
import type { BenchRow } from '@plugvisor/core/testing';
import { guestImage } from '../testing/guests.js';
import { UcEngine, HostRam, Reg, WINDOW_PC } from '../ffi/unicorn.js';
import { Sys } from '../cpu/sysregs.js';
import { runArm64HolesBench } from './holes.js';

const BASELINE_C = fileURLToPath(new URL('../../bench/uc_baseline.c', import.meta.url));
const ITER_MARK = 1_000_000n; // the value of `iterations` in the committed bench images

interface Flat {
  bytes: Uint8Array;
  iterOffset: number;
}

/** The image as flat RAM contents from 0x4000_0000, and where `iterations` lives. */
function flatten(name: string): Flat {
  const m = new Arm64Machine({ memSize: 1 << 20, console: () => {} });
  try {
    const img = m.loadImage(guestImage(name));
    const end = Math.max(...img.segments.map((s) => Number(s.end - Layout.RAM_BASE)));
    const bytes = Uint8Array.from(m.memory.regions()[0]!.bytes.subarray(0, end));
    const dv = new DataView(bytes.buffer);
    const hits: number[] = [];
    for (let o = 0; o + 8 <= bytes.length; o += 8) if (dv.getBigUint64(o, true) === ITER_MARK) hits.push(o);
    if (hits.length !== 1) throw new Error(`${name}: expected one 'iterations' word, found ${hits.length}`);
    return { bytes, iterOffset: hits[0]! };
  } finally {
    m.dispose();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function runC(bin: string, file: string, flat: Flat, iterations: number): number {
  const out = execFileSync(bin, [file, String(flat.iterOffset), String(iterations)], { encoding: 'utf8' });
  return Number(out.trim().split(' ')[0]);
}

/**
 * The full stack: a build composed by the core from a bench-only service — a range call over
 * every SMCCC id without bit 31 (the loop's x0 = i) that answers x0 + 1, and PSCI SYSTEM_OFF —
 * so each trap goes machine → the VM's compiled dispatcher → tapable hook → service handler.
 */
const benchBuild = Hypervisor.compose([
  defineService({
    name: '@plugvisor/bench-echo',
    version: '0.0.0',
    surface: {
      features: [{ name: 'bench', default: 'legacy-opt-out', description: 'bench loop calls' }],
      calls: [
        { name: 'BENCH_PLUS_ONE', conduit: 'smccc', id: 0, last: 0x7fff_ffff, feature: 'bench' },
        { name: 'BENCH_SYSTEM_OFF', conduit: 'smccc', id: 0x8400_0008, feature: 'bench' },
      ],
    },
    handlers: {
      BENCH_PLUS_ONE: (v) => smcccReturn(v.regs, (v.regs.lo(0) + 1) | 0),
      BENCH_SYSTEM_OFF: (v) => v.machine.systemEvent({ kind: 'off', vcpu: v.index, data: [] }),
    },
  }),
]);

/**
 * How runMachine routes: the machine's stand-in router; the full stack (register window, or FFI
 * batches); or the full stack with the wholesale transfer of a router that declares nothing
 * (x0..x17 in, x0..x3 out) over batches — the trap path as it was before call signatures.
 */
type Stack = 'stand-in' | 'full' | 'full-batches' | 'full-wholesale';

/** Seconds for the machine to run the image with `iterations`. */
function runMachine(flat: Flat, iterations: number, stack: Stack = 'stand-in'): number {
  const m = new Arm64Machine({ memSize: 16 << 20, console: () => {}, registerWindow: stack === 'full' || stack === 'stand-in' });
  try {
    let router: TrapRouter;
    if (stack === 'stand-in') {
      const test = new TestRouter(m, { echoPlusOne: true });
      test.record = false;
      router = test;
    } else {
      const vm = benchBuild.createVm();
      vm.attachMachine(m);
      // Only start and dispatch: no transfer (so wholesale), no direct dispatcher.
      router = stack === 'full-wholesale' ? { start: () => vm.start(), dispatch: (c, v) => vm.dispatch(c, v) } : vm;
    }
    m.attach(router);
    m.memory.write(Layout.RAM_BASE, flat.bytes);
    m.memory.writeU64(Layout.RAM_BASE + BigInt(flat.iterOffset), BigInt(iterations));
    m.boot(Layout.RAM_BASE);
    const t = performance.now();
    const r = m.run();
    const s = (performance.now() - t) / 1000;
    if (r.kind !== 'system-event') throw new Error(`bench guest ended with ${r.kind}`);
    return s;
  } finally {
    m.dispose();
  }
}

/**
 * Trap-path breakdown on a raw engine answering x0 + 1 like the C loop: `mode` 0 = empty JS
 * hook (the koffi callback only), 1 = hook + one batch read of [PC, x0..x3, x16] (what a trap
 * reads first with batches), 2 = that + an x0 write-back batch, 3 = hook + the same through the register window.
 */
function runRawHook(flat: Flat, iterations: number, mode: 0 | 1 | 2 | 3): number {
  const ram = HostRam.allocate(16 << 20);
  const e = UcEngine.open();
  try {
    e.mapRam(Layout.RAM_BASE, ram);
    ram.bytes.set(flat.bytes);
    new DataView(ram.bytes.buffer, ram.bytes.byteOffset).setBigUint64(flat.iterOffset, BigInt(iterations), true);
    e.writeSys(Sys.SCR_EL3, (1n << 8n) | (1n << 10n));
    const rd = e.batch([Reg.PC, Reg.X0, Reg.X0 + 1, Reg.X0 + 2, Reg.X0 + 3, Reg.X0 + 16]);
    const wb = e.batch([Reg.X0]);
    const w = mode === 3 ? e.registerWindow() : undefined;
    if (mode === 3 && !w) return NaN;
    let pc = 0;
    e.onInterrupt((intno) => {
      if (intno !== 11) return e.stop();
      if (mode === 0) return;
      if (w) {
        pc = w[WINDOW_PC]!;
        w[0] = w[0]! + 1;
        return;
      }
      rd.read();
      pc = rd.u32[0]!;
      if (mode === 2) {
        wb.u32[0] = rd.u32[2]! + 1;
        wb.u32[1] = rd.u32[3]!;
        wb.write();
      }
    });
    const t = performance.now();
    e.start(Layout.RAM_BASE, 0n, 0);
    if (pc === 0 && mode !== 0) throw new Error('bench hook did not run');
    return (performance.now() - t) / 1000;
  } finally {
    e.close();
    ram.free();
  }
}

export async function runArm64Bench(options: { rounds?: number; hvcIterations?: number; computeIterations?: number } = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 5;
  const nHvc = options.hvcIterations ?? 500_000;
  const nCompute = options.computeIterations ?? 10_000_000;
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-arm64-bench-'));
  try {
    const bin = join(dir, 'uc_baseline');
    execFileSync('gcc', ['-O2', '-o', bin, BASELINE_C, '-lunicorn'], { stdio: 'pipe' });
    const hvc = flatten('hvcloop');
    const compute = flatten('compute');
    const hvcFile = join(dir, 'hvcloop.bin');
    const computeFile = join(dir, 'compute.bin');
    writeFileSync(hvcFile, hvc.bytes);
    writeFileSync(computeFile, compute.bytes);

    const t: Record<string, number[]> = {
      cHvc: [], fullHvc: [], batchHvc: [], wholesaleHvc: [], standInHvc: [],
      cCompute: [], jsCompute: [], raw0: [], raw1: [], raw2: [], raw3: [],
    };
    runMachine(hvc, 10_000); // warm-up (JIT)
    for (const stack of ['full', 'full-batches', 'full-wholesale'] as const) runMachine(hvc, 10_000, stack);
    const probe = new Arm64Machine({ memSize: 1 << 20, console: () => {} });
    const transport = probe.registerTransport;
    probe.dispose();
    for (let r = 0; r < rounds; r++) {
      t.cHvc!.push(runC(bin, hvcFile, hvc, nHvc));
      t.fullHvc!.push(runMachine(hvc, nHvc, 'full'));
      t.batchHvc!.push(runMachine(hvc, nHvc, 'full-batches'));
      t.wholesaleHvc!.push(runMachine(hvc, nHvc, 'full-wholesale'));
      t.standInHvc!.push(runMachine(hvc, nHvc, 'stand-in'));
      for (const mode of [0, 1, 2, 3] as const) t[`raw${mode}`]!.push(runRawHook(hvc, nHvc, mode));
      t.cCompute!.push(runC(bin, computeFile, compute, nCompute));
      t.jsCompute!.push(runMachine(compute, nCompute));
    }
    const perTrapNs = (k: string) => (median(t[k]!) / nHvc) * 1e9;
    const cNs = perTrapNs('cHvc');
    const row = (name: string, k: string): BenchRow => ({ name, value: perTrapNs(k), unit: 'ns', baseline: cNs, ratio: perTrapNs(k) / cNs });
    const fullNs = perTrapNs('fullHvc');
    const cRate = nCompute / median(t.cCompute!);
    const jsRate = nCompute / median(t.jsCompute!);
    const rows: BenchRow[] = [
      {
        name: 'arm64 guest HVC round trip, full stack: machine + core router + service (ns/trap)',
        value: fullNs,
        unit: 'ns',
        baseline: cNs,
        baselineName: 'same guest loop, C program on libunicorn',
        ratio: fullNs / cNs,
        goal: 'ratio <= 6 (C loop on libunicorn)',
        pass: fullNs / cNs <= 6,
        note: `registers through ${transport === 'window' ? 'the register window (no FFI call)' : 'FFI batches (no register window on this host)'}`,
      },
      { name: 'arm64 guest HVC round trips/s, full stack', value: 1e9 / fullNs, unit: 'traps/s', baseline: 1e9 / cNs, ratio: cNs / fullNs },
      row('arm64 guest HVC round trip, full stack, registers through FFI batches per mask (ns/trap)', 'batchHvc'),
      row('arm64 guest HVC round trip, full stack, wholesale transfer x0..x17 in / x0..x3 out by batches, as before signatures (ns/trap)', 'wholesaleHvc'),
      row('arm64 guest HVC round trip, machine with its stand-in router (ns/trap)', 'standInHvc'),
      row('arm64 trap breakdown: empty koffi hook (ns/trap)', 'raw0'),
      row('arm64 trap breakdown: hook + batch read of PC, x0..x3, x16 (ns/trap)', 'raw1'),
      row('arm64 trap breakdown: hook + read + x0 write-back batch (ns/trap)', 'raw2'),
    ];
    if (!Number.isNaN(perTrapNs('raw3'))) rows.push(row('arm64 trap breakdown: hook + PC, x0 read and x0 write through the register window (ns/trap)', 'raw3'));
    // Removed guest pages (memory/holes.ts): removal, an access fault, a sweep with holes elsewhere.
    rows.push(...runArm64HolesBench({ rounds }));
    rows.push({ name: 'arm64 compute-only guest loop, full machine (iterations/s)', value: jsRate, unit: 'iter/s', baseline: cRate, baselineName: 'same image on bare Unicorn from C', ratio: jsRate / cRate, goal: 'ratio >= 0.9 (bare Unicorn from C)', pass: jsRate / cRate >= 0.9 });
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
