import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '@plugvisor/core';
import { BACKENDS } from '../backends.js';

export const hostsHelp = `plugvisor hosts [--json] [--name NAME] [--out FILE]

Dumps this host's x86 capabilities for pool baselines: @plugvisor/xsave's host capability dump
(format 1), filled from KVM_GET_SUPPORTED_CPUID leaf 0xD (component offsets checked against the
CPU's own CPUID), KVM_X86_XCOMP_GUEST_SUPP, KVM_CAP_XSAVE2 and the FXSAVE MXCSR_MASK. Collect one
per host and give them to 'plugvisor check --hosts' for the pool's baseline.
  --json       print the dump as JSON (what --hosts reads)
  --name NAME  the host's name in the dump (default: the hostname)
  --out FILE   write the JSON dump to FILE
Exit status: 0 ok, 1 /dev/kvm unusable, 2 bad input.`;

export async function hostsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, name: { type: 'string' }, out: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError('hosts takes no arguments: plugvisor hosts [--json] [--name NAME] [--out FILE]');
  if (values.name !== undefined && !values.name.trim()) throw new UsageError('--name must not be empty');
  // The backends that report on their host (today x86: KVM and XSAVE); the first is asked.
  const backend = BACKENDS.find((b) => b.hostReport);
  if (!backend) {
    process.stderr.write('plugvisor hosts: no machine backend of this CLI reports host capabilities\n');
    return 1;
  }
  const why = backend.unavailable();
  if (why) {
    process.stderr.write(`plugvisor hosts: cannot read this host's ${backend.arch} capabilities: ${why}\n`);
    return 1;
  }
  const report = backend.hostReport!(values.name);
  const json = JSON.stringify(report.dump, null, 2) + '\n';
  if (values.out) writeFileSync(values.out, json);
  if (values.json) {
    process.stdout.write(json);
    return 0;
  }
  const lines = [...report.lines, values.out ? `dump written to ${values.out}` : `save the dump with: plugvisor hosts --json > ${report.dump.name}.json`];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
