/**
 * A VM's xfeature set as guest ABI.
 *
 * The guest reads CPUID leaf 0xD once and sizes and lays out its XSAVE areas from it (Linux
 * signal frames, ptrace, glibc's XSAVEC trampolines), while XSAVE itself runs natively and
 * writes at the *hardware's* offsets. So what a VM was shown — which components, their sizes,
 * standard offsets and compacted alignment, and the 0xD.1 instruction features — must hold on
 * every host it runs on. `xsaveAbiOf` records it; `checkXsaveRestore` refuses a destination
 * that differs in any of it, before anything changes, naming each component.
 */
import { canonicalJson, sha256, type AbiProblem } from '@plugvisor/core';
import { EXTENDED_OFFSET, MASK, bit, bitsOf, componentInfo, componentLabel, hex64, KVM_XSAVE_SIZE } from './components.js';
import { XsaveError } from './errors.js';
import { XSAVE_FEATURE, type CpuidEntry, type HostCapabilities } from './host.js';
import { assertGuestPolicy, type GuestXsavePolicy } from './policy.js';

export interface XsaveAbiComponent {
  readonly bit: number;
  readonly kind: 'user' | 'supervisor';
  /** CPUID.(0xD,n).EAX */
  readonly size: number;
  /** CPUID.(0xD,n).EBX for user components. */
  readonly offset?: number;
  /** CPUID.(0xD,n).ECX bit 1 */
  readonly align64: boolean;
}

/** The ABI-record fragment for a VM's XSAVE state: JSON, hex strings for masks. */
export interface XsaveAbi {
  readonly format: 1;
  /** XCR0 bits the guest is shown (CPUID 0xD.0 EDX:EAX); x87 and SSE always included. */
  readonly xcr0: string;
  /** IA32_XSS bits the guest is shown (CPUID 0xD.1 EDX:ECX). */
  readonly xss: string;
  /** CPUID 0xD.1 EAX shown to the guest. */
  readonly features: number;
  /** Standard-format size of xcr0's components (CPUID 0xD.0 EBX/ECX). */
  readonly standardSize: number;
  /** Compacted size of xcr0 | xss (CPUID 0xD.1 EBX). */
  readonly compactedSize: number;
  /** Smallest KVM uAPI buffer that holds the VM's state: max(4096, standardSize). */
  readonly bufferSize: number;
  /** Extended components (bit ≥ 2) by name, as the guest sees them. */
  readonly components: { readonly [name: string]: XsaveAbiComponent };
  /** sha256 (first 16 hex digits) of everything above: equal signatures = same guest view. */
  readonly signature: string;
}

const FEATURE_NAMES = Object.entries(XSAVE_FEATURE) as [string, number][];

/** The ABI fragment of a VM with `policy` created on `host`. Refuses (BAD_POLICY) what the host cannot give. */
export function xsaveAbiOf(policy: GuestXsavePolicy, host: HostCapabilities): XsaveAbi {
  assertGuestPolicy(policy, host);
  const xcr0 = policy.xcr0 | MASK.FPSSE;
  const xss = policy.xss ?? 0n;
  const features = (policy.features ?? host.xsaveFeatures) & host.xsaveFeatures;
  const components: Record<string, XsaveAbiComponent> = {};
  for (const n of bitsOf((xcr0 | xss) & ~MASK.FPSSE)) {
    const c = host.components.get(n)!;
    components[componentInfo(n).name] = c.kind === 'user' ? { bit: n, kind: 'user', size: c.size, offset: c.offset!, align64: c.align64 } : { bit: n, kind: 'supervisor', size: c.size, align64: c.align64 };
  }
  return withSignature({ format: 1, xcr0: hex64(xcr0), xss: hex64(xss), features, ...sizesOf(components, xcr0, xss), components });
}

function sizesOf(components: XsaveAbi['components'], xcr0: bigint, xss: bigint): Pick<XsaveAbi, 'standardSize' | 'compactedSize' | 'bufferSize'> {
  const list = Object.values(components).sort((a, b) => a.bit - b.bit);
  let standardSize = EXTENDED_OFFSET;
  let compactedSize = EXTENDED_OFFSET;
  for (const c of list) {
    if (c.kind === 'user' && xcr0 & bit(c.bit)) standardSize = Math.max(standardSize, c.offset! + c.size);
    if ((xcr0 | xss) & bit(c.bit)) compactedSize = (c.align64 ? (compactedSize + 63) & ~63 : compactedSize) + c.size;
  }
  return { standardSize, compactedSize, bufferSize: Math.max(KVM_XSAVE_SIZE, standardSize) };
}

function withSignature(abi: Omit<XsaveAbi, 'signature'>): XsaveAbi {
  return Object.freeze({ ...abi, signature: sha256(canonicalJson(abi)).slice(0, 16) });
}

/** The guest's CPUID leaf 0xD for this ABI, as KVM_SET_CPUID2 entries (flags = SIGNIFCANT_INDEX). */
export function guestCpuid0d(abi: XsaveAbi): CpuidEntry[] {
  const xcr0 = BigInt(abi.xcr0);
  const xss = BigInt(abi.xss);
  const lo = (m: bigint): number => Number(m & 0xffff_ffffn);
  const hi = (m: bigint): number => Number(m >> 32n);
  const out: CpuidEntry[] = [
    { function: 0xd, index: 0, flags: 1, eax: lo(xcr0), ebx: abi.standardSize, ecx: abi.standardSize, edx: hi(xcr0) },
    { function: 0xd, index: 1, flags: 1, eax: abi.features, ebx: abi.features & (XSAVE_FEATURE.XSAVEC | XSAVE_FEATURE.XSAVES) ? abi.compactedSize : 0, ecx: lo(xss), edx: hi(xss) },
  ];
  for (const c of Object.values(abi.components).sort((a, b) => a.bit - b.bit)) {
    out.push({ function: 0xd, index: c.bit, flags: 1, eax: c.size, ebx: c.offset ?? 0, ecx: (c.kind === 'supervisor' ? 1 : 0) | (c.align64 ? 2 : 0), edx: 0 });
  }
  return out;
}

/** Problems with an ABI fragment read from a snapshot or a file. */
export function xsaveAbiShapeProblems(abi: unknown): string[] {
  const a = abi as XsaveAbi;
  if (!a || typeof a !== 'object') return ['the xsave ABI fragment is not an object'];
  const problems: string[] = [];
  if (a.format !== 1) problems.push(`xsave ABI format ${String(a.format)} is not understood`);
  for (const k of ['xcr0', 'xss'] as const) if (typeof a[k] !== 'string' || !/^0x[0-9a-f]+$/i.test(a[k])) problems.push(`xsave ABI ${k} is not a hex string`);
  if (!a.components || typeof a.components !== 'object') problems.push('xsave ABI has no components');
  if (problems.length) return problems;
  const recomputed = withSignature({ format: 1, xcr0: a.xcr0, xss: a.xss, features: a.features, standardSize: a.standardSize, compactedSize: a.compactedSize, bufferSize: a.bufferSize, components: a.components });
  if (recomputed.signature !== a.signature) problems.push(`xsave ABI signature ${String(a.signature)} does not match its contents (${recomputed.signature}): the record was altered`);
  return problems;
}

/**
 * Can `dest` run a VM with this xsave ABI exactly? Returns every problem (subject
 * `xfeature <name>` or `xsave`), empty = yes. Nothing is changed either way.
 */
export function checkXsaveRestore(abi: XsaveAbi, dest: HostCapabilities): AbiProblem[] {
  const shape = xsaveAbiShapeProblems(abi);
  if (shape.length) return shape.map((message) => ({ subject: 'xsave', message }));
  const out: AbiProblem[] = [];
  for (const [name, c] of Object.entries(abi.components)) {
    const subject = `xfeature ${name}`;
    const label = componentLabel(c.bit);
    const have = dest.components.get(c.bit);
    const loadable = c.kind === 'user' ? (dest.kvmXcr0 & bit(c.bit)) !== 0n : (dest.xss & bit(c.bit)) !== 0n;
    if (!have || !loadable || have.kind !== c.kind) {
      const why = c.kind === 'user' ? `KVM there supports XCR0 ${hex64(dest.kvmXcr0)}` : `its IA32_XSS mask is ${hex64(dest.xss)}`;
      out.push({ subject, message: `${label}: the VM has it; host ${dest.name} lacks it (${why})` });
      continue;
    }
    if (have.size !== c.size) out.push({ subject, message: `${label}: the guest was shown ${c.size} bytes; host ${dest.name} has ${have.size}` });
    if (c.kind === 'user' && have.offset !== c.offset) {
      out.push({ subject, message: `${label}: the guest was shown standard offset 0x${c.offset!.toString(16)}; host ${dest.name}'s XSAVE writes it at 0x${have.offset!.toString(16)}` });
    }
    if (have.align64 !== c.align64 && abi.features & (XSAVE_FEATURE.XSAVEC | XSAVE_FEATURE.XSAVES)) {
      out.push({ subject, message: `${label}: compacted-format alignment differs on host ${dest.name} (guest was shown align64=${c.align64})` });
    }
  }
  for (const [fname, fbit] of FEATURE_NAMES) {
    if (abi.features & fbit && !(dest.xsaveFeatures & fbit)) out.push({ subject: 'xsave', message: `${fname} (CPUID 0xD.1 EAX bit ${Math.log2(fbit)}): the guest was shown it; host ${dest.name} lacks it` });
  }
  return out;
}

/** Throws XsaveError INCOMPATIBLE listing every problem and naming each component at fault. */
export function assertXsaveRestore(abi: XsaveAbi, dest: HostCapabilities): void {
  const problems = checkXsaveRestore(abi, dest);
  if (!problems.length) return;
  const components = problems.filter((p) => p.subject.startsWith('xfeature ')).map((p) => componentLabel(abi.components[p.subject.slice('xfeature '.length)]!.bit));
  throw new XsaveError('INCOMPATIBLE', `host ${dest.name} cannot run this VM's XSAVE ABI:\n- ${problems.map((p) => p.message).join('\n- ')}`, problems.map((p) => p.message), [...new Set(components)]);
}
