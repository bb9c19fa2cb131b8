import { RecordType, decodeJson, finishRestore, readStream, type RestorePlan, type SavedMemory, type StateValue } from '@plugvisor/core';
import { checkXsaveRestore, planXsaveSet, type XsaveAbi } from '@plugvisor/xsave';
import { decodeVcpuState, type VcpuState } from './cpu/state.js';
import { validateX86Description } from './description.js';
import { kvmHost, kvmUnavailable } from './host.js';
import { X86Machine, type X86MachineDescription, type X86MachineOptions } from './machine.js';
import type { RawCpuidEntry } from './ffi/kvm.js';

/**
 * The x86 machine's part of restore: `checkX86Snapshot` is planRestore's `checkMachine`
 * callback — it checks the description, every vCPU blob, the RAM layout, and that *this* host
 * can run the VM exactly (its xsave ABI, each vCPU's XSAVE state, its MSRs, the CPUID features it
 * was shown) before anything is built; then `machineFromPlan` builds the new VM.
 */
export function checkX86Snapshot(description: StateValue, vcpus: readonly Uint8Array[], memory: readonly SavedMemory[]): string[] {
  // Restore checks are dry runs of the components' own validating restores.
  let d: X86MachineDescription;
  try {
    d = validateX86Description(description, vcpus.length);
  } catch (e) {
    return [(e as Error).message];
  }
  const problems: string[] = [];
  if (memory.length !== 1 || memory[0]!.gpa !== 0n || memory[0]!.size !== d.ramSize) problems.push(`memory records do not describe one RAM region of ${d.ramSize} bytes at 0x0`);
  const states: VcpuState[] = [];
  vcpus.forEach((blob, i) => {
    try {
      states.push(decodeVcpuState(blob));
    } catch (e) {
      problems.push(`vCPU ${i}: ${(e as Error).message}`);
    }
  });
  const why = kvmUnavailable();
  if (why) return [...problems, `this host cannot run x86 VMs: ${why}`];
  problems.push(...hostProblems(d, states));
  return problems;
}

/** Can this host's KVM run the described VM exactly? One sentence per problem, naming it. */
function hostProblems(d: X86MachineDescription, states: readonly VcpuState[]): string[] {
  const host = kvmHost();
  const out = checkXsaveRestore(d.xsave as XsaveAbi, host.xsave).map((p) => `${p.subject}: ${p.message}`);
  if (out.length) return out; // the state checks below assume the ABI fits
  const policy = { xcr0: BigInt(d.xsave.xcr0), xss: BigInt(d.xsave.xss), features: d.xsave.features };
  states.forEach((s, i) => {
    try {
      planXsaveSet(s.xsave, policy, host.xsave);
    } catch (e) {
      out.push(`vCPU ${i} XSAVE state: ${(e as Error).message}`);
    }
    const known = new Set(host.msrIndexList);
    const missing = s.msrs.filter(([m]) => !known.has(m)).map(([m]) => `0x${m.toString(16)}`);
    if (missing.length) out.push(`vCPU ${i}: KVM here does not save/restore MSR ${missing.join(', ')}`);
  });
  out.push(...cpuidProblems(d.cpuid, host.supportedCpuid));
  const max = host.caps.MAX_VCPUS || host.caps.NR_VCPUS;
  if (d.vcpus > max) out.push(`the VM has ${d.vcpus} vCPUs; KVM here allows ${max}`);
  return out;
}

/** Feature words a guest acts on: [leaf, subleaf, register, name]. */
const FEATURE_WORDS: readonly [number, number, 'eax' | 'ebx' | 'ecx' | 'edx', string][] = [
  [1, 0, 'ecx', 'CPUID 1 ECX'],
  [1, 0, 'edx', 'CPUID 1 EDX'],
  [7, 0, 'ebx', 'CPUID 7.0 EBX'],
  [7, 0, 'ecx', 'CPUID 7.0 ECX'],
  [7, 0, 'edx', 'CPUID 7.0 EDX'],
  [7, 1, 'eax', 'CPUID 7.1 EAX'],
  [0x8000_0001, 0, 'ecx', 'CPUID 0x80000001 ECX'],
  [0x8000_0001, 0, 'edx', 'CPUID 0x80000001 EDX'],
];
/** Bits KVM computes itself (OSXSAVE 1.ECX[27], OSPKE 7.ECX[4], APIC 1.EDX[9]) or sets for any guest (hypervisor 1.ECX[31], TSC-deadline 1.ECX[24]). */
const COMPUTED: Record<string, number> = { 'CPUID 1 ECX': (1 << 27) | (1 << 31) | (1 << 24), 'CPUID 7.0 ECX': 1 << 4, 'CPUID 1 EDX': 1 << 9 };

/** Feature bits the guest was shown that this host's KVM does not support. */
export function cpuidProblems(shown: readonly RawCpuidEntry[], supported: readonly RawCpuidEntry[]): string[] {
  const out: string[] = [];
  const find = (l: readonly RawCpuidEntry[], f: number, i: number) => l.find((e) => e.function === f && e.index === i);
  for (const [leaf, sub, reg, name] of FEATURE_WORDS) {
    const g = find(shown, leaf, sub);
    if (!g) continue;
    const h = find(supported, leaf, sub);
    const lacking = (g[reg] & ~(h?.[reg] ?? 0) & ~(COMPUTED[name] ?? 0)) >>> 0;
    for (let bit = 0; bit < 32; bit++) if (lacking & (1 << bit)) out.push(`${name} bit ${bit}: the guest was shown it; KVM here does not support it`);
  }
  return out;
}

/** Builds the machine for a verified restore plan, attaches the plan's VM to it, ready to run(). */
export function machineFromPlan(plan: RestorePlan, options: Omit<X86MachineOptions, 'vcpus' | 'memSize' | 'xsave' | 'restore' | 'irqchip'> = {}): X86Machine {
  const m = X86Machine.fromImage({ arch: plan.arch, description: plan.description, vcpus: plan.vcpus, memory: [] }, options);
  try {
    finishRestore(plan, m);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return m;
}

/** The x86 machine description of a snapshot (for `plugvisor check --hosts`), or undefined for another arch. */
export function readX86Description(bytes: Uint8Array): X86MachineDescription | undefined {
  for (const rec of readStream(bytes)) {
    if (rec.type !== RecordType.MACHINE) continue;
    const m = decodeJson(rec.payload, 'MACHINE') as { arch?: string; description?: X86MachineDescription };
    return m?.arch === 'x86_64' ? m.description : undefined;
  }
  return undefined;
}
