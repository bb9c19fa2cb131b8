/**
 * A host's XSAVE capabilities, from its CPUID leaf 0xD (Intel SDM Vol. 1 §13.2, AMD APM Vol. 2
 * §11.5; KVM's view: arch/x86/kvm/cpuid.c).
 *
 * A `HostCapabilityDump` is plain JSON: what `plugvisor hosts` writes and what baselines and
 * restore checks read. `parseHostDump` validates it and derives the `HostCapabilities` the
 * codec, the policy and the baseline use. The x86 machine fills a dump from
 * KVM_GET_SUPPORTED_CPUID (function 0xD entries), KVM_GET_DEVICE_ATTR(KVM_X86_XCOMP_GUEST_SUPP)
 * and KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2).
 */
import {
  COMPONENTS,
  EXTENDED_OFFSET,
  KVM_XSAVE_SIZE,
  MASK,
  bit,
  bitsOf,
  componentInfo,
  componentLabel,
  hex64,
  type ComponentKind,
} from './components.js';
import { refuse } from './errors.js';

/** One CPUID entry, shaped like `struct kvm_cpuid_entry2` (registers as unsigned 32-bit). */
export interface CpuidEntry {
  readonly function: number;
  readonly index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX (1) on every 0xD entry KVM reports. */
  readonly flags?: number;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

/** What one host can save and load, as JSON. Masks are hex strings (JSON has no u64). */
export interface HostCapabilityDump {
  readonly format: 1;
  /** Host name or model, used in every message. */
  readonly name: string;
  readonly vendor?: string;
  /** Where the numbers come from (a command, a measurement, a document). */
  readonly source?: string;
  /** CPUID function 0xD, sub-leaves 0..n, as KVM_GET_SUPPORTED_CPUID (or raw CPUID) reports them. */
  readonly cpuid0d: readonly CpuidEntry[];
  /** KVM_GET_DEVICE_ATTR(group 0, KVM_X86_XCOMP_GUEST_SUPP): KVM's supported XCR0, e.g. "0xe7". */
  readonly kvmXcompGuestSupp?: string;
  /** KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2): the uAPI buffer size (≥ 4096). */
  readonly kvmXsave2Size?: number;
  /** MXCSR_MASK of the host's FXSAVE image; KVM refuses MXCSR bits outside it (`copy_uabi_to_xstate`, arch/x86/kernel/fpu/xstate.c). Default 0xFFFF. */
  readonly mxcsrMask?: number;
}

/** One component as this host lays it out. */
export interface HostComponent {
  readonly bit: number;
  readonly name: string;
  readonly kind: ComponentKind;
  /** CPUID.(0xD,n).EAX */
  readonly size: number;
  /** CPUID.(0xD,n).EBX: the standard-format offset. Undefined for supervisor components (EBX invalid). */
  readonly offset: number | undefined;
  /** CPUID.(0xD,n).ECX bit 1: 64-byte aligned in the compacted format. */
  readonly align64: boolean;
}

/** CPUID.(0xD,1).EAX bits. Only XSAVEC and XSAVES are used by KVM's code (arch/x86/kvm/cpuid.c); the rest are named from the Intel SDM Vol. 1 §13.2. */
export const XSAVE_FEATURE = Object.freeze({ XSAVEOPT: 1 << 0, XSAVEC: 1 << 1, XGETBV1: 1 << 2, XSAVES: 1 << 3, XFD: 1 << 4 });

export interface HostCapabilities {
  readonly name: string;
  readonly vendor: string | undefined;
  readonly dump: HostCapabilityDump;
  /** CPUID.(0xD,0) EDX:EAX: user components this host reports (for KVM: the permitted XCR0). */
  readonly xcr0: bigint;
  /** CPUID.(0xD,1) EDX:ECX: supervisor components (IA32_XSS). */
  readonly xss: bigint;
  /**
   * What KVM_SET_XSAVE accepts in XSTATE_BV on this host: CPUID 0xD.0 ∩ KVM_SUPPORTED_XCR0
   * ∩ KVM_X86_XCOMP_GUEST_SUPP. Dynamic components appear only once permitted (arch_prctl, `xstate_request_perm`).
   */
  readonly kvmXcr0: bigint;
  /** KVM_X86_XCOMP_GUEST_SUPP when the dump has it (may include AMX not yet permitted). */
  readonly xcompGuestSupp: bigint | undefined;
  /** CPUID.(0xD,1).EAX */
  readonly xsaveFeatures: number;
  /** XSAVEC: the compacted format exists on this host. */
  readonly compacted: boolean;
  readonly components: ReadonlyMap<number, HostComponent>;
  /** User components with a standard offset, sorted by offset (bit order is not layout order, Intel SDM Vol. 1 ch. 13). */
  readonly layout: readonly HostComponent[];
  /** Size of the KVM uAPI buffer: KVM_CAP_XSAVE2, else max(4096, standard size of kvmXcr0). */
  readonly uabiSize: number;
  readonly mxcsrMask: number;
}

const u32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;

/** Validate a dump (e.g. parsed JSON) and derive the host's capabilities. Lists every problem. */
export function parseHostDump(input: unknown): HostCapabilities {
  const problems: string[] = [];
  const components: string[] = [];
  const d = input as HostCapabilityDump;
  const label = typeof d?.name === 'string' && d.name ? `host dump '${d.name}'` : 'host dump';
  if (!d || typeof d !== 'object') refuse('BAD_DUMP', label, ['is not an object']);
  if (d.format !== 1) problems.push(`format ${String(d.format)} is not understood (expected 1)`);
  if (typeof d.name !== 'string' || !d.name) problems.push('has no name');
  if (!Array.isArray(d.cpuid0d)) refuse('BAD_DUMP', label, [...problems, 'has no cpuid0d array']);

  const sub = new Map<number, CpuidEntry>();
  for (const [i, e] of d.cpuid0d.entries()) {
    if (!e || typeof e !== 'object' || ![e.index, e.eax, e.ebx, e.ecx, e.edx].every(u32)) {
      problems.push(`cpuid0d[${i}] is not {function, index, eax, ebx, ecx, edx} with unsigned 32-bit values`);
      continue;
    }
    if (e.function !== undefined && e.function !== 0xd) problems.push(`cpuid0d[${i}] is function 0x${Number(e.function).toString(16)}, not 0xd`);
    if (sub.has(e.index)) problems.push(`cpuid0d has sub-leaf ${e.index} twice`);
    sub.set(e.index, e);
  }
  const s0 = sub.get(0);
  const s1 = sub.get(1);
  if (!s0) refuse('BAD_DUMP', label, [...problems, 'has no CPUID 0xD sub-leaf 0 (a host without XSAVE is not supported)']);
  const xcr0 = BigInt(s0!.eax) | (BigInt(s0!.edx) << 32n);
  const xss = s1 ? BigInt(s1.ecx) | (BigInt(s1.edx) << 32n) : 0n;
  const xsaveFeatures = s1?.eax ?? 0;

  if ((xcr0 & MASK.FPSSE) !== MASK.FPSSE) problems.push(`CPUID 0xD.0 XCR0 mask ${hex64(xcr0)} lacks x87 or SSE, which every XSAVE host has`);
  if (xcr0 & bit(63)) problems.push('CPUID 0xD.0 sets XCR0 bit 63, which is reserved');
  for (const n of bitsOf(xcr0 & xss)) {
    problems.push(`${componentLabel(n)} is reported both as user (0xD.0) and supervisor (0xD.1)`);
    components.push(componentLabel(n));
  }
  for (const n of bitsOf(xcr0)) {
    if (componentInfo(n).kind === 'supervisor' && COMPONENTS.has(n)) {
      problems.push(`${componentLabel(n)} is a supervisor component but 0xD.0 reports it in XCR0`);
      components.push(componentLabel(n));
    }
  }
  for (const n of bitsOf(xss)) {
    if (componentInfo(n).kind === 'user' && COMPONENTS.has(n)) {
      problems.push(`${componentLabel(n)} is a user component but 0xD.1 reports it in IA32_XSS`);
      components.push(componentLabel(n));
    }
  }

  const comps = new Map<number, HostComponent>();
  // x87 and SSE live in the legacy region at fixed places; CPUID 0xD.0/1 describe no sub-leaf for them.
  comps.set(0, { bit: 0, name: 'x87', kind: 'user', size: 160, offset: 0, align64: false });
  comps.set(1, { bit: 1, name: 'sse', kind: 'user', size: 256, offset: 160, align64: false });
  for (const n of bitsOf((xcr0 | xss) & ~MASK.FPSSE)) {
    const e = sub.get(n);
    const info = componentInfo(n);
    const supervisor = (xss & bit(n)) !== 0n;
    if (!e || e.eax === 0) {
      problems.push(`${componentLabel(n)} is enabled in the mask but CPUID 0xD.${n} reports no size`);
      components.push(componentLabel(n));
      continue;
    }
    if (((e.ecx & 1) === 1) !== supervisor) {
      problems.push(`${componentLabel(n)}: CPUID 0xD.${n} ECX bit 0 (supervisor) is ${e.ecx & 1} but the component is in ${supervisor ? 'IA32_XSS' : 'XCR0'}`);
      components.push(componentLabel(n));
    }
    if (info.size !== undefined && e.eax !== info.size) {
      problems.push(`${componentLabel(n)}: CPUID 0xD.${n} size ${e.eax} differs from the architectural ${info.size}`);
      components.push(componentLabel(n));
    }
    if (!supervisor && e.ebx < EXTENDED_OFFSET) {
      problems.push(`${componentLabel(n)}: standard offset ${e.ebx} lies inside the legacy area or header (< 576)`);
      components.push(componentLabel(n));
    }
    comps.set(n, {
      bit: n,
      name: info.name,
      kind: supervisor ? 'supervisor' : 'user',
      size: e.eax,
      offset: supervisor ? undefined : e.ebx, // Linux: "the offset in EBX is invalid" for supervisor state
      align64: (e.ecx & 2) !== 0,
    });
  }

  const layout = [...comps.values()].filter((c) => c.offset !== undefined).sort((a, b) => a.offset! - b.offset!);
  for (let i = 1; i < layout.length; i++) {
    const a = layout[i - 1]!;
    const b = layout[i]!;
    if (a.offset! + a.size > b.offset!) {
      problems.push(`${componentLabel(a.bit)} at ${a.offset}+${a.size} overlaps ${componentLabel(b.bit)} at ${b.offset}`);
      components.push(componentLabel(a.bit), componentLabel(b.bit));
    }
  }
  const end = layout.reduce((m, c) => Math.max(m, c.offset! + c.size), EXTENDED_OFFSET);
  if (s0!.ecx !== 0 && end > s0!.ecx) problems.push(`CPUID 0xD.0 ECX (maximum size ${s0!.ecx}) is smaller than the layout's end ${end}`);

  let xcompGuestSupp: bigint | undefined;
  if (d.kvmXcompGuestSupp !== undefined) {
    if (typeof d.kvmXcompGuestSupp !== 'string' || !/^0x[0-9a-f]+$/i.test(d.kvmXcompGuestSupp)) {
      problems.push(`kvmXcompGuestSupp '${String(d.kvmXcompGuestSupp)}' is not a hex string`);
    } else {
      xcompGuestSupp = BigInt(d.kvmXcompGuestSupp);
      const extra = xcr0 & MASK.KVM_SUPPORTED_XCR0 & ~xcompGuestSupp;
      if (extra) problems.push(`CPUID 0xD.0 reports ${bitsOf(extra).map(componentLabel).join(', ')} that KVM_X86_XCOMP_GUEST_SUPP ${d.kvmXcompGuestSupp} lacks`);
    }
  }
  const kvmXcr0 = xcr0 & MASK.KVM_SUPPORTED_XCR0 & (xcompGuestSupp ?? ~0n);
  const required = Math.max(KVM_XSAVE_SIZE, standardEnd(layout, kvmXcr0));
  if (d.kvmXsave2Size !== undefined && (!u32(d.kvmXsave2Size) || d.kvmXsave2Size < required)) {
    problems.push(`kvmXsave2Size ${String(d.kvmXsave2Size)} is smaller than the ${required} bytes its components need`);
  }
  if (d.mxcsrMask !== undefined && !u32(d.mxcsrMask)) problems.push(`mxcsrMask ${String(d.mxcsrMask)} is not a u32`);
  refuse('BAD_DUMP', label, problems, components);

  return Object.freeze({
    name: d.name,
    vendor: d.vendor,
    dump: d,
    xcr0,
    xss,
    kvmXcr0,
    xcompGuestSupp,
    xsaveFeatures,
    compacted: (xsaveFeatures & XSAVE_FEATURE.XSAVEC) !== 0,
    components: comps,
    layout,
    uabiSize: d.kvmXsave2Size ?? required,
    // Linux: mxcsr_feature_mask = the FXSAVE MXCSR_MASK, or 0xFFBF if the CPU reports 0.
    mxcsrMask: d.mxcsrMask === undefined ? 0xffff : d.mxcsrMask === 0 ? 0xffbf : d.mxcsrMask,
  });
}

function standardEnd(layout: readonly HostComponent[], mask: bigint): number {
  let end = EXTENDED_OFFSET; // legacy + header always exist
  for (const c of layout) if (mask & bit(c.bit)) end = Math.max(end, c.offset! + c.size);
  return end;
}

/**
 * Standard-format size for the user components of `mask` (CPUID 0xD.0 EBX/ECX as KVM computes
 * it: the end of the furthest component, xstate_calculate_size).
 */
export function standardSize(host: HostCapabilities, mask: bigint): number {
  return standardEnd(host.layout, mask);
}

/**
 * Compacted-format size for `mask` (CPUID 0xD.1 EBX): 576, then each component in bit order,
 * 64-byte aligned when its ECX bit 1 is set (xstate.c xfeature_get_offset).
 */
export function compactedSize(host: HostCapabilities, mask: bigint): number {
  let end = EXTENDED_OFFSET;
  for (const n of bitsOf(mask & ~MASK.FPSSE)) {
    const c = host.components.get(n);
    if (!c) continue;
    if (c.align64) end = (end + 63) & ~63;
    end += c.size;
  }
  return end;
}

/** Build a dump from CPUID entries (e.g. KVM_GET_SUPPORTED_CPUID's); keeps only function 0xD. */
export function hostDumpFromCpuid(
  name: string,
  entries: readonly CpuidEntry[],
  extra: Omit<HostCapabilityDump, 'format' | 'name' | 'cpuid0d'> = {},
): HostCapabilityDump {
  const cpuid0d = entries
    .filter((e) => e.function === 0xd)
    .map((e) => ({ function: 0xd, index: e.index, flags: e.flags ?? 1, eax: e.eax >>> 0, ebx: e.ebx >>> 0, ecx: e.ecx >>> 0, edx: e.edx >>> 0 }))
    .sort((a, b) => a.index - b.index);
  return { format: 1, name, ...extra, cpuid0d };
}
