import { parseArgs } from 'node:util';
import { backendFor, decodeJson, planRestore, readStream, RecordType, SnapshotError, UsageError, type Arch, type MachineBackend } from '@plugvisor/core';
import { BACKENDS } from '../backends.js';
import { loadBuild } from '../build-file.js';
import { checkWritable, consoleWatch, failureOptions, failureOptionsHelp, parseHypercallTimeout, readInputFile, readSnapshotKey, runExitHelp, runToEnd } from './guest-run.js';
import { armGuestTime, parseSnapshotAt, parseSnapshotAtTime, parseSnapshotOnOutput, snapshotOptions } from './run.js';

export const restoreHelp = `plugvisor restore FILE [--build FILE] [--snapshot-at N | --snapshot-on-output TEXT | --snapshot-at-time S] [--snapshot-file FILE] [--snapshot-on-failure FILE] [--hypercall-timeout S] [--snapshot-key FILE]

Continues a snapshotted VM, on this build or another, on the machine of its architecture
(arm64 on Unicorn; x86-64 on /dev/kvm, in a new VM with the source's CPUID and xsave ABI). Everything is checked first — the
stream's integrity, then that this build reproduces the VM's guest ABI exactly (each feature it
has on, with the same calls by function id; each selected version; firmware register values;
state schemas; what its calls answered — never version numbers), then
every service's state and the machine's — and a refusal names every problem (exit 3) before
anything runs.
${failureOptionsHelp}
${runExitHelp}`;

export async function restoreCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { build: { type: 'string' }, ...snapshotOptions, ...failureOptions },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError('restore takes one snapshot file: plugvisor restore FILE');
  const file = positionals[0]!;
  const snapshotAt = parseSnapshotAt(values['snapshot-at']);
  const snapshotOnOutput = parseSnapshotOnOutput(values['snapshot-on-output'], snapshotAt);
  const snapshotAtTime = parseSnapshotAtTime(values['snapshot-at-time'], [snapshotAt, snapshotOnOutput]);
  const { hv } = await loadBuild(values.build);
  const bytes = readInputFile(file, 'snapshot');
  if (values['snapshot-file'] !== undefined) checkWritable(values['snapshot-file'], '--snapshot-file');
  if (values['snapshot-on-failure'] !== undefined) checkWritable(values['snapshot-on-failure'], '--snapshot-on-failure');
  const hypercallTimeout = parseHypercallTimeout(values['hypercall-timeout']);
  const snapshotKey = readSnapshotKey(values['snapshot-key']);
  let plan;
  let backend: MachineBackend;
  try {
    const arch = snapshotArch(bytes, snapshotKey);
    const found = backendFor(BACKENDS, arch);
    if (!found) throw new SnapshotError('INCOMPATIBLE', `the snapshot's machine is ${arch}; this build has backends for ${BACKENDS.map((b) => b.arch).join(', ')}`);
    backend = found;
    const why = backend.unavailable();
    if (why) throw new UsageError(why, 'HOST_UNAVAILABLE');
    plan = planRestore(bytes, hv, { arch, checkMachine: backend.checkSnapshot, ...snapshotKey });
  } catch (e) {
    if (e instanceof SnapshotError) {
      process.stderr.write(`plugvisor restore: ${file} refused: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  for (const note of plan.notes) process.stderr.write(`plugvisor restore: ${note}\n`);
  const watch = consoleWatch(snapshotOnOutput);
  const machine = backend.rebuild(plan, { console: watch.sink });
  watch.attach(machine);
  armGuestTime(machine, snapshotAtTime);
  return runToEnd(plan.vm, machine, { snapshotAt, snapshotOnOutput, snapshotAtTime, snapshotFile: values['snapshot-file'], snapshotOnFailure: values['snapshot-on-failure'], hypercallTimeout, snapshotKey: snapshotKey.key });
}

/** The machine architecture a snapshot was taken on (its MACHINE record); arm64 if it has none. */
export function snapshotArch(bytes: Uint8Array, key: { key?: Uint8Array } = {}): Arch {
  // with a key, authenticated before any record is believed (even the backend it names)
  for (const rec of readStream(bytes, key)) {
    if (rec.type !== RecordType.MACHINE) continue;
    const m = decodeJson(rec.payload, 'MACHINE') as { arch?: unknown };
    return typeof m?.arch === 'string' && m.arch ? m.arch : 'arm64';
  }
  return 'arm64';
}
