import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeJson, planRestore, readStream, RecordType, SnapshotError, UsageError, type Arch } from '@plugvisor/core';
import { checkArm64Snapshot, machineFromPlan, unicornAvailable } from '@plugvisor/machine-arm64';
import { checkX86Snapshot, machineFromPlan as x86MachineFromPlan, kvmUnavailable } from '@plugvisor/machine-x86';
import { loadBuild } from '../build-file.js';
import { consoleOut, runExitHelp, runToEnd } from './guest-run.js';
import { parseSnapshotAt, snapshotOptions } from './run.js';

export const restoreHelp = `plugvisor restore FILE [--build FILE] [--snapshot-at N] [--snapshot-file FILE]

Continues a snapshotted VM, on this build or another, on the machine of its architecture
(arm64 on Unicorn; x86-64 on /dev/kvm, in a new VM with the source's CPUID and xsave ABI). Everything is checked first — the
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
  const bytes = readFileSync(file);
  let plan;
  let arch: Arch;
  try {
    arch = snapshotArch(bytes);
    if (arch === 'x86_64') {
      const why = kvmUnavailable();
      if (why) throw new UsageError(`the x86 machine needs /dev/kvm: ${why}`);
    } else if (!unicornAvailable()) throw new UsageError('the arm64 machine needs libunicorn2 (run scripts/setup.sh)');
    plan = planRestore(bytes, hv, arch === 'x86_64' ? { arch, checkMachine: checkX86Snapshot } : { arch, checkMachine: checkArm64Snapshot });
  } catch (e) {
    if (e instanceof SnapshotError) {
      process.stderr.write(`plugvisor restore: ${file} refused: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  for (const note of plan.notes) process.stderr.write(`plugvisor restore: ${note}\n`);
  const machine = arch === 'x86_64' ? x86MachineFromPlan(plan, { console: consoleOut }) : machineFromPlan(plan, { console: consoleOut });
  return runToEnd(plan.vm, machine, { snapshotAt, snapshotFile: values['snapshot-file'] });
}

/** The machine architecture a snapshot was taken on (its MACHINE record); arm64 if it has none. */
export function snapshotArch(bytes: Uint8Array): Arch {
  for (const rec of readStream(bytes)) {
    if (rec.type !== RecordType.MACHINE) continue;
    const m = decodeJson(rec.payload, 'MACHINE') as { arch?: unknown };
    return m?.arch === 'x86_64' ? 'x86_64' : 'arm64';
  }
  return 'arm64';
}
