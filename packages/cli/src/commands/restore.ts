import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { planRestore, SnapshotError, UsageError } from '@plugvisor/core';
import { checkArm64Snapshot, machineFromPlan, unicornAvailable } from '@plugvisor/machine-arm64';
import { loadBuild } from '../build-file.js';
import { consoleOut, runExitHelp, runToEnd } from './guest-run.js';
import { parseSnapshotAt, snapshotOptions } from './run.js';

export const restoreHelp = `plugvisor restore FILE [--build FILE] [--snapshot-at N] [--snapshot-file FILE]

Continues a snapshotted VM, on this build or another. Everything is checked first — the
stream's integrity, then that this build reproduces the VM's guest ABI exactly (each feature it
has on, with the same calls; each selected version; service major versions and state), then
every service's state and the machine's — and a refusal names every problem (exit 3) before
anything runs.
${runExitHelp}`;

export async function restoreCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { build: { type: 'string' }, ...snapshotOptions },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError('restore takes one snapshot file: plugvisor restore FILE');
  const file = positionals[0]!;
  if (!existsSync(file)) throw new UsageError(`snapshot ${file} does not exist`);
  const snapshotAt = parseSnapshotAt(values['snapshot-at']);
  const { hv } = await loadBuild(values.build);
  if (!unicornAvailable()) throw new UsageError('the arm64 machine needs libunicorn2 (run scripts/setup.sh)');
  let plan;
  try {
    plan = planRestore(readFileSync(file), hv, { arch: 'arm64', checkMachine: checkArm64Snapshot });
  } catch (e) {
    if (e instanceof SnapshotError) {
      process.stderr.write(`plugvisor restore: ${file} refused: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  for (const note of plan.notes) process.stderr.write(`plugvisor restore: ${note}\n`);
  const machine = machineFromPlan(plan, { console: consoleOut });
  return runToEnd(plan.vm, machine, { snapshotAt, snapshotFile: values['snapshot-file'] });
}
