/**
 * This host's KVM, as the x86 machine and `plugvisor hosts` see it: capabilities, the CPUID KVM
 * supports, the MSRs it saves, and the XSAVE capability dump (@plugvisor/xsave's
 * `HostCapabilityDump`) that baselines and restore checks read.
 */
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { parseHostDump, MASK, type CpuidEntry, type HostCapabilities, type HostCapabilityDump } from '@plugvisor/xsave';
import { CAP, KvmSystem, hostCpuid, hostMxcsrMask, kvmUnavailableReason, type RawCpuidEntry } from './ffi/kvm.js';

export interface KvmHostInfo {
  /** KVM capability values by name (0 = absent). */
  readonly caps: Readonly<Record<keyof typeof CAP, number>>;
  readonly vcpuMmapSize: number;
  readonly supportedCpuid: readonly RawCpuidEntry[];
  readonly msrIndexList: readonly number[];
  /** CPUID vendor string of the host CPU. */
  readonly vendor: string;
  /** /sys/module/kvm_pvm exists: KVM is the PVM flavour (guest CPL0 code is emulated; the PVM patch series, lore.kernel.org "KVM: x86/PVM: Introduce a new hypervisor", 2024). */
  readonly pvm: boolean;
  readonly xsaveDump: HostCapabilityDump;
  readonly xsave: HostCapabilities;
}

function vendorOf(): string {
  const v = hostCpuid(0);
  const b = Buffer.alloc(12);
  b.writeUInt32LE(v.ebx, 0);
  b.writeUInt32LE(v.edx, 4);
  b.writeUInt32LE(v.ecx, 8);
  return b.toString('latin1');
}

/**
 * The XSAVE capability dump of this host: CPUID 0xD as KVM_GET_SUPPORTED_CPUID reports it
 * (what KVM permits guests: masks, sizes), KVM_X86_XCOMP_GUEST_SUPP, KVM_CAP_XSAVE2 and the
 * FXSAVE MXCSR_MASK. The standard offsets of KVM's uAPI buffer are the host kernel's, i.e. the
 * CPU's raw CPUID 0xD.n EBX (api.rst §4.43): where KVM's table disagrees (nested or PVM setups
 * can), the raw value wins and `source` says so.
 */
export function xsaveDumpOf(sys: KvmSystem, supported: readonly RawCpuidEntry[], name = hostname()): HostCapabilityDump {
  const notes: string[] = [];
  const entries: CpuidEntry[] = supported
    .filter((e) => e.function === 0xd)
    .map((e) => {
      if (e.index < 2 || e.eax === 0) return e;
      const raw = hostCpuid(0xd, e.index);
      if (raw.ebx !== e.ebx && (raw.ecx & 1) === 0) {
        notes.push(`0xD.${e.index} offset ${e.ebx} from KVM, ${raw.ebx} from the CPU: used the CPU's`);
        return { ...e, ebx: raw.ebx };
      }
      return e;
    });
  const xcomp = sys.xcompGuestSupp();
  const dump: HostCapabilityDump = {
    format: 1,
    name,
    vendor: vendorOf(),
    source: `plugvisor hosts: KVM_GET_SUPPORTED_CPUID 0xD, KVM_X86_XCOMP_GUEST_SUPP, KVM_CAP_XSAVE2, FXSAVE MXCSR_MASK${notes.length ? `; ${notes.join('; ')}` : ''}`,
    cpuid0d: entries.map((e) => ({ function: 0xd, index: e.index, flags: e.flags ?? 1, eax: e.eax >>> 0, ebx: e.ebx >>> 0, ecx: e.ecx >>> 0, edx: e.edx >>> 0 })).sort((a, b) => a.index - b.index),
    ...(xcomp !== undefined ? { kvmXcompGuestSupp: `0x${xcomp.toString(16)}` } : {}),
    ...(sys.checkExtension(CAP.XSAVE2) ? { kvmXsave2Size: sys.checkExtension(CAP.XSAVE2) } : {}),
    mxcsrMask: hostMxcsrMask(),
  };
  return dump;
}

let cached: KvmHostInfo | undefined;

/** Probes /dev/kvm once per process (it does not change while we run). */
export function kvmHost(): KvmHostInfo {
  if (cached) return cached;
  const sys = KvmSystem.open();
  try {
    const caps = Object.fromEntries(Object.entries(CAP).map(([k, v]) => [k, sys.checkExtension(v)])) as Record<keyof typeof CAP, number>;
    const supportedCpuid = sys.supportedCpuid();
    const xsaveDump = xsaveDumpOf(sys, supportedCpuid);
    cached = Object.freeze({
      caps,
      vcpuMmapSize: sys.vcpuMmapSize(),
      supportedCpuid,
      msrIndexList: sys.msrIndexList(),
      vendor: vendorOf(),
      pvm: existsSync('/sys/module/kvm_pvm'),
      xsaveDump,
      xsave: parseHostDump(xsaveDump),
    });
    return cached;
  } finally {
    sys.close();
  }
}

/** Why this machine cannot run here (no /dev/kvm, no access, wrong API), or undefined. */
export function kvmUnavailable(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `the x86 machine needs Linux on x86-64 (this is ${process.platform}/${process.arch})`;
  return kvmUnavailableReason();
}

/** True if /dev/kvm is usable. */
export function kvmAvailable(): boolean {
  return kvmUnavailable() === undefined;
}

/** The xfeatures a VM gets by default on this host: what KVM supports, minus dynamic (AMX) ones. */
export function defaultXcr0(host: HostCapabilities): bigint {
  return host.kvmXcr0 & ~MASK.DYNAMIC & ~MASK.XTILE;
}
