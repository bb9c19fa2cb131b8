/**
 * x86 machine benchmarks, for the root `scripts/bench.mjs`:
 *   import { runX86Bench } from '@plugvisor/machine-x86/bench';
 *
 * (a) the exit round trip: the guest `out` loop (guests/src/outloop.S) through the full stack
 *     (KVM_RUN → the machine's exit decode → sync-regs transfer → the VM's compiled dispatcher →
 *     a service handler → rax write-back) beside the same loop on /dev/kvm from C
 *     (bench/kvm_baseline.c, compiled here with gcc), doing the same work per exit;
 * (b) XSAVE save+restore per vCPU: KVM_GET_XSAVE2 → decode (host-independent) → re-encode →
 *     KVM_SET_XSAVE, beside the two raw ioctls; and a whole vCPU state save+restore.
 * Medians of interleaved rounds.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeXsave, encodeXsave, planXsaveSet, stateFromJson, stateToJson } from '@plugvisor/xsave';
import { X86Machine } from '../machine.js';
import { kvmUnavailable } from '../host.js';
import { guestImage, PARAMS } from '../testing/guests.js';
import { TestRouter } from '../testing/test-router.js';
import { x86TestBuild } from '../testing/build.js';
import { decodeVcpuState, encodeVcpuState } from '../cpu/state.js';
import type { TrapRouter } from '../traps.js';
import type { BenchRow } from '@plugvisor/core/testing';


const BASELINE_C = fileURLToPath(new URL('../../bench/kvm_baseline.c', import.meta.url));
const RAM = 4 << 20;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const spread = (xs: number[]): string => `${(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100).toFixed(0)}%`;

function machine(iterations: number): X86Machine {
  const m = new X86Machine({ memSize: RAM, console: () => {} });
  m.boot(m.loadImage(guestImage('outloop')).entry);
  m.memory.writeU64(PARAMS, BigInt(iterations));
  return m;
}

/** Seconds for the machine to run the loop; `fullStack` routes through a core build and service. */
function runMachine(iterations: number, fullStack: boolean): number {
  const m = machine(iterations);
  try {
    let router: TrapRouter;
    if (fullStack) {
      const vm = x86TestBuild().createVm();
      vm.attachMachine(m);
      router = vm;
    } else {
      const t = new TestRouter();
      t.record = false;
      router = t;
    }
    m.attach(router);
    const t0 = performance.now();
    const r = m.run();
    const s = (performance.now() - t0) / 1000;
    if (r.kind !== 'system-event') throw new Error(`bench guest ended with ${r.kind}${r.kind === 'fault' ? `: ${r.fault.message}` : ''}`);
    return s;
  } finally {
    m.dispose();
  }
}

function runC(bin: string, ramFile: string, iterations: number): number {
  const out = execFileSync(bin, [ramFile, String(iterations)], { encoding: 'utf8' });
  const [secs, exits] = out.trim().split(' ');
  if (Number(exits) !== iterations) throw new Error(`C baseline made ${exits} exits, expected ${iterations}`);
  return Number(secs);
}

/** µs per vCPU for `reps` XSAVE save+restores: full (decode/encode) or raw ioctls only. */
function xsaveRounds(m: X86Machine, reps: number): { full: number; raw: number; whole: number } {
  const v = m.kvmVcpu(0);
  const host = m.host.xsave;
  const size = Math.max(4096, host.uabiSize);
  let t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const buf = v.kvm.getXsave(size, true);
    v.kvm.setXsave(buf);
  }
  const raw = ((performance.now() - t0) * 1000) / reps;
  t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const json = stateToJson(decodeXsave(v.kvm.getXsave(size, true), host)); // save: into the stream's form
    const plan = planXsaveSet(stateFromJson(json), m.guestPolicy, host); // restore: check, re-encode, load
    v.kvm.setXsave(encodeXsave(plan.state, host, new Uint8Array(size)));
  }
  const full = ((performance.now() - t0) * 1000) / reps;
  t0 = performance.now();
  const n = Math.max(1, reps >> 3);
  for (let i = 0; i < n; i++) v.restore(decodeVcpuState(encodeVcpuState({ run: { power: 'on', parked: false, pendingOn: null }, ...v.save() })));
  const whole = ((performance.now() - t0) * 1000) / n;
  return { full, raw, whole };
}

export async function runX86Bench(options: { rounds?: number; iterations?: number; xsaveReps?: number } = {}): Promise<BenchRow[]> {
  const why = kvmUnavailable();
  if (why) return [{ name: 'x86 machine benchmarks skipped', value: 0, unit: '', note: why }];
  const rounds = options.rounds ?? 5;
  const n = options.iterations ?? 40_000;
  const reps = options.xsaveReps ?? 400;
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-x86-bench-'));
  try {
    const bin = join(dir, 'kvm_baseline');
    execFileSync('gcc', ['-O2', '-o', bin, BASELINE_C], { stdio: 'pipe' });
    const ramFile = join(dir, 'ram.bin');
    {
      const m = machine(n);
      writeFileSync(ramFile, m.memory.regions()[0]!.bytes.subarray(0, 2 << 20));
      m.dispose();
    }
    runMachine(2000, true); // warm-up (JIT)
    runMachine(2000, false);
    const t: Record<'c' | 'full' | 'stand' | 'xfull' | 'xraw' | 'whole', number[]> = { c: [], full: [], stand: [], xfull: [], xraw: [], whole: [] };
    const xm = new X86Machine({ memSize: RAM, console: () => {} });
    try {
      xsaveRounds(xm, 20);
      for (let r = 0; r < rounds; r++) {
        t.c.push((runC(bin, ramFile, n) / n) * 1e6);
        t.full.push((runMachine(n, true) / n) * 1e6);
        t.stand.push((runMachine(n, false) / n) * 1e6);
        const x = xsaveRounds(xm, reps);
        t.xfull.push(x.full);
        t.xraw.push(x.raw);
        t.whole.push(x.whole);
      }
    } finally {
      xm.dispose();
    }
    const c = median(t.c);
    const full = median(t.full);
    const stand = median(t.stand);
    const pvm = xm.host.pvm ? ' (this KVM is kvm_pvm: one exit costs ~12 µs, so the ratio says little about hardware KVM)' : '';
    return [
      { name: 'x86 exit round trip, full stack: KVM_RUN + machine + core router + service (µs/exit)', value: full, unit: 'µs', baseline: c, baselineName: 'same guest loop, C program on /dev/kvm (sync regs)', ratio: full / c, goal: 'ratio <= 1.3 (C loop on /dev/kvm)', pass: full / c <= 1.3, spread: spread(t.full), note: `C spread ${spread(t.c)}${pvm}` },
      { name: 'x86 exits/s, full stack', value: 1e6 / full, unit: 'exits/s', baseline: 1e6 / c, ratio: c / full },
      { name: 'x86 exit round trip, machine with its stand-in router (µs/exit)', value: stand, unit: 'µs', baseline: c, ratio: stand / c, spread: spread(t.stand) },
      { name: 'x86 XSAVE save+restore per vCPU: GET_XSAVE2, decode to the portable record, re-encode, SET_XSAVE (µs)', value: median(t.xfull), unit: 'µs', baseline: median(t.xraw), baselineName: 'KVM_GET_XSAVE2 + KVM_SET_XSAVE alone', ratio: median(t.xfull) / median(t.xraw), spread: spread(t.xfull) },
      { name: 'x86 whole vCPU state save+restore (regs, sregs, XSAVE, XCRs, MSRs, LAPIC, events, blob encode/decode) (µs)', value: median(t.whole), unit: 'µs', spread: spread(t.whole) },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
