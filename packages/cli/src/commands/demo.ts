import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadBuild } from '../build-file.js';
import { parseSnapshotAt } from './run.js';

export const demoHelp = `plugvisor demo [--snapshot-at N]

The main job, end to end on the default build: shows the build's guest ABI features, boots the
bundled demo guest on 2 vCPUs (it probes the hypervisor the way Linux does and prints what it
found), snapshots it after N hypercall traps (default 20000) in one process, restores it in a new
process where it finishes, and checks that the two halves print exactly what an uninterrupted
run prints.`;

export const DEMO_GUEST = fileURLToPath(new URL('../../guests/bin/demo.elf', import.meta.url));
const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));

/** Runs `plugvisor ARGS` in a new process; its console is captured, its messages pass through. */
function plugvisor(args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  return { code: r.status ?? 1, out: r.stdout };
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'snapshot-at': { type: 'string' } }, strict: true });
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
    return same && whole.code === 0 ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
