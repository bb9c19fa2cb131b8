import { readFileSync, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkBuilds, formatCompatReport, readAbiRecord, UsageError, validateAbiRecord, type AbiRecord } from '@plugvisor/core';
import { loadBuild } from '../build-file.js';

export const checkHelp = `plugvisor check A B [--vm RECORD] [--json]

Is moving VMs from build A to build B safe? Upgrade (A's VMs onto B) and rollback (B's VMs
back onto A), for the VMs each build creates with defaults, or for one VM: --vm takes an ABI
record (JSON, as 'plugvisor snapshot --record' writes) or a snapshot file.
Exit status: 0 safe both ways, 3 refused in some direction, 2 bad input.`;

/** The VM's ABI record from a JSON record file or a snapshot stream. */
export function readVmRecord(path: string): AbiRecord {
  if (!existsSync(path)) throw new UsageError(`--vm ${path} does not exist`);
  const bytes = readFileSync(path);
  if (bytes.subarray(0, 8).toString('latin1') === 'PLVSNAP\0') return readAbiRecord(bytes);
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UsageError(`--vm ${path} is neither a snapshot nor a JSON ABI record: ${(e as Error).message}`);
  }
  const record = validateAbiRecord((json as { record?: unknown })?.record ?? json);
  if (typeof record === 'string') throw new UsageError(`--vm ${path}: ${record}`);
  return record;
}

export async function checkCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { vm: { type: 'string' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 2) throw new UsageError('check takes two build files: plugvisor check A B');
  const [a, b] = await Promise.all(positionals.map((p) => loadBuild(p)));
  const record = values.vm ? readVmRecord(values.vm) : undefined;
  const report = checkBuilds(a!.hv, b!.hv, record);
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatCompatReport(report));
  return report.upgrade.safe && report.rollback.safe ? 0 : 3;
}
