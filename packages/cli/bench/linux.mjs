// Linux boot to power-off: Debian's stock arm64 kernel (.cache/linux/Image, fetched by
// scripts/setup.sh) with the acceptance initramfs (.cache/linux/initramfs.cpio, whose /init
// prints `init: ` lines, ends with `init: powering off` and calls reboot(LINUX_REBOOT_CMD_POWER_OFF))
// on Plugvisor's arm64 machine, beside QEMU's TCG `virt` board booting the same kernel, initramfs
// and command line: for 1 and 2 vCPUs, runs interleaved round by round (Plugvisor 1, QEMU 1,
// Plugvisor 2, QEMU 2), so drift in the host's load falls on all four alike.
//
// What is timed: spawn to process exit. The guest has powered off when it makes the PSCI
// SYSTEM_OFF call (Arm DEN0022, "Arm Power State Coordination Interface", SYSTEM_OFF), and both
// Plugvisor (exit 0) and QEMU (target/arm/psci.c arm_handle_psci_call:
// qemu_system_shutdown_request) exit on it. The console's `reboot: Power down` line
// (Linux kernel/reboot.c kernel_power_off) comes *before* that call: arm64's machine_power_off
// (arch/arm64/kernel/process.c) still runs smp_send_stop() to park the other CPUs, which waits
// on IPIs a machine must deliver, so a clock stopped at that line would hide part of the boot.
// The time to the first `init: ` line (userspace reached) and to `reboot: Power down` are
// reported in the note. A run counts only if it exited 0 *and* printed `init: powering off`;
// any other run is a failure, reported with its last console lines, never a time.
//
// Env: PLUGVISOR_BENCH_LINUX_RUNS (rounds, default 5), PLUGVISOR_BENCH_LINUX_TIMEOUT (seconds a
// run may take before it is killed, default 180). Progress goes to stderr, rows to the caller.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const repo = (p) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
export const KERNEL = repo('.cache/linux/Image');
export const INITRD = repo('.cache/linux/initramfs.cpio');
const BIN = repo('packages/cli/dist/bin.js');
export const APPEND = 'console=ttyAMA0 panic=-1';
const QEMU = 'qemu-system-aarch64';
const TAIL_LINES = 4;
/** A configuration that timed out this many times is not run again (each costs a whole timeout). */
const MAX_TIMEOUTS = 2;

/** The median of xs (the mean of the two middle values for an even count); NaN when empty. */
export function median(xs) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `min–max s` of xs, or undefined when empty. */
export function spreadOf(xs) {
  return xs.length ? `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} s` : undefined;
}

/** The interleaved order of runs: per round Plugvisor 1 vCPU, QEMU 1, Plugvisor 2, QEMU 2. */
export function schedule(rounds) {
  const order = [];
  for (let round = 1; round <= rounds; round++) {
    for (const vcpus of [1, 2]) for (const vmm of ['plugvisor', 'qemu']) order.push({ round, vmm, vcpus });
  }
  return order;
}

/**
 * Tracks one run's console as it arrives (chunks may split lines and carry \r\n, as QEMU's
 * serial does): when the first `init: ` line came, when `reboot: Power down` came, whether
 * `init: powering off` came, and the last lines.
 */
export class ConsoleWatch {
  constructor(t0) {
    this.t0 = t0;
    this.partial = '';
    this.tail = [];
    this.firstInit = undefined;
    this.powerDown = undefined;
    this.poweringOff = false;
  }

  feed(text, now) {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop();
    for (const line of lines) this.line(line, now);
  }

  end(now) {
    if (this.partial) this.line(this.partial, now);
    this.partial = '';
  }

  line(raw, now) {
    const line = raw.replace(/\r/g, '');
    if (!line.trim()) return;
    // Only at the start of a line: the kernel's own `mem auto-init: ...` contains `init: ` too.
    if (this.firstInit === undefined && line.startsWith('init: ')) this.firstInit = (now - this.t0) / 1000;
    if (line.includes('init: powering off')) this.poweringOff = true;
    if (this.powerDown === undefined && line.includes('reboot: Power down')) this.powerDown = (now - this.t0) / 1000;
    this.tail.push(line.length > 160 ? `${line.slice(0, 157)}...` : line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }
}

/**
 * A finished run's verdict: { ok: true, seconds, firstInit, powerDown } when it exited 0 and
 * printed `init: powering off`; else { ok: false, why } naming the exit and the last console lines.
 */
export function judgeRun({ code, signal, timedOut, spawnError, seconds, watch, timeout }) {
  const tail = watch.tail.length ? `; last lines: ${watch.tail.join(' | ')}` : '; no console output';
  if (spawnError) return { ok: false, why: `could not start: ${spawnError}` };
  if (timedOut) return { ok: false, timedOut: true, why: `no power-off within ${timeout} s (killed)${tail}` };
  if (code !== 0) return { ok: false, why: `${signal ? `killed by ${signal}` : `exit ${code}`}${watch.poweringOff ? '' : ' before `init: powering off`'}${tail}` };
  if (!watch.poweringOff) return { ok: false, why: `exit 0 without \`init: powering off\`${tail}` };
  return { ok: true, seconds, firstInit: watch.firstInit, powerDown: watch.powerDown };
}

/** The command line of one run. */
export function command(vmm, vcpus) {
  if (vmm === 'plugvisor') {
    return [process.execPath, [BIN, 'run', '--kernel', KERNEL, '--initrd', INITRD, '--mem', '512M', '--vcpus', String(vcpus), '--append', APPEND]];
  }
  return [QEMU, ['-machine', 'virt', '-cpu', 'max', '-smp', String(vcpus), '-m', '512', '-nographic', '-no-reboot', '-kernel', KERNEL, '-initrd', INITRD, '-append', APPEND]];
}

/** Runs one boot to its end (or kills it, with its process group, after `timeout` seconds). */
export function runOnce([file, args], timeout) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const watch = new ConsoleWatch(t0);
    let timedOut = false;
    let spawnError;
    // stdin is /dev/null (not a TTY); detached puts the child in its own process group to kill.
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeout * 1000);
    const take = (d) => watch.feed(d.toString('latin1'), performance.now());
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (e) => (spawnError = e.message));
    child.on('close', (code, signal) => {
      const now = performance.now();
      clearTimeout(timer);
      watch.end(now);
      resolve(judgeRun({ code, signal, timedOut, spawnError, seconds: (now - t0) / 1000, watch, timeout }));
    });
  });
}

/** Why QEMU cannot be run (undefined when it can), installing Debian's qemu-system-arm as root. */
export function qemuProblem({ install = true } = {}) {
  const probe = () => spawnSync(QEMU, ['--version'], { stdio: 'ignore' });
  if (!probe().error) return undefined;
  if (!install) return `${QEMU} is not installed`;
  if (process.getuid?.() !== 0) return `${QEMU} is not installed, and installing Debian's qemu-system-arm needs root`;
  const apt = (...a) => spawnSync('apt-get', a, { stdio: ['ignore', 2, 2], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const install1 = () => apt('install', '-y', '--no-install-recommends', 'qemu-system-arm');
  console.error(`bench linux: ${QEMU} missing; installing Debian's qemu-system-arm (apt-get install -y --no-install-recommends qemu-system-arm)`);
  let r = install1();
  if (r.status !== 0 && !r.error) {
    apt('update');
    r = install1();
  }
  if (r.error) return `${QEMU} is not installed and apt-get could not run: ${r.error.message}`;
  if (r.status !== 0) return `${QEMU} is not installed and apt-get install qemu-system-arm exited ${r.status}`;
  return probe().error ? `${QEMU} still missing after installing qemu-system-arm` : undefined;
}

const s = (x) => (x === undefined || Number.isNaN(x) ? '?' : `${x.toFixed(1)} s`);

/** What the runs of one configuration came to: times of successful runs, failures, timings. */
export function summarize(runs) {
  const ok = runs.filter((r) => r.ok);
  const times = ok.map((r) => r.seconds);
  return {
    runs: runs.length,
    ok: ok.length,
    value: median(times),
    spread: spreadOf(times),
    firstInit: median(ok.map((r) => r.firstInit).filter((x) => x !== undefined)),
    powerDown: median(ok.map((r) => r.powerDown).filter((x) => x !== undefined)),
    failures: runs.filter((r) => !r.ok).map((r) => r.why),
  };
}

function describe(sum, skipped) {
  const parts = [];
  if (sum.ok) parts.push(`median to first \`init: \` line ${s(sum.firstInit)}, to \`reboot: Power down\` ${s(sum.powerDown)}`);
  parts.push(`${sum.ok}/${sum.runs} runs reached power-off`);
  if (skipped) parts.push(`${skipped} run(s) not started after ${MAX_TIMEOUTS} timeouts`);
  // Distinct failures once each, so five identical failures do not fill the screen.
  const distinct = [...new Set(sum.failures)];
  if (distinct.length) parts.push(`failed: ${distinct.join(' || ')}`);
  return parts.join('; ');
}

const cpus = (n) => `${n} vCPU${n > 1 ? 's' : ''}`;

/**
 * The suite's rows from the runs of each configuration (`runs[vmm][vcpus]`: verdicts of judgeRun);
 * `qemu`: why QEMU could not be run, if it could not; `skipped[vmm][vcpus]`: runs not started.
 * Per vCPU count a QEMU row and a Plugvisor row with QEMU as its baseline, then Plugvisor's
 * 2 vCPUs beside its 1 vCPU. A configuration with no run that reached power-off has value NaN,
 * no baseline and no ratio, and a goal it is part of is not met.
 */
export function linuxRows(runs, { qemu, skipped = {} } = {}) {
  const sum = (vmm, n) => summarize(runs[vmm]?.[n] ?? []);
  const pv = { 1: sum('plugvisor', 1), 2: sum('plugvisor', 2) };
  const qm = { 1: sum('qemu', 1), 2: sum('qemu', 2) };
  const rows = [];
  for (const n of [1, 2]) {
    const p = pv[n];
    const q = qm[n];
    rows.push({
      name: `Linux boot to power-off on QEMU TCG (qemu-system-aarch64 -machine virt -cpu max), ${cpus(n)}`,
      value: qemu ? NaN : q.value,
      unit: 's',
      spread: q.spread,
      note: qemu ? `not run: ${qemu}` : describe(q, skipped.qemu?.[n]),
    });
    const row = {
      name: `Linux boot to power-off on Plugvisor, ${cpus(n)}`,
      value: p.value,
      unit: 's',
      spread: p.spread,
      note: describe(p, skipped.plugvisor?.[n]),
    };
    if (p.ok && q.ok && !qemu) {
      row.baselineName = `QEMU TCG, ${cpus(n)}, same kernel, initramfs and command line`;
      row.baseline = q.value;
      row.ratio = p.value / q.value;
    } else if (qemu) row.note += `; no QEMU baseline: ${qemu}`;
    if (n === 1) {
      row.goal = '≤ 1.5× QEMU';
      row.pass = row.ratio !== undefined && row.ratio <= 1.5;
    }
    rows.push(row);
  }
  const scale = {
    name: 'Linux boot to power-off on Plugvisor, 2 vCPUs beside 1 vCPU',
    value: pv[2].value,
    unit: 's',
    spread: pv[2].spread,
    goal: '≤ 2× Plugvisor 1 vCPU',
  };
  if (pv[1].ok && pv[2].ok) {
    scale.baselineName = 'Plugvisor, 1 vCPU';
    scale.baseline = pv[1].value;
    scale.ratio = pv[2].value / pv[1].value;
  } else {
    scale.note = `no ratio: ${[!pv[1].ok && '1 vCPU', !pv[2].ok && '2 vCPUs'].filter(Boolean).join(' and ')} never reached power-off`;
  }
  scale.pass = scale.ratio !== undefined && scale.ratio <= 2;
  rows.push(scale);
  return rows;
}

export async function runLinuxBench() {
  const rounds = Number(process.env.PLUGVISOR_BENCH_LINUX_RUNS ?? 5);
  const timeout = Number(process.env.PLUGVISOR_BENCH_LINUX_TIMEOUT ?? 180);
  if (!Number.isInteger(rounds) || rounds < 1) {
    return [{ name: 'Linux boot to power-off', value: NaN, unit: '', note: `PLUGVISOR_BENCH_LINUX_RUNS is ${JSON.stringify(process.env.PLUGVISOR_BENCH_LINUX_RUNS)}; it takes a whole number ≥ 1` }];
  }
  if (!(timeout > 0)) {
    return [{ name: 'Linux boot to power-off', value: NaN, unit: '', note: `PLUGVISOR_BENCH_LINUX_TIMEOUT is ${JSON.stringify(process.env.PLUGVISOR_BENCH_LINUX_TIMEOUT)}; it takes seconds > 0` }];
  }
  const missing = [KERNEL, INITRD, BIN].filter((f) => !existsSync(f));
  if (missing.length) {
    return [{ name: 'Linux boot to power-off', value: NaN, unit: '', note: `skipped: ${missing.join(', ')} missing (bash scripts/setup.sh fetches the kernel and writes the initramfs; pnpm build the CLI)` }];
  }
  const qemu = qemuProblem();
  if (qemu) console.error(`bench linux: no QEMU baseline: ${qemu}`);
  const runs = { plugvisor: { 1: [], 2: [] }, qemu: { 1: [], 2: [] } };
  const skipped = { plugvisor: { 1: 0, 2: 0 }, qemu: { 1: 0, 2: 0 } };
  for (const { round, vmm, vcpus } of schedule(rounds)) {
    if (vmm === 'qemu' && qemu) continue;
    const mine = runs[vmm][vcpus];
    if (mine.filter((r) => r.timedOut).length >= MAX_TIMEOUTS) {
      skipped[vmm][vcpus]++;
      continue;
    }
    const r = await runOnce(command(vmm, vcpus), timeout);
    mine.push(r);
    console.error(`bench linux: round ${round}/${rounds} ${vmm} ${vcpus} vCPU: ${r.ok ? `${r.seconds.toFixed(1)} s` : `FAILED: ${r.why}`}`);
  }
  return linuxRows(runs, { qemu, skipped });
}
