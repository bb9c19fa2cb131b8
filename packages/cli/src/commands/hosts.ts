import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '@plugvisor/core';
import { kvmHost, kvmUnavailable } from '@plugvisor/machine-x86';
import { bitsOf, componentLabel, hex64, parseHostDump, type HostCapabilityDump } from '@plugvisor/xsave';

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
  const why = kvmUnavailable();
  if (why) {
    process.stderr.write(`plugvisor hosts: cannot read this host's KVM: ${why}\n`);
    return 1;
  }
  const info = kvmHost();
  const dump: HostCapabilityDump = values.name ? { ...info.xsaveDump, name: values.name } : info.xsaveDump;
  const json = JSON.stringify(dump, null, 2) + '\n';
  if (values.out) writeFileSync(values.out, json);
  if (values.json) {
    process.stdout.write(json);
    return 0;
  }
  const h = parseHostDump(dump);
  const lines = [
    `host ${h.name}${h.vendor ? ` (${h.vendor})` : ''}`,
    `KVM: API 12${info.pvm ? ', kvm_pvm (CPL0 guest code emulated; SIMD at CPL0 unsupported)' : ''}; irqchip ${info.caps.IRQCHIP ? 'yes' : 'no'}, sync regs ${info.caps.SYNC_REGS ? 'yes' : 'no'}, KVM_CAP_XSAVE2 ${info.caps.XSAVE2 || 'absent'}, max vCPUs ${info.caps.MAX_VCPUS || info.caps.NR_VCPUS}`,
    `XSAVE for guests: XCR0 ${hex64(h.kvmXcr0)} (${bitsOf(h.kvmXcr0).map(componentLabel).join(', ')})`,
    `  IA32_XSS ${hex64(h.xss)}${h.xss ? ` (${bitsOf(h.xss).map(componentLabel).join(', ')})` : ''}; CPUID 0xD.1 EAX 0x${h.xsaveFeatures.toString(16)}; uAPI buffer ${h.uabiSize} bytes; MXCSR_MASK 0x${h.mxcsrMask.toString(16)}`,
    ...h.layout.filter((c) => c.bit >= 2).map((c) => `  ${componentLabel(c.bit)}: ${c.size} bytes at 0x${c.offset!.toString(16)}`),
    `MSRs KVM saves: ${info.msrIndexList.length}`,
    values.out ? `dump written to ${values.out}` : `save the dump with: plugvisor hosts --json > ${h.name}.json`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
