/**
 * Which xfeatures a guest has, and what KVM does with XSAVE state for it (arch/x86/kvm/x86.c,
 * Documentation/virt/kvm/api.rst KVM_SET_XSAVE / KVM_SET_XCRS). KVM after the 2023 fix ("KVM: x86: Fix breakage in KVM_SET_XSAVE's ABI",
 * Sean Christopherson, Message-ID 20230928001956.924301-1-seanjc@google.com):
 *
 * - KVM_GET_XSAVE{2} trims XSTATE_BV to guest_supported_xcr0 | FP | SSE (`trimForGet`);
 * - KVM_SET_XSAVE accepts any component the host's KVM supports, whatever the guest was shown,
 *   and fails with EINVAL otherwise (`kvmSetXsaveChecks` reproduces every EINVAL case);
 * - Plugvisor's restore (`planXsaveSet`) follows it and refuses, naming each component, what
 *   the destination cannot load. State for a component the guest was never shown is data the
 *   guest cannot see (Sean Christopherson, ML ZR2Y34hFpLmCYsUr@google.com): an operator may
 *   choose to drop it instead (`dropGuestInvisible`), as KVM's own GET trimming does. Guest-visible
 *   state is never dropped.
 */
import type { ErrnoName } from '@plugvisor/core';
import { HEADER, LEGACY, MASK, MXCSR_DEFAULT, bit, bitsOf, componentInfo, componentLabel, hex64 } from './components.js';
import { cloneState, type XsaveState } from './codec.js';
import { XsaveError, refuse } from './errors.js';
import type { CpuidEntry, HostCapabilities } from './host.js';

/** What a guest is shown in CPUID leaf 0xD: the XCR0 bits it may enable, and the IA32_XSS bits. */
export interface GuestXsavePolicy {
  /** CPUID.(0xD,0) EDX:EAX given to the guest (KVM_SET_CPUID2). */
  readonly xcr0: bigint;
  /** CPUID.(0xD,1) EDX:ECX given to the guest. */
  readonly xss?: bigint;
  /** CPUID.(0xD,1) EAX given to the guest (XSAVEOPT, XSAVEC, XGETBV1, XSAVES, XFD); default: the host's. */
  readonly features?: number;
}

/** The guest's CPUID 0xD policy, read from the CPUID entries a VMM passes to KVM_SET_CPUID2. */
export function guestPolicyFromCpuid(entries: readonly CpuidEntry[]): GuestXsavePolicy {
  const s0 = entries.find((e) => e.function === 0xd && e.index === 0);
  const s1 = entries.find((e) => e.function === 0xd && e.index === 1);
  return {
    xcr0: s0 ? BigInt(s0.eax >>> 0) | (BigInt(s0.edx >>> 0) << 32n) : 0n, // no leaf 0xD: no XSAVE for the guest
    xss: s1 ? BigInt(s1.ecx >>> 0) | (BigInt(s1.edx >>> 0) << 32n) : 0n,
    features: s1 ? s1.eax >>> 0 : 0,
  };
}

/** A guest's xfeatures on one host, as KVM computes them. */
export interface GuestXfeatures {
  /** KVM's `guest_supported_xcr0`: the guest's CPUID XCR0 ∩ what KVM supports on the host. */
  readonly supportedXcr0: bigint;
  /** What KVM_GET_XSAVE{2} keeps in XSTATE_BV: supportedXcr0 | FP | SSE (commit a1020a25e697). */
  readonly getMask: bigint;
  /** Supervisor components the guest may enable in IA32_XSS (never in the uAPI buffer). */
  readonly xss: bigint;
}

export function guestXfeatures(policy: GuestXsavePolicy, host: HostCapabilities): GuestXfeatures {
  const supportedXcr0 = policy.xcr0 & host.kvmXcr0;
  return { supportedXcr0, getMask: supportedXcr0 | MASK.FPSSE, xss: (policy.xss ?? 0n) & host.xss };
}

// ---------------------------------------------------------------------------------------------
// KVM's EINVAL cases, by name.

/** Every EINVAL case of KVM_SET_XSAVE and KVM_SET_XCRS that pure code can reproduce (arch/x86/kvm/x86.c, `__kvm_set_xcr`). */
export const KVM_CHECK = Object.freeze({
  /** XSTATE_BV ⊄ kvm_caps.supported_xcr0 (e.g. bit 9 on a host without PKRU, bit 62). */
  XSTATE_BV_UNSUPPORTED: 'XSTATE_BV_UNSUPPORTED',
  /** A supervisor component in XSTATE_BV (e.g. bit 11): never part of the uAPI buffer. */
  XSTATE_BV_SUPERVISOR: 'XSTATE_BV_SUPERVISOR',
  /** A dynamic component (AMX tile data) without arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM). */
  XSTATE_BV_DYNAMIC_NOT_PERMITTED: 'XSTATE_BV_DYNAMIC_NOT_PERMITTED',
  XCOMP_BV_NONZERO: 'XCOMP_BV_NONZERO',
  HEADER_RESERVED_NONZERO: 'HEADER_RESERVED_NONZERO',
  /** MXCSR has bits outside the host's MXCSR_MASK while FP, SSE or YMM is present. */
  MXCSR_RESERVED_BITS: 'MXCSR_RESERVED_BITS',
  XCRS_NO_XSAVE: 'XCRS_NO_XSAVE',
  XCRS_TOO_MANY: 'XCRS_TOO_MANY',
  XCRS_FLAGS_NONZERO: 'XCRS_FLAGS_NONZERO',
  XCR0_X87_CLEAR: 'XCR0_X87_CLEAR',
  XCR0_YMM_WITHOUT_SSE: 'XCR0_YMM_WITHOUT_SSE',
  XCR0_NOT_GUEST_SUPPORTED: 'XCR0_NOT_GUEST_SUPPORTED',
  XCR0_MPX_PARTIAL: 'XCR0_MPX_PARTIAL',
  XCR0_AVX512_WITHOUT_YMM: 'XCR0_AVX512_WITHOUT_YMM',
  XCR0_AVX512_PARTIAL: 'XCR0_AVX512_PARTIAL',
  XCR0_XTILE_PARTIAL: 'XCR0_XTILE_PARTIAL',
} as const);
export type KvmCheckName = keyof typeof KVM_CHECK;

/** One failed check: KVM's errno, the components involved and a sentence. */
export interface KvmViolation {
  readonly check: KvmCheckName;
  readonly errno: ErrnoName;
  readonly components: readonly string[];
  readonly message: string;
}

const v = (check: KvmCheckName, message: string, mask = 0n): KvmViolation => ({ check, errno: 'EINVAL', components: bitsOf(mask).map(componentLabel), message });

/**
 * XCR0 value rules (`__kvm_set_xcr`, SETXCR; the same rules xcr0_cpuid_test checks from the
 * guest). KVM stops at the first failure; this lists all. `guestSupported` is the guest's
 * guest_supported_xcr0 (KVM adds FP to it); omit it to check only the architectural rules.
 */
export function xcr0Violations(xcr0: bigint, guestSupported?: bigint): KvmViolation[] {
  const out: KvmViolation[] = [];
  if (!(xcr0 & MASK.FP)) out.push(v('XCR0_X87_CLEAR', `XCR0 ${hex64(xcr0)} has x87 (bit 0) clear`, MASK.FP));
  if (xcr0 & MASK.YMM && !(xcr0 & MASK.SSE)) out.push(v('XCR0_YMM_WITHOUT_SSE', `XCR0 ${hex64(xcr0)} enables avx (bit 2) without sse (bit 1)`, MASK.YMM | MASK.SSE));
  if (guestSupported !== undefined) {
    const extra = xcr0 & ~(guestSupported | MASK.FP);
    if (extra) out.push(v('XCR0_NOT_GUEST_SUPPORTED', `XCR0 ${hex64(xcr0)} enables ${bitsOf(extra).map(componentLabel).join(', ')}, not in the guest's CPUID 0xD`, extra));
  }
  const mpx = xcr0 & MASK.MPX;
  if (mpx && mpx !== MASK.MPX) out.push(v('XCR0_MPX_PARTIAL', `XCR0 ${hex64(xcr0)} enables only one of bndregs (bit 3) and bndcsr (bit 4)`, MASK.MPX));
  const avx512 = xcr0 & MASK.AVX512;
  if (avx512 && !(xcr0 & MASK.YMM)) out.push(v('XCR0_AVX512_WITHOUT_YMM', `XCR0 ${hex64(xcr0)} enables AVX-512 without avx (bit 2)`, avx512 | MASK.YMM));
  if (avx512 && avx512 !== MASK.AVX512) out.push(v('XCR0_AVX512_PARTIAL', `XCR0 ${hex64(xcr0)} enables only part of AVX-512 (opmask, zmm_hi256, hi16_zmm go together)`, MASK.AVX512 & ~avx512));
  const xtile = xcr0 & MASK.XTILE;
  if (xtile && xtile !== MASK.XTILE) out.push(v('XCR0_XTILE_PARTIAL', `XCR0 ${hex64(xcr0)} enables only one of xtile_cfg (bit 17) and xtile_data (bit 18)`, MASK.XTILE));
  return out;
}

/** `struct kvm_xcrs` as plain values (arch/x86/include/uapi/asm/kvm.h). */
export interface KvmXcrs {
  readonly nrXcrs: number;
  readonly flags: number;
  readonly xcrs: readonly { readonly xcr: number; readonly value: bigint }[];
}

/**
 * KVM_SET_XCRS's EINVAL cases (X86-612 `kvm_vcpu_ioctl_x86_set_xcrs`): no host XSAVE,
 * nr_xcrs > 16, flags ≠ 0, then the XCR0 rules for the first entry with xcr == 0 (other
 * entries are ignored, as KVM ignores them).
 */
export function kvmSetXcrsChecks(xcrs: KvmXcrs, guestSupportedXcr0: bigint, opts: { hostHasXsave?: boolean } = {}): KvmViolation[] {
  if (opts.hostHasXsave === false) return [v('XCRS_NO_XSAVE', 'the host has no XSAVE: KVM_SET_XCRS always fails')];
  const out: KvmViolation[] = [];
  if (xcrs.nrXcrs > 16) out.push(v('XCRS_TOO_MANY', `nr_xcrs ${xcrs.nrXcrs} exceeds KVM_MAX_XCRS (16)`));
  if (xcrs.flags !== 0) out.push(v('XCRS_FLAGS_NONZERO', `flags ${xcrs.flags} must be 0`));
  if (out.length) return out;
  const xcr0 = xcrs.xcrs.slice(0, xcrs.nrXcrs).find((x) => x.xcr === 0);
  return xcr0 ? xcr0Violations(xcr0.value, guestSupportedXcr0) : [];
}

/**
 * KVM_SET_XSAVE's EINVAL cases for a raw buffer on `host` (X86-612
 * `kvm_vcpu_ioctl_x86_set_xsave` → CORE `fpu_copy_uabi_to_guest_fpstate` → XSTATE
 * `copy_uabi_to_xstate`), after KVM's own first step: clearing XSTATE_BV bits the guest
 * disabled in IA32_XFD (`xfd`).
 */
export function kvmSetXsaveChecks(buf: Uint8Array, host: HostCapabilities, opts: { xfd?: bigint } = {}): KvmViolation[] {
  const out: KvmViolation[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bv = dv.getBigUint64(HEADER.XSTATE_BV, true) & ~(opts.xfd ?? 0n);
  out.push(...xstateBvViolations(bv, host));
  const xcomp = dv.getBigUint64(HEADER.XCOMP_BV, true);
  if (xcomp !== 0n) out.push(v('XCOMP_BV_NONZERO', `XCOMP_BV is ${hex64(xcomp)}; KVM takes only the standard format (XCOMP_BV = 0)`));
  const bad = buf.subarray(HEADER.RESERVED, HEADER.RESERVED + HEADER.RESERVED_SIZE).findIndex((b) => b !== 0);
  if (bad >= 0) out.push(v('HEADER_RESERVED_NONZERO', `reserved header byte ${HEADER.RESERVED + bad} is not zero`));
  const mxcsr = dv.getUint32(LEGACY.MXCSR, true);
  out.push(...mxcsrViolations(mxcsr, bv, host));
  return out;
}

/** Splits XSTATE_BV bits KVM on `host` cannot load by the reason KVM refuses them. */
function classifyUnloadable(bv: bigint, host: HostCapabilities): { unsupported: bigint; supervisor: bigint; dynamic: bigint } {
  const outside = bv & ~host.kvmXcr0;
  let supervisor = 0n;
  let dynamic = 0n;
  for (const n of bitsOf(outside)) {
    const info = componentInfo(n);
    if (host.xss & bit(n) || (info.kind === 'supervisor' && info.source !== 'none')) supervisor |= bit(n);
    else if (MASK.DYNAMIC & bit(n) && (host.xcompGuestSupp ?? 0n) & bit(n)) dynamic |= bit(n);
  }
  return { unsupported: outside & ~supervisor & ~dynamic, supervisor, dynamic };
}

const REASON = {
  XSTATE_BV_UNSUPPORTED: (h: HostCapabilities) => `KVM on host ${h.name} does not support it (supported ${hex64(h.kvmXcr0)})`,
  XSTATE_BV_SUPERVISOR: () => 'it is a supervisor component; the uAPI buffer carries user components only',
  XSTATE_BV_DYNAMIC_NOT_PERMITTED: () => 'it needs arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18) before the first vCPU is created',
} as const;

function xstateBvViolations(bv: bigint, host: HostCapabilities, note: (n: number) => string = () => ''): KvmViolation[] {
  const c = classifyUnloadable(bv, host);
  const out: KvmViolation[] = [];
  for (const [check, mask] of [
    ['XSTATE_BV_UNSUPPORTED', c.unsupported],
    ['XSTATE_BV_SUPERVISOR', c.supervisor],
    ['XSTATE_BV_DYNAMIC_NOT_PERMITTED', c.dynamic],
  ] as const) {
    for (const n of bitsOf(mask)) out.push(v(check, `XSTATE_BV has ${componentLabel(n)}: ${REASON[check](host)}${note(n)}`, bit(n)));
  }
  return out;
}

function mxcsrViolations(mxcsr: number, bv: bigint, host: HostCapabilities): KvmViolation[] {
  // copy_uabi_to_xstate validates MXCSR whenever FP, SSE or YMM is present.
  if (!(bv & (MASK.FPSSE | MASK.YMM))) return [];
  const reserved = (mxcsr & ~host.mxcsrMask) >>> 0;
  return reserved ? [v('MXCSR_RESERVED_BITS', `MXCSR 0x${(mxcsr >>> 0).toString(16)} sets bits 0x${reserved.toString(16)} outside host ${host.name}'s MXCSR_MASK 0x${host.mxcsrMask.toString(16)}`)] : [];
}

/** Throws XsaveError KVM_EINVAL (errno EINVAL) listing each violation and every component named. */
export function assertNoViolations(what: string, violations: readonly KvmViolation[]): void {
  refuse('KVM_EINVAL', what, violations.map((x) => `${x.check}: ${x.message}`), violations.flatMap((x) => x.components), 'EINVAL');
}

// ---------------------------------------------------------------------------------------------
// GET and SET on decoded state.

/** A copy of `state` with the components of `mask` returned to their init state. */
export function withoutComponents(state: XsaveState, mask: bigint): XsaveState {
  const out = cloneState(state);
  out.xstateBv = state.xstateBv & ~mask;
  for (const n of bitsOf(state.xstateBv & mask)) {
    const key = componentInfo(n).key;
    if (key) delete out.components[key];
    else if (out.components.opaque) delete out.components.opaque[n];
  }
  if (out.components.opaque && !Object.keys(out.components.opaque).length) delete out.components.opaque;
  return out;
}

/**
 * What KVM_GET_XSAVE{2} returns for a vCPU in `state` (X86-612; XSTATE
 * `__copy_xstate_to_uabi_buf`): XSTATE_BV &= the guest's get mask, trimmed components go
 * to their init state, and MXCSR falls back to its default unless SSE or AVX is still present.
 */
export function trimForGet(state: XsaveState, guest: GuestXfeatures): XsaveState {
  const out = withoutComponents(state, ~guest.getMask);
  if (!(out.xstateBv & (MASK.SSE | MASK.YMM))) out.mxcsr = MXCSR_DEFAULT;
  return out;
}

/** A restore plan: the state to pass to KVM_SET_XSAVE, and what happened to each component. */
export interface XsaveSetPlan {
  readonly state: XsaveState;
  /** Components loaded, including host-supported ones the guest was not shown (KVM loads them). */
  readonly kept: readonly string[];
  /** Guest-invisible components the destination cannot load, dropped on request. */
  readonly dropped: readonly string[];
}

/**
 * Plan KVM_SET_XSAVE of `state` for a guest on `dest`, refusing before anything is written.
 * Accepted: every component the destination's KVM supports (after the 2023 fix, whatever the
 * guest was shown). Refused with XsaveError KVM_EINVAL (errno EINVAL), naming each component:
 * components the destination cannot load — unless the guest was never shown them and
 * `dropGuestInvisible` is set — and MXCSR bits outside the destination's MXCSR_MASK.
 */
export function planXsaveSet(
  state: XsaveState,
  guest: GuestXsavePolicy,
  dest: HostCapabilities,
  opts: { dropGuestInvisible?: boolean; xfd?: bigint } = {},
): XsaveSetPlan {
  const visible = guest.xcr0 | MASK.FPSSE; // what the guest was shown: its data must survive
  const bv = state.xstateBv & ~(opts.xfd ?? 0n); // KVM clears XFD-disabled bits first
  const cannot = bv & ~dest.kvmXcr0;
  const drop = opts.dropGuestInvisible ? cannot & ~visible : 0n;
  const note = (n: number): string =>
    visible & bit(n)
      ? '; the guest was shown it, so its data cannot be dropped'
      : '; the guest was never shown it (state over-saved by an older source): dropGuestInvisible would drop it, KVM itself refuses it';
  const violations = xstateBvViolations(cannot & ~drop, dest, note);
  violations.push(...mxcsrViolations(state.mxcsr, bv & ~drop, dest));
  assertNoViolations(`KVM_SET_XSAVE on host ${dest.name} would fail`, violations);

  const planned = bv === state.xstateBv && !drop ? state : withoutComponents(state, ~(bv & ~drop));
  return { state: planned, kept: bitsOf(planned.xstateBv).map(componentLabel), dropped: bitsOf(drop).map(componentLabel) };
}

/** Guest-policy problems: architectural XCR0 rules on the whole mask, and kind mismatches. */
export function guestPolicyProblems(policy: GuestXsavePolicy, host?: HostCapabilities): string[] {
  const problems = xcr0Violations(policy.xcr0 | MASK.FP).map((x) => `${x.check}: ${x.message}`);
  for (const n of bitsOf(policy.xcr0)) if (componentInfo(n).kind === 'supervisor' && componentInfo(n).source !== 'none') problems.push(`${componentLabel(n)} is a supervisor component; it belongs in IA32_XSS (0xD.1 ECX), not XCR0`);
  for (const n of bitsOf(policy.xss ?? 0n)) if (componentInfo(n).kind === 'user' && componentInfo(n).source !== 'none') problems.push(`${componentLabel(n)} is a user component; it belongs in XCR0 (0xD.0), not IA32_XSS`);
  if (host) {
    const lacks = policy.xcr0 & ~(host.kvmXcr0 | MASK.FP);
    if (lacks) problems.push(`host ${host.name} cannot give the guest ${bitsOf(lacks).map(componentLabel).join(', ')} (KVM supports ${hex64(host.kvmXcr0)})`);
    const lacksS = (policy.xss ?? 0n) & ~host.xss;
    if (lacksS) problems.push(`host ${host.name} cannot give the guest ${bitsOf(lacksS).map(componentLabel).join(', ')} (IA32_XSS ${hex64(host.xss)})`);
  }
  return problems;
}

/** Throws XsaveError BAD_POLICY if the guest policy breaks a rule (or does not fit `host`). */
export function assertGuestPolicy(policy: GuestXsavePolicy, host?: HostCapabilities): void {
  const problems = guestPolicyProblems(policy, host);
  if (problems.length) throw new XsaveError('BAD_POLICY', `guest XSAVE policy:\n- ${problems.join('\n- ')}`, problems);
}
