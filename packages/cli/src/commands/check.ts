import { readFileSync, existsSync } from 'node:fs';
import { readInputFile, readSnapshotKey } from './guest-run.js';
import { parseArgs } from 'node:util';
import { checkBuilds, formatCompatReport, readAbiRecord, SnapshotError, UsageError, validateAbiRecord, type AbiRecord } from '@plugvisor/core';
import { defaultXcr0, kvmHost, kvmUnavailable, readX86Description } from '@plugvisor/machine-x86';
import {
  checkXsaveRestore,
  formatBaseline,
  hex64,
  parseHostDump,
  poolBaseline,
  xsaveAbiOf,
  xsaveAbiShapeProblems,
  XsaveError,
  type HostCapabilities,
  type XsaveAbi,
} from '@plugvisor/xsave';
import { loadBuild } from '../build-file.js';

export const checkHelp = `plugvisor check A B [--vm RECORD [--snapshot-key FILE]] [--json]
plugvisor check --hosts DUMP[,DUMP...] [--vm SNAPSHOT] [--json]

Is moving VMs from build A to build B safe? Upgrade (A's VMs onto B) and rollback (B's VMs
back onto A), for the VMs each build creates with defaults, or for one VM: --vm takes an ABI
record (JSON, as 'plugvisor run --record' writes) or a snapshot file. The verdicts come from
the ABI the VM recorded (features, calls, versions, registers, state, what its calls answered),
never from version numbers. Each row also shows the ABI change A → B on its subject, and per
service every classified change is listed (what changed, old → new, which VMs it affects), so
a change the checked VMs do not see (an opt-in feature removed, a register that accepts fewer
values) is shown too. With --vm, a column shows the VM's own values from its record (each
feature on or off, the version it selected, each register's value, the release of each service
it was created on, whether it was given a call) beside what A and B offer. --json has the same:
rows[].change/changes/status/vm and services[]. A and B are build files, or the names of builds
the CLI ships (plugvisor check default no-trng).

With --hosts (host capability dumps from 'plugvisor hosts --json', repeatable or
comma-separated): prints the pool baseline — the XSAVE policy a VM must be created with to move
freely among those hosts, and what each host holds back — and says whether an x86 VM can move to
each host: the VM of --vm (an x86 snapshot, or its xsave ABI as JSON), else a VM this host
creates by default (when /dev/kvm is here). Builds A B may be given too: both checks run.
Exit status: 0 safe (every direction, every host), 3 refused somewhere, 2 bad input.`;

/** The VM's ABI record from a JSON record file or a snapshot stream. */
export function readVmRecord(path: string, key: { key?: Uint8Array } = {}): AbiRecord {
  const bytes = readInputFile(path, '--vm');
  if (bytes.subarray(0, 8).toString('latin1') === 'PLVSNAP\0') {
    try {
      return readAbiRecord(bytes, key);
    } catch (e) {
      // A damaged or cut snapshot is a bad input file (exit 2), named with what is wrong.
      if (e instanceof SnapshotError) {
        const why = e.message.replace(/\s*\n\s*/g, '; ');
        const unauthentic = e.code === 'SNAPSHOT_UNSIGNED' || e.code === 'SNAPSHOT_BAD_MAC';
        throw new UsageError(`--vm ${path} ${unauthentic ? 'is refused' : 'is a damaged snapshot'}: ${why}`, 'BAD_INPUT_FILE');
      }
      throw e;
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UsageError(`--vm ${path} is neither a snapshot nor a JSON ABI record: ${(e as Error).message}`, 'BAD_INPUT_FILE');
  }
  const record = validateAbiRecord((json as { record?: unknown })?.record ?? json);
  if (typeof record === 'string') throw new UsageError(`--vm ${path}: ${record}`, 'BAD_INPUT_FILE');
  return record;
}

export async function checkCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { vm: { type: 'string' }, json: { type: 'boolean' }, hosts: { type: 'string', multiple: true }, 'snapshot-key': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const hostFiles = (values.hosts ?? []).flatMap((h) => h.split(',')).filter(Boolean);
  if (values.hosts && !hostFiles.length) throw new UsageError('--hosts takes host dump files (plugvisor hosts --json)');
  if (hostFiles.length && positionals.length === 0) return checkHosts(hostFiles, values.vm, !!values.json);
  if (positionals.length !== 2) throw new UsageError('check takes two build files: plugvisor check A B (or --hosts DUMP...)');
  const [a, b] = await Promise.all(positionals.map((p) => loadBuild(p)));
  const record = values.vm ? readVmRecord(values.vm, readSnapshotKey(values['snapshot-key'])) : undefined;
  const report = checkBuilds(a!.hv, b!.hv, record);
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatCompatReport(report));
  const builds = report.upgrade.safe && report.rollback.safe ? 0 : 3;
  if (!hostFiles.length) return builds;
  const hosts = await checkHosts(hostFiles, values.vm, !!values.json);
  return Math.max(builds, hosts);
}

/** Reads host capability dumps; a bad one is bad input (exit 2) naming what is wrong. */
export function readHostDumps(files: readonly string[]): HostCapabilities[] {
  return files.map((f) => {
    if (!existsSync(f)) throw new UsageError(`--hosts ${f} does not exist`);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(f, 'utf8'));
    } catch (e) {
      throw new UsageError(`--hosts ${f} is not JSON: ${(e as Error).message}`);
    }
    try {
      return parseHostDump(json);
    } catch (e) {
      if (e instanceof XsaveError) throw new UsageError(`--hosts ${f}: ${e.message}`);
      throw e;
    }
  });
}

/** The xsave ABI of the VM to check: from an x86 snapshot or an ABI JSON file. */
function readVmXsaveAbi(path: string): XsaveAbi {
  const bytes = readInputFile(path, '--vm');
  if (bytes.subarray(0, 8).toString('latin1') === 'PLVSNAP\0') {
    const d = readX86Description(bytes);
    if (!d?.xsave) throw new UsageError(`--vm ${path} is not a snapshot of an x86 VM: it has no xsave ABI`);
    return d.xsave;
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UsageError(`--vm ${path} is neither a snapshot nor JSON: ${(e as Error).message}`);
  }
  const abi = ((json as { xsave?: unknown })?.xsave ?? json) as XsaveAbi;
  const problems = xsaveAbiShapeProblems(abi);
  if (problems.length) throw new UsageError(`--vm ${path}: ${problems.join('; ')}`);
  return abi;
}

const bigintJson = (_k: string, v: unknown) => (typeof v === 'bigint' ? hex64(v) : v);

async function checkHosts(files: readonly string[], vmPath: string | undefined, json: boolean): Promise<number> {
  const hosts = readHostDumps(files);
  const baseline = poolBaseline(hosts);
  let vm: { label: string; abi: XsaveAbi } | undefined;
  if (vmPath) vm = { label: vmPath, abi: readVmXsaveAbi(vmPath) };
  else if (!kvmUnavailable()) {
    const h = kvmHost().xsave;
    vm = { label: `a default VM of this host (${h.name})`, abi: xsaveAbiOf({ xcr0: defaultXcr0(h), xss: h.xss, features: h.xsaveFeatures }, h) };
  }
  const verdicts = vm ? hosts.map((h) => ({ host: h.name, problems: checkXsaveRestore(vm!.abi, h).map((p) => `${p.subject}: ${p.message}`) })) : [];
  const ok = verdicts.every((v) => !v.problems.length);
  if (json) {
    const out = { baseline, vm: vm ? { label: vm.label, xsave: vm.abi, canMove: ok } : null, hosts: verdicts.map((v) => ({ ...v, ok: !v.problems.length })) };
    process.stdout.write(JSON.stringify(out, bigintJson, 2) + '\n');
  } else {
    const lines = [`pool baseline of ${hosts.length} host(s): ${hosts.map((h) => h.name).join(', ')}`, ...formatBaseline(baseline).split('\n').map((l) => `  ${l}`)];
    if (vm) {
      lines.push(`VM ${vm.label}: XCR0 ${vm.abi.xcr0}, IA32_XSS ${vm.abi.xss}, xsave ABI ${vm.abi.signature}${vm.abi.signature === baseline.abi.signature ? ' (the baseline)' : ''}`);
      for (const v of verdicts) lines.push(v.problems.length ? `  -> ${v.host}: REFUSED\n${v.problems.map((p) => `       ${p}`).join('\n')}` : `  -> ${v.host}: can move`);
      lines.push(ok ? 'the VM can move to every host' : 'the VM cannot move to every host: create it with the baseline policy above');
    } else lines.push('no VM given (--vm SNAPSHOT) and no /dev/kvm here: baseline only');
    process.stdout.write(lines.join('\n') + '\n');
  }
  return ok ? 0 : 3;
}
