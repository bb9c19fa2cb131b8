import { defineService, defineServiceFactory, packageVersion, smcccReturn, type CallSignature, type ResultDecl, type ServicePlugin, type VcpuContext } from '@plugvisor/core';
import { smcccArchHooks } from '@plugvisor/svc-smccc-arch';

/**
 * SMCCC_ARCH_SOC_ID (Arm DEN0028 "SMC Calling Convention" 1.2, section "SMCCC_ARCH_SOC_ID"):
 * an SMC32 call of the Arm architecture service (owner 0) that tells the guest which SoC it runs
 * on, so a guest's drivers and errata code can tell SoCs apart without firmware tables.
 *
 *   x1 = SoC_ID_type (w1; the upper half of an SMC32 argument is ignored)
 *     0: SoC_ID version  → x0 = bit 31 zero | JEP-106 bank (continuation count) in 30:24 |
 *                          JEP-106 identification code with its odd parity bit in 23:16 |
 *                          implementation-defined SoC id in 15:0
 *     1: SoC_ID revision → x0 = bit 31 zero | implementation-defined revision in 30:0
 *     other              → x0 = INVALID_PARAMETER (−3): type 2 (the SoC name, SMCCC 1.6) is an
 *                          SMC64 call (0xC0000002, Linux ARM_SMCCC_ARCH_SOC_ID64), not this one;
 *                          Trusted Firmware-A answers every type but 0 and 1 the same way
 *                          (services/arm_arch_svc/arm_arch_svc_setup.c, smccc_arch_id).
 *
 * Discovery goes through svc-smccc-arch: SMCCC_ARCH_FEATURES(0x80000002) answers 0 while the
 * VM has `soc-id` on (this package taps `smcccArchHooks(hv).features.for(SOC_ID)`), −1 otherwise.
 * A guest following Linux (drivers/firmware/smccc/smccc.c, arm_smccc_version_init) asks that only
 * when SMCCC_VERSION says 1.2 or later, so a VM needs `--version smccc=1.2` as well for Linux to
 * find the SoC (see README, "Why SMCCC 1.2 is not enforced").
 */

export const SMCCC_ARCH_SOC_ID = 0x8000_0002;
export const SOC_ID_VERSION = 0;
export const SOC_ID_REVISION = 1;
/** SoC_ID_type 2 (the SoC name) exists only as an SMC64 call (0xC0000002) from SMCCC 1.6. */
export const SOC_ID_NAME = 2;

const INVALID_PARAMETER = -3; // SMCCC's, include/linux/arm-smccc.h SMCCC_RET_INVALID_PARAMETER

export interface SocIdOptions {
  /** JEP-106 bank: the number of 0x7F continuation codes before the manufacturer's id (0..127). Default 0. */
  readonly jep106Bank?: number;
  /** JEP-106 identification code within its bank, without the parity bit (0..127). Default 0. */
  readonly jep106Id?: number;
  /** Implementation-defined SoC id (0..0xffff). Default 0. */
  readonly socId?: number;
  /** Implementation-defined SoC revision (0..0x7fffffff). Default 0. */
  readonly revision?: number;
}

/** The JEP-106 id byte: the 7-bit code with bit 7 set when needed to make the number of ones odd (JEDEC JEP106). */
export function jep106IdByte(code: number): number {
  let ones = 0;
  for (let b = code & 0x7f; b; b >>= 1) ones += b & 1;
  return (code & 0x7f) | (ones % 2 === 0 ? 0x80 : 0);
}

/** SOC_ID(0)'s answer for these options (bit 31 always zero: a non-negative int32). */
export function socIdVersion(o: SocIdOptions = {}): number {
  return (((o.jep106Bank ?? 0) & 0x7f) << 24) | (jep106IdByte(o.jep106Id ?? 0) << 16) | ((o.socId ?? 0) & 0xffff);
}

const FEATURE = 'soc-id';
const NAME = '@plugvisor/svc-soc-id';

/** smcccReturn writes x0..x3 (x1..x3 = 0), as every SMCCC answer of the KVM-style services here. */
const RESULTS: readonly ResultDecl[] = [{ reg: 0, name: 'ret' }, { reg: 1 }, { reg: 2 }, { reg: 3 }];

const SOC_ID_SIGNATURE: CallSignature = {
  args: [{ name: 'soc_id_type', reg: 1, width: 'u32', kind: 'enum', values: [SOC_ID_VERSION, SOC_ID_REVISION, SOC_ID_NAME] }],
  results: RESULTS,
};

function checkRange(key: keyof SocIdOptions, value: number | undefined, max: number): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new RangeError(`${NAME}: option '${key}' is ${value}; it takes an integer in 0..${max}`);
}

export function createSocIdService(options: SocIdOptions = {}): ServicePlugin<undefined> {
  checkRange('jep106Bank', options.jep106Bank, 0x7f);
  checkRange('jep106Id', options.jep106Id, 0x7f);
  checkRange('socId', options.socId, 0xffff);
  checkRange('revision', options.revision, 0x7fff_ffff);
  const version = socIdVersion(options);
  const revision = options.revision ?? 0;

  return defineService<undefined>({
    name: NAME,
    version: packageVersion(import.meta.url),
    description: 'Arm SMCCC_ARCH_SOC_ID (SMCCC 1.2): SoC identity and revision',
    requires: ['@plugvisor/svc-smccc-arch'],
    surface: {
      features: [
        {
          name: FEATURE,
          default: 'opt-in',
          description: 'SMCCC_ARCH_SOC_ID: the SoC version (JEP-106 identity) and revision; discoverable by Linux at --version smccc=1.2',
        },
      ],
      calls: [{ name: 'SMCCC_ARCH_SOC_ID', conduit: 'smccc', id: SMCCC_ARCH_SOC_ID, feature: FEATURE, signature: SOC_ID_SIGNATURE }],
    },
    handlers: {
      SMCCC_ARCH_SOC_ID(vcpu: VcpuContext) {
        const type = vcpu.regs.lo(1);
        smcccReturn(vcpu.regs, type === SOC_ID_VERSION ? version : type === SOC_ID_REVISION ? revision : INVALID_PARAMETER);
      },
    },
    apply(hv, self) {
      // SMCCC_ARCH_FEATURES(SOC_ID): 0 ("implemented") while the VM has the feature on.
      smcccArchHooks(hv).features.for(SMCCC_ARCH_SOC_ID).tap(self.name, (vm) => (vm.abi.isEnabled(FEATURE) ? 0 : undefined));
    },
  });
}

/** What a build file loads: `createSocIdService` with its options declared. */
export default defineServiceFactory<SocIdOptions, undefined>({
  options: {
    jep106Bank: { type: 'integer', min: 0, max: 0x7f, description: 'JEP-106 bank (continuation-code count) of the SoC manufacturer, SOC_ID(0) bits 30:24 (default 0)' },
    jep106Id: { type: 'integer', min: 0, max: 0x7f, description: 'JEP-106 identification code without parity; the odd parity bit is added, SOC_ID(0) bits 23:16 (default 0)' },
    socId: { type: 'integer', min: 0, max: 0xffff, description: 'implementation-defined SoC id, SOC_ID(0) bits 15:0 (default 0)' },
    revision: { type: 'integer', min: 0, max: 0x7fff_ffff, description: 'implementation-defined SoC revision, SOC_ID(1) (default 0)' },
  },
  create: createSocIdService,
});
