import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadBuild } from '../build-file.js';
import { UsageError } from '@plugvisor/core';
import { parseSnapshotAt } from './run.js';

export const demoHelp = `plugvisor demo [--snapshot-at N] [--linux DIR | --no-linux]

The main job, end to end on the default build: shows the build's guest ABI features, boots the
bundled demo guest on 2 vCPUs (it probes the hypervisor the way Linux does and prints what it
found), snapshots it after N hypercall traps (default 20000) in one process, restores it in a new
process where it finishes, and checks that the two halves print exactly what an uninterrupted
run prints.

Then the same with Debian's stock arm64 kernel and the acceptance initramfs (DIR holds Image and
initramfs.cpio; default: the .cache/linux that scripts/setup.sh fills), about half a minute: the
kernel discovers the services with its own drivers and binds smccc_trng; it is snapshotted at its
console line "init: ready" and restored in a new process, where it reads /dev/hwrng again and
powers off; the same snapshot is refused by a build without svc-trng (builds/no-trng.json),
naming it; and a VM with TRNG opted out moves to that build and back mid-run and powers off.`;

export const DEMO_GUEST = fileURLToPath(new URL('../../guests/bin/demo.elf', import.meta.url));
const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
/** Where scripts/setup.sh puts Debian's kernel and the acceptance initramfs. */
const LINUX_CACHE = fileURLToPath(new URL('../../../../.cache/linux', import.meta.url));
const NO_TRNG_BUILD = fileURLToPath(new URL('../../builds/no-trng.json', import.meta.url));

/** Runs `plugvisor ARGS` in a new process; its console is captured, its messages pass through. */
function plugvisor(args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  return { code: r.status ?? 1, out: r.stdout };
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'snapshot-at': { type: 'string' }, linux: { type: 'string' }, 'no-linux': { type: 'boolean' } }, strict: true });
  if (values.linux !== undefined && values['no-linux']) throw new UsageError('--linux DIR and --no-linux contradict each other: give one');
  const linuxDir = values.linux ?? LINUX_CACHE;
  if (values.linux !== undefined && !hasLinux(linuxDir)) throw new UsageError(`--linux ${values.linux}: no Image and initramfs.cpio there (scripts/setup.sh makes them in .cache/linux)`, 'BAD_INPUT_FILE');
  const at = String(parseSnapshotAt(values['snapshot-at'] ?? '20000'));
  const { hv } = await loadBuild();
  const say = (s: string) => process.stdout.write(s + '\n');

  say(`== build '${hv.name}': ${hv.services.map((s) => `${s.name}@${s.version}`).join(', ')}`);
  const vm = hv.createVm();
  for (const [name, { decl, service }] of hv.catalog.features) {
    say(`   feature ${name.padEnd(20)} ${vm.abi.isEnabled(name) ? 'on ' : 'off'} (${decl.default}, ${service.name})`);
  }
  say(`   (plugvisor abi prints every call, version and firmware register)`);

  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-demo-'));
  try {
    const snap = join(dir, 'demo.snap');
    say(`\n== process 1: boot the demo guest on 2 vCPUs, snapshot after ${at} hypercall traps`);
    const first = plugvisor(['run', DEMO_GUEST, '--vcpus', '2', '--snapshot-at', at, '--snapshot-file', snap]);
    process.stdout.write(first.out);
    if (first.code !== 0) return first.code;
    if (!existsSync(snap)) {
      process.stderr.write(`plugvisor demo: no snapshot to restore: the demo guest finished before ${at} hypercall traps (it makes about 24000; use a smaller --snapshot-at)\n`);
      return 2;
    }

    say(`\n== process 2: restore the snapshot (${statSync(snap).size} bytes) and let the guest finish`);
    const second = plugvisor(['restore', snap]);
    process.stdout.write(second.out);
    if (second.code !== 0) return second.code;

    say(`\n== process 3: the same guest uninterrupted, to compare transcripts`);
    const whole = plugvisor(['run', DEMO_GUEST, '--vcpus', '2']);
    const same = first.out + second.out === whole.out;
    say(same ? 'transcripts identical: the restored guest carried on exactly where it stopped' : 'TRANSCRIPTS DIFFER:\n' + whole.out);
    if (!same || whole.code !== 0) return 1;
    if (values['no-linux']) return 0;
    if (!hasLinux(linuxDir)) {
      say(`\n(no Linux part: ${linuxDir} has no Image and initramfs.cpio; bash scripts/setup.sh makes them)`);
      return 0;
    }
    return linuxDemo(linuxDir, dir, say);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const hasLinux = (dir: string) => existsSync(join(dir, 'Image')) && existsSync(join(dir, 'initramfs.cpio'));

/** What a Linux boot's console says about the hypervisor: the kernel's discovery lines and /init's. */
const LINUX_LINES = /^(\[[ .\d]+\] (psci: (PSCIv|SMC Calling)|smccc: KVM|smp: Brought up|reboot: Power down).*|init: .*)$/;
const shown = (out: string) =>
  out
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => LINUX_LINES.test(l))
    .map((l) => `   ${l}`)
    .join('\n');

/** The seed's failure case with a real OS (see demoHelp). */
function linuxDemo(linux: string, dir: string, say: (s: string) => void): number {
  const boot = ['run', '--kernel', join(linux, 'Image'), '--initrd', join(linux, 'initramfs.cpio'), '--mem', '512M', '--append', 'console=ttyAMA0 panic=-1'];
  const ready = ['--snapshot-on-output', 'init: ready'];
  const step = (title: string, args: string[], want = 0): { code: number; out: string } | undefined => {
    say(`\n== ${title}`);
    const started = performance.now();
    const r = plugvisor(args);
    say(shown(r.out));
    say(`   (exit ${r.code}, ${((performance.now() - started) / 1000).toFixed(1)} s)`);
    return r.code === want ? r : undefined;
  };
  const a = join(dir, 'linux.snap');
  if (!step('Linux 4: Debian\'s arm64 kernel on the default build; snapshot at "init: ready"', [...boot, ...ready, '--snapshot-file', a])) return 1;
  if (!step('Linux 5: restore in a new process on the same build: smccc_trng reads again, power-off', ['restore', a])) return 1;
  say('\n== Linux 6: the same snapshot onto a build without svc-trng (builds/no-trng.json): refused before anything runs');
  const refused = plugvisor(['restore', a, '--build', NO_TRNG_BUILD]);
  if (refused.code !== 3) return 1;
  const b = join(dir, 'linux-off.snap');
  const c = join(dir, 'linux-off-2.snap');
  if (!step('Linux 7: a VM with TRNG opted out (--feature trng=off); snapshot at "init: ready"', [...boot, '--feature', 'trng=off', ...ready, '--snapshot-file', b])) return 1;
  if (!step('Linux 8: it moves to the build without svc-trng; snapshot again at its next PTP reading', ['restore', b, '--build', NO_TRNG_BUILD, '--snapshot-on-output', 'init: ptp0 precise after', '--snapshot-file', c])) return 1;
  if (!step('Linux 9: and back to the default build, to power-off', ['restore', c])) return 1;
  say('\nLinux: the guest\'s view did not change across processes and builds unless its operator asked');
  return 0;
}
