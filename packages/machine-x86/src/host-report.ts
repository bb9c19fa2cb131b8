import type { HostReport } from '@plugvisor/core';
import { kvmHost } from './host.js';
import { bitsOf, componentLabel, hex64, parseHostDump, type HostCapabilityDump } from '@plugvisor/xsave';

/**
 * The x86 backend's host report (`MachineBackend.hostReport`, what `plugvisor hosts` prints):
 * KVM's capabilities and the XSAVE host capability dump pool baselines are computed from.
 */
export function x86HostReport(name?: string): HostReport {
  const info = kvmHost();
  const dump: HostCapabilityDump = name ? { ...info.xsaveDump, name } : info.xsaveDump;
  const h = parseHostDump(dump);
  const lines = [
    `host ${h.name}${h.vendor ? ` (${h.vendor})` : ''}`,
    `KVM: API 12${info.pvm ? ', kvm_pvm (CPL0 guest code emulated; SIMD at CPL0 unsupported)' : ''}; irqchip ${info.caps.IRQCHIP ? 'yes' : 'no'}, sync regs ${info.caps.SYNC_REGS ? 'yes' : 'no'}, KVM_CAP_XSAVE2 ${info.caps.XSAVE2 || 'absent'}, max vCPUs ${info.caps.MAX_VCPUS || info.caps.NR_VCPUS}`,
    `XSAVE for guests: XCR0 ${hex64(h.kvmXcr0)} (${bitsOf(h.kvmXcr0).map(componentLabel).join(', ')})`,
    `  IA32_XSS ${hex64(h.xss)}${h.xss ? ` (${bitsOf(h.xss).map(componentLabel).join(', ')})` : ''}; CPUID 0xD.1 EAX 0x${h.xsaveFeatures.toString(16)}; uAPI buffer ${h.uabiSize} bytes; MXCSR_MASK 0x${h.mxcsrMask.toString(16)}`,
    ...h.layout.filter((c) => c.bit >= 2).map((c) => `  ${componentLabel(c.bit)}: ${c.size} bytes at 0x${c.offset!.toString(16)}`),
    `MSRs KVM saves: ${info.msrIndexList.length}`,
  ];
  return { dump, lines };
}
