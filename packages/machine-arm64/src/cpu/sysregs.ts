import type { SysReg } from '../ffi/unicorn.js';

const r = (name: string, op0: number, op1: number, crn: number, crm: number, op2: number): SysReg =>
  Object.freeze({ name, op0, op1, crn, crm, op2 });

/** System registers by MRS/MSR encoding (Arm ARM, "AArch64 System Register Descriptions"). */
export const Sys = Object.freeze({
  SCTLR_EL1: r('SCTLR_EL1', 3, 0, 1, 0, 0),
  CPACR_EL1: r('CPACR_EL1', 3, 0, 1, 0, 2),
  TTBR0_EL1: r('TTBR0_EL1', 3, 0, 2, 0, 0),
  TTBR1_EL1: r('TTBR1_EL1', 3, 0, 2, 0, 1),
  TCR_EL1: r('TCR_EL1', 3, 0, 2, 0, 2),
  SPSR_EL1: r('SPSR_EL1', 3, 0, 4, 0, 0),
  ELR_EL1: r('ELR_EL1', 3, 0, 4, 0, 1),
  AFSR0_EL1: r('AFSR0_EL1', 3, 0, 5, 1, 0),
  AFSR1_EL1: r('AFSR1_EL1', 3, 0, 5, 1, 1),
  ESR_EL1: r('ESR_EL1', 3, 0, 5, 2, 0),
  FAR_EL1: r('FAR_EL1', 3, 0, 6, 0, 0),
  PAR_EL1: r('PAR_EL1', 3, 0, 7, 4, 0),
  MAIR_EL1: r('MAIR_EL1', 3, 0, 10, 2, 0),
  AMAIR_EL1: r('AMAIR_EL1', 3, 0, 10, 3, 0),
  VBAR_EL1: r('VBAR_EL1', 3, 0, 12, 0, 0),
  CONTEXTIDR_EL1: r('CONTEXTIDR_EL1', 3, 0, 13, 0, 1),
  TPIDR_EL1: r('TPIDR_EL1', 3, 0, 13, 0, 4),
  CNTKCTL_EL1: r('CNTKCTL_EL1', 3, 0, 14, 1, 0),
  CSSELR_EL1: r('CSSELR_EL1', 3, 2, 0, 0, 0),
  TPIDR_EL0: r('TPIDR_EL0', 3, 3, 13, 0, 2),
  TPIDRRO_EL0: r('TPIDRRO_EL0', 3, 3, 13, 0, 3),
  CNTP_CTL_EL0: r('CNTP_CTL_EL0', 3, 3, 14, 2, 1),
  CNTP_CVAL_EL0: r('CNTP_CVAL_EL0', 3, 3, 14, 2, 2),
  CNTV_CTL_EL0: r('CNTV_CTL_EL0', 3, 3, 14, 3, 1),
  CNTV_CVAL_EL0: r('CNTV_CVAL_EL0', 3, 3, 14, 3, 2),
  MDSCR_EL1: r('MDSCR_EL1', 2, 0, 0, 2, 2),
  CNTFRQ_EL0: r('CNTFRQ_EL0', 3, 3, 14, 0, 0),
  APIAKEYLO_EL1: r('APIAKEYLO_EL1', 3, 0, 2, 1, 0),
  APIAKEYHI_EL1: r('APIAKEYHI_EL1', 3, 0, 2, 1, 1),
  APIBKEYLO_EL1: r('APIBKEYLO_EL1', 3, 0, 2, 1, 2),
  APIBKEYHI_EL1: r('APIBKEYHI_EL1', 3, 0, 2, 1, 3),
  APDAKEYLO_EL1: r('APDAKEYLO_EL1', 3, 0, 2, 2, 0),
  APDAKEYHI_EL1: r('APDAKEYHI_EL1', 3, 0, 2, 2, 1),
  APDBKEYLO_EL1: r('APDBKEYLO_EL1', 3, 0, 2, 2, 2),
  APDBKEYHI_EL1: r('APDBKEYHI_EL1', 3, 0, 2, 2, 3),
  APGAKEYLO_EL1: r('APGAKEYLO_EL1', 3, 0, 2, 3, 0),
  APGAKEYHI_EL1: r('APGAKEYHI_EL1', 3, 0, 2, 3, 1),
  // Hypervisor-owned (EL2/EL3) registers: never saved, set up by the vCPU at creation.
  VMPIDR_EL2: r('VMPIDR_EL2', 3, 4, 0, 0, 5),
  HCR_EL2: r('HCR_EL2', 3, 4, 1, 1, 0),
  CNTHCTL_EL2: r('CNTHCTL_EL2', 3, 4, 14, 1, 0),
  CNTVOFF_EL2: r('CNTVOFF_EL2', 3, 4, 14, 0, 3),
  SCR_EL3: r('SCR_EL3', 3, 6, 1, 1, 0),
  SPSR_EL2: r('SPSR_EL2', 3, 4, 4, 0, 0),
  ESR_EL2: r('ESR_EL2', 3, 4, 5, 2, 0),
  SPSR_EL3: r('SPSR_EL3', 3, 6, 4, 0, 0),
});

/**
 * The EL1/EL0 system registers a snapshot carries, in blob order. Appending is a compatible
 * change (older blobs simply lack the tail); reordering is not. SCTLR_EL1 is applied last by
 * the vCPU (see Vcpu.applyEntry), the rest in this order.
 */
export const SAVED_SYSREGS: readonly SysReg[] = Object.freeze([
  Sys.SCTLR_EL1,
  Sys.CPACR_EL1,
  Sys.TTBR0_EL1,
  Sys.TTBR1_EL1,
  Sys.TCR_EL1,
  Sys.SPSR_EL1,
  Sys.ELR_EL1,
  Sys.AFSR0_EL1,
  Sys.AFSR1_EL1,
  Sys.ESR_EL1,
  Sys.FAR_EL1,
  Sys.PAR_EL1,
  Sys.MAIR_EL1,
  Sys.AMAIR_EL1,
  Sys.VBAR_EL1,
  Sys.CONTEXTIDR_EL1,
  Sys.TPIDR_EL1,
  Sys.CNTKCTL_EL1,
  Sys.CSSELR_EL1,
  Sys.TPIDR_EL0,
  Sys.TPIDRRO_EL0,
  Sys.CNTP_CTL_EL0,
  Sys.CNTP_CVAL_EL0,
  Sys.CNTV_CTL_EL0,
  Sys.CNTV_CVAL_EL0,
  Sys.MDSCR_EL1,
  Sys.APIAKEYLO_EL1,
  Sys.APIAKEYHI_EL1,
  Sys.APIBKEYLO_EL1,
  Sys.APIBKEYHI_EL1,
  Sys.APDAKEYLO_EL1,
  Sys.APDAKEYHI_EL1,
  Sys.APDBKEYLO_EL1,
  Sys.APDBKEYHI_EL1,
  Sys.APGAKEYLO_EL1,
  Sys.APGAKEYHI_EL1,
]);

// ---- PSTATE bits -----------------------------------------------------------------------------
export const PSTATE_SP = 1;
export const PSTATE_EL_SHIFT = 2;
export const PSTATE_F = 1 << 6;
export const PSTATE_I = 1 << 7;
export const PSTATE_A = 1 << 8;
export const PSTATE_D = 1 << 9;
export const PSTATE_DAIF = PSTATE_D | PSTATE_A | PSTATE_I | PSTATE_F;
export const PSTATE_IL = 1 << 20;
export const PSTATE_SS = 1 << 21;
export const PSTATE_PAN = 1 << 22;
export const PSTATE_UAO = 1 << 23;
export const PSTATE_BTYPE = 3 << 10;
export const PSTATE_SSBS = 1 << 12;
/** EL1h: EL1 using SP_EL1. */
export const MODE_EL1H = (1 << PSTATE_EL_SHIFT) | PSTATE_SP;
export const MODE_EL3H = (3 << PSTATE_EL_SHIFT) | PSTATE_SP;

export const SCTLR_M = 1n;
/** SCTLR_EL1.EE (bit 25): data accesses and translation table walks at EL1 are big-endian. */
export const SCTLR_EE = 1n << 25n;
export const SCTLR_SPAN = 1n << 23n;
export const SCTLR_DSSBS = 1n << 44n;

// SCR_EL3 / HCR_EL2 bits the vCPU sets (see Vcpu.setupHypervisorState)
export const SCR_NS = 1n << 0n;
export const SCR_HCE = 1n << 8n;
export const SCR_RW = 1n << 10n;
export const SCR_APK = 1n << 16n;
export const SCR_API = 1n << 17n;
/** HCR_EL2.VM: stage 2 translation for EL1&0 (set only while guest pages are removed: memory/holes.ts). */
export const HCR_VM = 1n;
export const HCR_IMO = 1n << 4n;
export const HCR_VI = 1n << 7n;
export const HCR_TID3 = 1n << 18n;
export const HCR_TPU = 1n << 24n;
export const HCR_RW = 1n << 31n;
export const HCR_APK = 1n << 40n;
export const HCR_API = 1n << 41n;
