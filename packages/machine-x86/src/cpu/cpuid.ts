/**
 * The guest's CPUID: KVM_GET_SUPPORTED_CPUID filtered by the VM's policy (feature bits and the
 * state components they need: Intel SDM Vol. 1 §13.2 and Vol. 2A CPUID). Leaf 0xD is replaced by the xsave package's
 * `guestCpuid0d(abi)` — the VM's xfeature set, which is ABI — and every feature bit that needs a
 * state component the VM does not have is cleared, so the guest never sees an instruction set
 * whose registers a snapshot would not carry.
 */
import { MASK, bit, guestCpuid0d, type XsaveAbi } from '@plugvisor/xsave';
import type { RawCpuidEntry } from '../ffi/kvm.js';
import { StateError } from '@plugvisor/core';

const b = (n: number): number => (1 << n) >>> 0;

/** Feature bits gated by state components: [leaf, subleaf, register, bits, needed mask]. */
const GATED: readonly [number, number, 'ebx' | 'ecx' | 'edx', number, bigint][] = [
  // leaf 1 ECX: FMA 12, AVX 28, F16C 29 need YMM
  [1, 0, 'ecx', b(12) | b(28) | b(29), MASK.YMM],
  // leaf 7.0 EBX: AVX2 5 needs YMM; AVX-512 F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31
  [7, 0, 'ebx', b(5), MASK.YMM],
  [7, 0, 'ebx', b(16) | b(17) | b(21) | b(26) | b(27) | b(28) | b(30) | b(31), MASK.AVX512],
  // leaf 7.0 ECX: AVX512 VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14; PKU 3, OSPKE 4 need PKRU
  [7, 0, 'ecx', b(1) | b(6) | b(11) | b(12) | b(14), MASK.AVX512],
  [7, 0, 'ecx', b(3) | b(4), bit(9)],
  // leaf 7.0 EDX: AVX512 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, FP16 23; AMX BF16 22, TILE 24, INT8 25
  [7, 0, 'edx', b(2) | b(3) | b(8) | b(23), MASK.AVX512],
  [7, 0, 'edx', b(22) | b(24) | b(25), MASK.XTILE],
  // leaf 7.1 EAX (AVX-VNNI 4, AVX512_BF16 5) is handled in guestCpuid
];

/**
 * The CPUID entries for KVM_SET_CPUID2 of vCPU `apicId` in a VM with xsave ABI `abi`.
 * Also: the initial APIC id in leaf 1 EBX[31:24] and the x2APIC id in leaves 0xB/0x1F EDX;
 * KVM's own paravirtual leaves (0x4000_0000..) are left out: a Plugvisor guest's paravirtual
 * interface is what its services declare, not KVM's.
 */
export function guestCpuid(supported: readonly RawCpuidEntry[], abi: XsaveAbi, apicId: number): RawCpuidEntry[] {
  const xcr0 = BigInt(abi.xcr0);
  const out: RawCpuidEntry[] = [];
  for (const e of supported) {
    if (e.function === 0xd) continue;
    if (e.function >= 0x4000_0000 && e.function < 0x5000_0000) continue;
    if ((e.function === 0x1d || e.function === 0x1e) && (xcr0 & MASK.XTILE) !== MASK.XTILE) continue;
    const g = { ...e };
    for (const [leaf, sub, reg, bits, needs] of GATED) {
      if (g.function === leaf && g.index === sub && (xcr0 & needs) !== needs) g[reg] = (g[reg] & ~bits) >>> 0;
    }
    if (g.function === 7 && g.index === 1) {
      if (!(xcr0 & MASK.YMM)) g.eax = (g.eax & ~b(4)) >>> 0; // AVX-VNNI
      if ((xcr0 & MASK.AVX512) !== MASK.AVX512) g.eax = (g.eax & ~b(5)) >>> 0; // AVX512_BF16
    }
    // XSAVE itself (leaf 1 ECX[26]) stays: the leaf 0xD the ABI fixes says what it saves.
    if (g.function === 1) g.ebx = ((g.ebx & 0x00ff_ffff) | ((apicId & 0xff) << 24)) >>> 0;
    if (g.function === 0xb || g.function === 0x1f) g.edx = apicId >>> 0;
    out.push(g);
  }
  for (const e of guestCpuid0d(abi)) out.push({ function: 0xd, index: e.index, flags: 1, eax: e.eax >>> 0, ebx: e.ebx >>> 0, ecx: e.ecx >>> 0, edx: e.edx >>> 0 });
  return out;
}

/** The CPUID of vCPU `apicId`: vCPU 0's with the APIC ids rewritten (leaf 1 EBX[31:24], 0xB/0x1F EDX). */
export function withApicId(cpuid: readonly RawCpuidEntry[], apicId: number): RawCpuidEntry[] {
  return cpuid.map((e) => {
    if (e.function === 1) return { ...e, ebx: ((e.ebx & 0x00ff_ffff) | ((apicId & 0xff) << 24)) >>> 0 };
    if (e.function === 0xb || e.function === 0x1f) return { ...e, edx: apicId >>> 0 };
    return e;
  });
}


/** At most this many CPUID entries (Linux arch/x86/include/asm/kvm_host.h KVM_MAX_CPUID_ENTRIES). */
export const MAX_CPUID_ENTRIES = 256;
const CPUID_FIELDS = ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const;

/**
 * Validates a saved CPUID table (struct kvm_cpuid_entry2: every field a u32) before it reaches
 * KVM_SET_CPUID2: throws StateError naming `cpuid[i].field`.
 */
export function validateCpuidEntries(value: unknown, component: string): RawCpuidEntry[] {
  if (!Array.isArray(value) || value.length > MAX_CPUID_ENTRIES) {
    throw new StateError(component, 'cpuid', `must be an array of at most ${MAX_CPUID_ENTRIES} entries, got ${Array.isArray(value) ? `${value.length} entries` : JSON.stringify(value) ?? String(value)}`);
  }
  return value.map((e, i) => {
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw new StateError(component, `cpuid[${i}]`, 'must be an object of u32 fields function, index, flags, eax, ebx, ecx, edx');
    for (const f of CPUID_FIELDS) {
      const v = (e as Record<string, unknown>)[f];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
        throw new StateError(component, `cpuid[${i}].${f}`, `must be a u32, got ${typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v))}`);
      }
    }
    return e as RawCpuidEntry;
  });
}
