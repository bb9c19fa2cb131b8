import { HookMap, SyncBailHook } from 'tapable';
import { defineService, packageVersion, pluginHooks, smcccReturn, type CallSignature, type Hypervisor, type ResultDecl, type ServicePlugin, type VcpuContext, type Vm } from '@plugvisor/core';

/**
 * The Arm SMCCC architecture calls (owner 0) as KVM/arm64 answers them
 * (Linux arch/arm64/kvm/hypercalls.c, arch/arm64/kvm/hyp/hyp-entry.S):
 *   SMCCC_VERSION        → the VM's `smccc` version: 0x10001 (SMCCC 1.1, KVM's and the default)
 *                          or 0x10002 (1.2) when its operator selected it
 *   SMCCC_ARCH_FEATURES  → per queried id: the WORKAROUND levels of an unaffected host, or what a
 *                          service tapped `smcccArchHooks(hv).features.for(id)` answers; else −1
 *   ARCH_WORKAROUND_1/2/3 via HVC → x0 = 0 (KVM's EL2 fast path; x1 ends up 0); via SMC → −1
 * and the three Spectre workaround firmware registers, reporting an unaffected host (Plugvisor
 * emulates the CPU; no Spectre exposure to mitigate), which accept any level not better than
 * that, as KVM's `kvm_arm_set_fw_reg` does.
 */

export const SMCCC_VERSION = 0x8000_0000;
export const SMCCC_ARCH_FEATURES = 0x8000_0001;
export const ARCH_WORKAROUND_1 = 0x8000_8000;
export const ARCH_WORKAROUND_2 = 0x8000_7fff;
export const ARCH_WORKAROUND_3 = 0x8000_3fff;
export const SMCCC_VERSION_1_1 = 0x1_0001;
export const SMCCC_VERSION_1_2 = 0x1_0002;

/**
 * The `smccc` version selector's values (Arm DEN0028, "SMC Calling Convention"; Linux
 * include/linux/arm-smccc.h ARM_SMCCC_VERSION_1_x). 1.1 is what KVM answers and the default.
 * 1.2 adds x4-x17 as argument/result registers of SMC64/HVC64 calls and SMCCC_ARCH_SOC_ID
 * (0x80000002), which Linux looks for only at 1.2 or later (drivers/firmware/smccc/smccc.c,
 * arm_smccc_version_init). 1.3 is not offered: at 1.3 a caller may set the SVE hint, bit 16 of
 * the function id (ARM_SMCCC_1_3_SVE_HINT; Linux's arch/arm64/kernel/smccc-call.S did with SVE),
 * which the callee must accept, and no router in this repository drops it yet — such a guest
 * would get NOT_SUPPORTED for every call.
 */
export const SMCCC_VERSIONS = Object.freeze([
  Object.freeze({ name: '1.1', value: SMCCC_VERSION_1_1 }),
  Object.freeze({ name: '1.2', value: SMCCC_VERSION_1_2 }),
]);

/** The version selector's name, as operators type it (`--version smccc=1.2`). */
export const SMCCC_SELECTOR = 'smccc';

export const KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1 = 0x6030_0000_0014_0001n;
export const KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2 = 0x6030_0000_0014_0002n;
export const KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3 = 0x6030_0000_0014_0003n;

/** ARM_SMCCC_HV_PV_TIME_FEATURES: KVM's ARCH_FEATURES answers it (0 while PV time is on; svc-pvtime taps the hook). */
const PV_TIME_FEATURES = 0xc500_0020;

const NOT_SUPPORTED = -1;
const NOT_REQUIRED = -2;
const WORKAROUND_RET_UNAFFECTED = 1;

/** smccc_set_retval(vcpu, val, 0, 0, 0): every answer from KVM's handler writes x0..x3. */
const SMCCC_RESULTS: readonly ResultDecl[] = [{ reg: 0, name: 'ret' }, { reg: 1 }, { reg: 2 }, { reg: 3 }];

/**
 * SMCCC_ARCH_FEATURES(arch_func_id): the id is a u32 (`u32 feature = smccc_get_arg1()`).
 * Discovery: x0 ≥ 0 says the call is there. WORKAROUND_1/3 answer 1 (unaffected, ≥ 0: must be
 * reported while exposed), PV_TIME_FEATURES 0 while PV time is on; WORKAROUND_2 answers
 * NOT_REQUIRED (−2) though it is callable, as KVM on an unaffected host, so it is not in
 * `mustAnswer`. SMCCC_VERSION and ARCH_FEATURES itself answer −1, as KVM.
 */
const ARCH_FEATURES_SIGNATURE: CallSignature = {
  args: [
    {
      name: 'arch_func_id',
      reg: 1,
      width: 'u32',
      kind: 'enum',
      values: [ARCH_WORKAROUND_1, ARCH_WORKAROUND_2, ARCH_WORKAROUND_3, PV_TIME_FEATURES, SMCCC_VERSION, SMCCC_ARCH_FEATURES],
    },
  ],
  results: SMCCC_RESULTS,
  discovery: { kind: 'query', arg: 1, mustAnswer: [ARCH_WORKAROUND_1, ARCH_WORKAROUND_3, PV_TIME_FEATURES] },
};

/**
 * The workaround calls take no argument. Via HVC, KVM answers them in hyp-entry.S's fast path:
 * x0 = 0 and x1 = 0 (its scratch register), x2/x3 untouched; via SMC they reach
 * kvm_smccc_call_handler, which denies them: x0 = −1, x1..x3 = 0. Hence x0..x3.
 */
const WORKAROUND_SIGNATURE: CallSignature = { results: SMCCC_RESULTS };

export interface SmcccArchHooks {
  /**
   * SMCCC_ARCH_FEATURES(id): the first tap returning a number answers for `id` (x0). A service
   * whose calls ARCH_FEATURES must advertise taps `.for(itsFunctionId)` and answers for the VM.
   */
  readonly features: HookMap<SyncBailHook<[Vm], number | undefined>>;
}

const createSmcccArchHooks = (): SmcccArchHooks => ({ features: new HookMap(() => new SyncBailHook<[Vm], number | undefined>(['vm'])) });

/**
 * Plugin-owned hooks, one set per build (webpack's getCompilationHooks pattern), kept in the
 * build's registry (`pluginHooks` of @plugvisor/core) rather than in this module: a package that
 * installed its own copy of svc-smccc-arch still taps the hooks the build's copy calls.
 */
export function smcccArchHooks(hv: Hypervisor): SmcccArchHooks {
  return pluginHooks(hv, '@plugvisor/svc-smccc-arch:hooks', createSmcccArchHooks);
}

const NAME = '@plugvisor/svc-smccc-arch';

export function createSmcccArchService(): ServicePlugin<undefined> {
  return defineService<undefined>({
    name: NAME,
    version: packageVersion(import.meta.url),
    description: 'Arm SMCCC 1.1/1.2 architecture calls and Spectre workaround discovery',
    surface: {
      features: [
        {
          name: 'smccc-arch',
          default: 'legacy-opt-out',
          description: 'SMCCC_VERSION, SMCCC_ARCH_FEATURES and the ARCH_WORKAROUND_1/2/3 calls (always answered by KVM)',
          legacy:
            'KVM has answered SMCCC_VERSION and SMCCC_ARCH_FEATURES for every arm64 guest since Linux 4.16 (the Spectre-v2 mitigation), and each workaround call since its mitigation landed; it has no control to hide them (arch/arm64/kvm/hypercalls.c kvm_smccc_default_allowed, and the SMCCC filter reserves the range)',
        },
      ],
      versions: [
        {
          name: SMCCC_SELECTOR,
          description: 'SMCCC version the guest sees in SMCCC_VERSION (KVM answers 1.1; 1.2 lets a spec-following guest look for SMCCC_ARCH_SOC_ID)',
          values: SMCCC_VERSIONS,
          default: '1.1',
        },
      ],
      calls: [
        { name: 'SMCCC_VERSION', conduit: 'smccc', id: SMCCC_VERSION, feature: 'smccc-arch', signature: { results: SMCCC_RESULTS } },
        { name: 'SMCCC_ARCH_FEATURES', conduit: 'smccc', id: SMCCC_ARCH_FEATURES, feature: 'smccc-arch', signature: ARCH_FEATURES_SIGNATURE },
        { name: 'SMCCC_ARCH_WORKAROUND_3', conduit: 'smccc', id: ARCH_WORKAROUND_3, feature: 'smccc-arch', signature: WORKAROUND_SIGNATURE },
        { name: 'SMCCC_ARCH_WORKAROUND_2', conduit: 'smccc', id: ARCH_WORKAROUND_2, feature: 'smccc-arch', signature: WORKAROUND_SIGNATURE },
        { name: 'SMCCC_ARCH_WORKAROUND_1', conduit: 'smccc', id: ARCH_WORKAROUND_1, feature: 'smccc-arch', signature: WORKAROUND_SIGNATURE },
      ],
      constants: [
        {
          id: KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1,
          name: 'KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1',
          description: 'Spectre-v2 level: NOT_REQUIRED (2); accepts NOT_AVAIL 0, AVAIL 1, NOT_REQUIRED 2',
          value: 2n,
          accepts: [0n, 1n, 2n],
        },
        {
          id: KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2,
          name: 'KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2',
          description: 'Spectre-v4 level: NOT_REQUIRED (3); accepts levels 0-3 and AVAIL|ENABLED (0x12)',
          value: 3n,
          accepts: [0n, 1n, 2n, 3n, 0x12n],
        },
        {
          id: KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3,
          name: 'KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3',
          description: 'Spectre-BHB level: NOT_REQUIRED (2); accepts NOT_AVAIL 0, AVAIL 1, NOT_REQUIRED 2',
          value: 2n,
          accepts: [0n, 1n, 2n],
        },
      ],
    },
    handlers: {
      SMCCC_VERSION: (vcpu, b) => smcccReturn(vcpu.regs, b.vm.abi.versionValue(SMCCC_SELECTOR)),
      SMCCC_ARCH_FEATURES(vcpu, b) {
        const queried = vcpu.regs.lo(1); // read as u32, as KVM does
        const answer = smcccArchHooks(b.vm.hv).features.get(queried)?.call(b.vm);
        smcccReturn(vcpu.regs, answer ?? NOT_SUPPORTED);
      },
      SMCCC_ARCH_WORKAROUND_1: workaroundCall,
      SMCCC_ARCH_WORKAROUND_2: workaroundCall,
      SMCCC_ARCH_WORKAROUND_3: workaroundCall,
    },
    apply(hv, self) {
      const features = smcccArchHooks(hv).features;
      features.for(ARCH_WORKAROUND_1).tap(self.name, () => WORKAROUND_RET_UNAFFECTED);
      features.for(ARCH_WORKAROUND_2).tap(self.name, () => NOT_REQUIRED);
      features.for(ARCH_WORKAROUND_3).tap(self.name, () => WORKAROUND_RET_UNAFFECTED);
    },
  });
}

/** KVM answers the workaround calls at EL2 for HVC (x0 = 0, x1 = 0); SMC gets NOT_SUPPORTED. */
function workaroundCall(vcpu: VcpuContext): void {
  const r = vcpu.regs;
  if (vcpu.viaSmc) return smcccReturn(r, NOT_SUPPORTED);
  r.setU32(0, 0);
  r.setU32(1, 0);
}

export default createSmcccArchService;
