/**
 * The XSAVE state components Linux knows, as data.
 *
 * Sources (Intel SDM Vol. 1 ch. 13): `enum xfeature` in arch/x86/include/asm/fpu/types.h
 * (Kingxukai/linux@0291023e), the user/supervisor masks in asm/fpu/xstate.h, KVM_SUPPORTED_XCR0
 * in arch/x86/kvm/x86.c, QEMU's target/i386/tcg/tcg-cpu.h XSAVE_*_OFFSET constants (Intel
 * standard offsets) and CPUID 0xD measured on an AMD EPYC family 19h model 11h host (AMD offsets).
 *
 * The offsets here are documentation only: the codec always takes offsets from a host's
 * CPUID leaf 0xD (host.ts), because KVM's uAPI buffer follows the host's CPUID 0xD
 * (Documentation/virt/kvm/api.rst, KVM_SET_XSAVE) and Intel and AMD disagree.
 */

/** Component numbers (`enum xfeature`, asm/fpu/types.h). */
export const XFEATURE = Object.freeze({
  FP: 0,
  SSE: 1,
  YMM: 2,
  BNDREGS: 3,
  BNDCSR: 4,
  OPMASK: 5,
  ZMM_HI256: 6,
  HI16_ZMM: 7,
  PT: 8,
  PKRU: 9,
  PASID: 10,
  CET_USER: 11,
  CET_KERNEL: 12,
  HDC: 13,
  UINTR: 14,
  LBR: 15,
  HWP: 16,
  XTILE_CFG: 17,
  XTILE_DATA: 18,
  APX: 19,
  LWP: 62,
} as const);

export const bit = (n: number): bigint => 1n << BigInt(n);

/** Masks (asm/fpu/xstate.h; arch/x86/kvm/x86.c). */
export const MASK = Object.freeze({
  FP: bit(0),
  SSE: bit(1),
  FPSSE: bit(0) | bit(1),
  YMM: bit(2),
  MPX: bit(3) | bit(4),
  AVX512: bit(5) | bit(6) | bit(7),
  PKRU: bit(9),
  XTILE: bit(17) | bit(18),
  /** `XFEATURE_MASK_USER_DYNAMIC`: needs arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM) first (arch/x86/kernel/fpu/xstate.c `xstate_request_perm`). */
  DYNAMIC: bit(18),
  /** `KVM_SUPPORTED_XCR0` (x86.c@9b44fff6): the most KVM_SET_XSAVE can ever accept. APX is not in it. */
  KVM_SUPPORTED_XCR0: bit(0) | bit(1) | bit(2) | bit(3) | bit(4) | bit(5) | bit(6) | bit(7) | bit(9) | bit(17) | bit(18),
});

/** Start of the extended area: 512-byte legacy (FXSAVE) image + 64-byte XSAVE header (Intel SDM Vol. 1 ch. 13). */
export const LEGACY_SIZE = 512;
export const HEADER_OFFSET = 512;
export const HEADER_SIZE = 64;
export const EXTENDED_OFFSET = 576;
/** `sizeof(struct kvm_xsave)`: KVM_GET_XSAVE's size and the floor of KVM_CAP_XSAVE2 (Documentation/virt/kvm/api.rst). */
export const KVM_XSAVE_SIZE = 4096;

/** Legacy-region field offsets (FXSAVE image; Intel SDM Vol. 1 §10.5.1, QEMU tcg-cpu.h). */
export const LEGACY = Object.freeze({
  FCW: 0,
  FSW: 2,
  FTW: 4, // abridged tag byte; byte 5 is reserved
  FOP: 6,
  FIP: 8, // 64-bit form (Linux and KVM use FXSAVE64/XSAVE64)
  FDP: 16,
  MXCSR: 24,
  MXCSR_MASK: 28,
  ST: 32, // 8 × 16-byte slots, 80-bit value in the low 10 bytes
  XMM: 160, // 16 × 16 bytes
  XMM_END: 416,
  /** 416–511: padding and `sw_reserved`; KVM ignores it on SET (arch/x86/kernel/fpu/xstate.c `copy_uabi_to_xstate`). */
});

/** Header field offsets (Intel SDM Vol. 1 ch. 13, `struct xstate_header`). */
export const HEADER = Object.freeze({ XSTATE_BV: 512, XCOMP_BV: 520, RESERVED: 528, RESERVED_SIZE: 48 });

/** Init values (arch/x86/kernel/fpu/core.c `fpstate_init_fxstate`). */
export const FCW_INIT = 0x37f;
export const MXCSR_DEFAULT = 0x1f80;

export type ComponentKind = 'user' | 'supervisor';

/** The property of `XsaveComponents` (codec.ts) that holds a component's registers. */
export type ComponentKey =
  | 'x87'
  | 'sse'
  | 'avx'
  | 'bndregs'
  | 'bndcsr'
  | 'opmask'
  | 'zmmHi256'
  | 'hi16Zmm'
  | 'pkru'
  | 'xtileCfg'
  | 'xtileData'
  | 'apx';

export interface ComponentInfo {
  readonly bit: number;
  /** Short name used in every message: `opmask`, `pkru`, ... */
  readonly name: string;
  /** The `enum xfeature` name (or the Xen name where Linux leaves the bit reserved). */
  readonly linuxName: string;
  readonly description: string;
  /** XCR0 (user) or IA32_XSS (supervisor). CET_USER is supervisor despite its name. */
  readonly kind: ComponentKind;
  /** Architectural size in bytes when fixed; the codec refuses a host that reports another. */
  readonly size?: number;
  /** Standard-format offset on Intel (QEMU tcg-cpu.h / selftests), when a source gives it. */
  readonly intelOffset?: number;
  /** Standard-format offset measured on an AMD EPYC 19h host or given by the AMD PKRU patch. */
  readonly amdOffset?: number;
  /** Needs arch_prctl permission before KVM will save or load it (AMX tile data). */
  readonly dynamic?: boolean;
  /** Has a register model in codec.ts; otherwise carried as opaque bytes. */
  readonly key?: ComponentKey;
  /** Where the row comes from. */
  readonly source: string;
}

const table: ComponentInfo[] = [
  { bit: 0, name: 'x87', linuxName: 'XFEATURE_FP', description: 'x87 FPU: FCW, FSW, FTW, FOP, FIP, FDP, ST0-7 (legacy bytes 0-159)', kind: 'user', size: 160, intelOffset: 0, amdOffset: 0, key: 'x87', source: 'types.h fxregs_state; xstate.c size = offsetof(fxregs_state, xmm_space)' },
  { bit: 1, name: 'sse', linuxName: 'XFEATURE_SSE', description: 'SSE: XMM0-15 (legacy bytes 160-415); MXCSR at 24', kind: 'user', size: 256, intelOffset: 160, amdOffset: 160, key: 'sse', source: 'xstate.c; QEMU XSAVE_XMM_SPACE_OFFSET 0x0a0' },
  { bit: 2, name: 'avx', linuxName: 'XFEATURE_YMM', description: 'AVX: upper 128 bits of YMM0-15', kind: 'user', size: 256, intelOffset: 0x240, amdOffset: 0x240, key: 'avx', source: 'QEMU XSAVE_AVX_OFFSET 0x240; AMD EPYC 19h 0xD.2 = 0x100 @ 0x240 (measured)' },
  { bit: 3, name: 'bndregs', linuxName: 'XFEATURE_BNDREGS', description: 'MPX bound registers BND0-3', kind: 'user', size: 64, intelOffset: 0x3c0, key: 'bndregs', source: 'QEMU XSAVE_BNDREG_OFFSET 0x3c0; not enumerated on AMD EPYC 19h (measured)' },
  { bit: 4, name: 'bndcsr', linuxName: 'XFEATURE_BNDCSR', description: 'MPX BNDCFGU and BNDSTATUS (padded to 64)', kind: 'user', size: 64, intelOffset: 0x400, key: 'bndcsr', source: 'QEMU XSAVE_BNDCSR_OFFSET 0x400; types.h mpx_bndcsr_state' },
  { bit: 5, name: 'opmask', linuxName: 'XFEATURE_OPMASK', description: 'AVX-512 opmask registers k0-k7', kind: 'user', size: 64, intelOffset: 0x440, amdOffset: 0x340, key: 'opmask', source: 'QEMU XSAVE_OPMASK_OFFSET 0x440; AMD 0xD.5 = 0x40 @ 0x340 (AMD EPYC 19h, measured)' },
  { bit: 6, name: 'zmm_hi256', linuxName: 'XFEATURE_ZMM_Hi256', description: 'AVX-512: upper 256 bits of ZMM0-15', kind: 'user', size: 512, intelOffset: 0x480, amdOffset: 0x380, key: 'zmmHi256', source: 'QEMU XSAVE_ZMM_HI256_OFFSET 0x480; AMD 0xD.6 = 0x200 @ 0x380 (measured)' },
  { bit: 7, name: 'hi16_zmm', linuxName: 'XFEATURE_Hi16_ZMM', description: 'AVX-512: ZMM16-31', kind: 'user', size: 1024, intelOffset: 0x680, amdOffset: 0x580, key: 'hi16Zmm', source: 'QEMU XSAVE_HI16_ZMM_OFFSET 0x680; AMD 0xD.7 = 0x400 @ 0x580 (measured)' },
  { bit: 8, name: 'pt', linuxName: 'XFEATURE_PT_UNIMPLEMENTED_SO_FAR', description: 'Processor Trace (Linux never uses it)', kind: 'supervisor', source: 'xstate.h XFEATURE_MASK_SUPERVISOR_UNSUPPORTED' },
  { bit: 9, name: 'pkru', linuxName: 'XFEATURE_PKRU', description: 'Protection keys rights register PKRU', kind: 'user', size: 8, intelOffset: 0xa80, amdOffset: 0x980, key: 'pkru', source: 'QEMU XSAVE_PKRU_OFFSET 0xa80; AMD 0x980 per the AMD PKRU patch (ML 20210520145647.3483809-6-david.edmondson@oracle.com)' },
  { bit: 10, name: 'pasid', linuxName: 'XFEATURE_PASID', description: 'IA32_PASID state', kind: 'supervisor', size: 8, source: 'types.h ia32_pasid_state' },
  { bit: 11, name: 'cet_user', linuxName: 'XFEATURE_CET_USER', description: 'CET user state (U_CET, PL3_SSP)', kind: 'supervisor', size: 16, source: 'xstate.h XFEATURE_MASK_SUPERVISOR_SUPPORTED; AMD EPYC 19h 0xD.11 = 0x10, ECX=1 (measured)' },
  { bit: 12, name: 'cet_kernel', linuxName: 'XFEATURE_CET_KERNEL', description: 'CET supervisor shadow-stack pointers (guest-only in Linux)', kind: 'supervisor', size: 24, source: 'xstate.h XFEATURE_MASK_GUEST_SUPERVISOR; AMD EPYC 19h 0xD.12 = 0x18, ECX=1 (measured)' },
  { bit: 13, name: 'hdc', linuxName: 'XFEATURE_RSRVD_COMP_13', description: 'HDC (name from Xen X86_XSS_HDC; reserved in Linux)', kind: 'supervisor', source: 'Xen x86-defns.h' },
  { bit: 14, name: 'uintr', linuxName: 'XFEATURE_RSRVD_COMP_14', description: 'User interrupts (name from Xen X86_XSS_UINTR; reserved in Linux)', kind: 'supervisor', source: 'Xen x86-defns.h' },
  { bit: 15, name: 'lbr', linuxName: 'XFEATURE_LBR', description: 'Architectural LBR (depth-dependent size)', kind: 'supervisor', source: 'xstate.h independent features' },
  { bit: 16, name: 'hwp', linuxName: 'XFEATURE_RSRVD_COMP_16', description: 'HWP (name from Xen X86_XSS_HWP; reserved in Linux)', kind: 'supervisor', source: 'Xen x86-defns.h' },
  { bit: 17, name: 'xtile_cfg', linuxName: 'XFEATURE_XTILE_CFG', description: 'AMX tile configuration TILECFG', kind: 'user', size: 64, key: 'xtileCfg', source: 'types.h xtile_cfg (8 × u64); offset not in the cited sources: read CPUID 0xD.17' },
  { bit: 18, name: 'xtile_data', linuxName: 'XFEATURE_XTILE_DATA', description: 'AMX tile data TMM0-7', kind: 'user', size: 8192, intelOffset: 2816, dynamic: true, key: 'xtileData', source: 'selftests amx_test.c asserts offset 2816, size 8192' },
  { bit: 19, name: 'apx', linuxName: 'XFEATURE_APX', description: 'APX extended GPRs R16-R31', kind: 'user', size: 128, key: 'apx', source: 'types.h apx_state; not in KVM_SUPPORTED_XCR0' },
  { bit: 62, name: 'lwp', linuxName: 'X86_XCR0_LWP', description: 'AMD lightweight profiling (Xen name; Linux does not know it)', kind: 'user', source: 'Xen x86-defns.h' },
];

/** Every known component, by bit. */
export const COMPONENTS: ReadonlyMap<number, ComponentInfo> = new Map(table.map((c) => [c.bit, Object.freeze(c)]));

/** The component's info, or a placeholder for a bit no source names. */
export function componentInfo(n: number): ComponentInfo {
  return (
    COMPONENTS.get(n) ?? {
      bit: n,
      name: `bit${n}`,
      linuxName: `bit ${n}`,
      description: 'component unknown to this package',
      kind: 'user', // a host dump's CPUID 0xD.n ECX bit 0 says otherwise when it knows
      source: 'none',
    }
  );
}

/** `opmask (bit 5)`: how every message names a component. */
export const componentLabel = (n: number): string => `${componentInfo(n).name} (bit ${n})`;

/** The bit numbers set in a 64-bit mask, ascending. (Number halves: BigInt shifts are slow.) */
export function bitsOf(mask: bigint): number[] {
  const out: number[] = [];
  let lo = Number(mask & 0xffff_ffffn);
  let hi = Number((mask >> 32n) & 0xffff_ffffn);
  for (let i = 0; lo !== 0; i++, lo >>>= 1) if (lo & 1) out.push(i);
  for (let i = 32; hi !== 0; i++, hi >>>= 1) if (hi & 1) out.push(i);
  return out;
}

/** `opmask (bit 5), pkru (bit 9)` for a mask. */
export const labelsOf = (mask: bigint): string[] => bitsOf(mask).map(componentLabel);

export const hex64 = (v: bigint): string => '0x' + v.toString(16);
