/**
 * Example host capability dumps, for tests, baselines and documentation. Every number says
 * where it comes from. Where no cited source gives a
 * value and it had to be derived, the comment says "derived" and how.
 *
 * Common to all: x87/SSE live in the legacy region (no sub-leaf), YMM is 256 bytes at 0x240 on
 * every host (QEMU XSAVE_AVX_OFFSET; AMD EPYC 19h 0xD.2, measured), 0xD entries carry flags = 1
 * (KVM_CPUID_FLAG_SIGNIFCANT_INDEX, arch/x86/kvm/cpuid.c).
 */
import type { CpuidEntry, HostCapabilityDump } from './host.js';

const e = (index: number, eax: number, ebx: number, ecx: number, edx = 0): CpuidEntry => ({ function: 0xd, index, flags: 1, eax, ebx, ecx, edx });

/**
 * AMD EPYC family 19h model 11h exactly as measured on the development machine (raw CPUID and
 * a /dev/kvm probe, kernel 6.18, running as a VM):
 * AVX-512 packed straight after YMM (no MPX hole), no PKRU enumerated in that VM, CET user and
 * supervisor in IA32_XSS. 0xD.1 EBX = 0x9a8 matches the compacted size this package computes.
 */
export const AMD_EPYC_MEASURED: HostCapabilityDump = {
  format: 1,
  name: 'amd-epyc-19h-measured',
  vendor: 'AuthenticAMD',
  source: 'measured: raw CPUID and /dev/kvm probe (KVM_X86_XCOMP_GUEST_SUPP 0xe7, KVM_CAP_XSAVE2 4096)',
  cpuid0d: [
    e(0, 0xe7, 0x980, 0x980),
    e(1, 0xf, 0x9a8, 0x1800),
    e(2, 0x100, 0x240, 0),
    e(5, 0x40, 0x340, 0),
    e(6, 0x200, 0x380, 0),
    e(7, 0x400, 0x580, 0),
    e(11, 0x10, 0, 1),
    e(12, 0x18, 0, 1),
  ],
  kvmXcompGuestSupp: '0xe7',
  kvmXsave2Size: 4096,
};

/**
 * An AMD EPYC with AVX-512 and PKRU: the measured layout above plus PKRU (8 bytes) at 0x980,
 * the AMD PKRU offset of the QEMU AMD PKRU series (ML 20210520145647.3483809-6-david.edmondson@
 * oracle.com). Composed, not measured: the measured VM did not enumerate PKU.
 * 0xD.0 EBX/ECX = 0x980 + 8 = 0x988; 0xD.1 EBX = 0x9a8 + 8 = 0x9b0 (derived).
 */
export const AMD_EPYC_PKRU: HostCapabilityDump = {
  format: 1,
  name: 'amd-epyc-avx512-pkru',
  vendor: 'AuthenticAMD',
  source: 'AMD EPYC 19h measurement + AMD PKRU offset 0x980 from the QEMU AMD PKRU patch (composed)',
  cpuid0d: [
    e(0, 0x2e7, 0x988, 0x988),
    e(1, 0xf, 0x9b0, 0x1800),
    e(2, 0x100, 0x240, 0),
    e(5, 0x40, 0x340, 0),
    e(6, 0x200, 0x380, 0),
    e(7, 0x400, 0x580, 0),
    e(9, 0x8, 0x980, 0),
    e(11, 0x10, 0, 1),
    e(12, 0x18, 0, 1),
  ],
  kvmXcompGuestSupp: '0x2e7',
  kvmXsave2Size: 4096,
};

/**
 * An AMD EPYC-Milan-like host: AVX2 but no AVX-512, PKRU at 0x980 (the QEMU AMD PKRU patch's
 * EPYC-Milan offset; the AVX-512 area is left as a hole). XSS left empty (derived: not given).
 */
export const AMD_EPYC_MILAN: HostCapabilityDump = {
  format: 1,
  name: 'amd-epyc-milan',
  vendor: 'AuthenticAMD',
  source: 'QEMU AMD PKRU series (EPYC-Milan PKRU at 0x980); YMM from the AMD EPYC 19h measurement; sizes derived',
  cpuid0d: [
    e(0, 0x207, 0x988, 0x988),
    e(1, 0xf, 0x348, 0), // compacted: 576 + 256 + 8 (derived)
    e(2, 0x100, 0x240, 0),
    e(9, 0x8, 0x980, 0),
  ],
  kvmXcompGuestSupp: '0x207',
  kvmXsave2Size: 4096,
};

/**
 * An Intel Skylake-SP-like host (the "Skylake (PKRU, AVX512, ...)" hypervisors of the 2023
 * report, Message-ID ZRMHY83W/VPjYyhy@google.com): MPX, AVX-512 and PKRU at QEMU's Intel offsets (tcg-cpu.h). Standard
 * size 0xA80 + 8 = 0xA88 (derived). 0xD.1 EAX 0xf as on the AMD measurement (assumed).
 */
export const INTEL_SKYLAKE_SP: HostCapabilityDump = {
  format: 1,
  name: 'intel-skylake-sp',
  vendor: 'GenuineIntel',
  source: 'QEMU target/i386/tcg/tcg-cpu.h XSAVE_*_OFFSET; sizes derived',
  cpuid0d: [
    e(0, 0x2ff, 0xa88, 0xa88),
    e(1, 0xf, 0xa08, 0), // compacted: 576 + 256 + 64 + 64 + 64 + 512 + 1024 + 8 = 2568 = 0xa08 (derived)
    e(2, 0x100, 0x240, 0),
    e(3, 0x40, 0x3c0, 0),
    e(4, 0x40, 0x400, 0),
    e(5, 0x40, 0x440, 0),
    e(6, 0x200, 0x480, 0),
    e(7, 0x400, 0x680, 0),
    e(9, 0x8, 0xa80, 0),
  ],
  kvmXcompGuestSupp: '0x2ff',
  kvmXsave2Size: 4096,
};

/**
 * An Intel Sapphire-Rapids-like host with AVX-512, PKRU and AMX, no MPX, as KVM reports it
 * after arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18). Offsets: QEMU's Intel constants; tile data
 * 8192 at 2816 from selftests amx_test.c. TILECFG's offset is in no cited source: 0xAC0 is
 * derived (64 bytes directly below tile data at 0xB00, after PKRU at 0xA80). The 64-byte
 * alignment flags on 17/18 are derived from a compacted dmesg offset of 2560 for tile data
 * (Linux's boot-time xstate offsets print). CET in XSS with the sizes measured on AMD (architectural).
 */
export const INTEL_SPR_AMX: HostCapabilityDump = {
  format: 1,
  name: 'intel-spr-amx',
  vendor: 'GenuineIntel',
  source: 'QEMU tcg-cpu.h offsets, amx_test.c tile data 2816/8192, TILECFG 0xAC0 derived',
  cpuid0d: [
    e(0, 0x602e7, 0x2b00, 0x2b00), // 2816 + 8192 = 11008 = 0x2b00
    e(1, 0x1f, 0x2a00, 0x1800), // XFD (bit 4) on an AMX host; compacted 2480 → 2496 (align) + 64 → 2560 + 8192 = 0x2a00 (derived)
    e(2, 0x100, 0x240, 0),
    e(5, 0x40, 0x440, 0),
    e(6, 0x200, 0x480, 0),
    e(7, 0x400, 0x680, 0),
    e(9, 0x8, 0xa80, 0),
    e(11, 0x10, 0, 1),
    e(12, 0x18, 0, 1),
    e(17, 0x40, 0xac0, 2),
    e(18, 0x2000, 0xb00, 2),
  ],
  kvmXcompGuestSupp: '0x602e7',
  kvmXsave2Size: 0x2b00,
};

/**
 * An older Intel host without AVX-512: Broadwell ("Broadwell-based (have only AVX-256)",
 * Tyler Stachecki's report, Message-ID ZRMHY83W/VPjYyhy@google.com). x87, SSE, AVX only; standard size 0x240 + 0x100 = 0x340 (derived). 0xD.1 EAX =
 * XSAVEOPT only (Intel SDM Vol. 1 §13.2; KVM's code confirms only XSAVEC and XSAVES).
 */
export const INTEL_BROADWELL: HostCapabilityDump = {
  format: 1,
  name: 'intel-broadwell',
  vendor: 'GenuineIntel',
  source: 'the 2023 KVM_SET_XSAVE report (Broadwell: AVX only); YMM offset QEMU XSAVE_AVX_OFFSET; sizes derived',
  cpuid0d: [e(0, 0x7, 0x340, 0x340), e(1, 0x1, 0, 0), e(2, 0x100, 0x240, 0)],
  kvmXcompGuestSupp: '0x7',
  kvmXsave2Size: 4096,
};

export const EXAMPLE_HOSTS: readonly HostCapabilityDump[] = [
  INTEL_SPR_AMX,
  INTEL_SKYLAKE_SP,
  INTEL_BROADWELL,
  AMD_EPYC_MEASURED,
  AMD_EPYC_PKRU,
  AMD_EPYC_MILAN,
];
