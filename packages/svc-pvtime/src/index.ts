import { AbiError, defineService, packageVersion, smcccReturn, type CallSignature, type ResultDecl, type ServicePlugin, type StateValue, type Vm } from '@plugvisor/core';
import { smcccArchHooks } from '@plugvisor/svc-smccc-arch';

/**
 * Arm paravirtualised stolen time (DEN0057) as KVM/arm64 serves it (Linux
 * arch/arm64/kvm/pvtime.c, arch/arm64/kvm/hypercalls.c):
 *   PV_TIME_FEATURES 0xC5000020 (x1 u32): 0 for PV_TIME_FEATURES/PV_TIME_ST when this vCPU has a
 *                    stolen-time structure, else −1
 *   PV_TIME_ST       0xC5000021: zero-initialises the vCPU's 64-byte structure and returns its
 *                    guest-physical address; −1 if the VMM set none
 *   SMCCC_ARCH_FEATURES(PV_TIME_FEATURES) → 0 while the feature is on (through svc-smccc-arch's hook)
 * Gated by KVM_REG_ARM_STD_HYP_BMAP bit 0, on by default (legacy-opt-out). The VMM places each
 * vCPU's structure with `setStolenTimeBase` (KVM's KVM_ARM_VCPU_PVTIME_IPA device attribute, with
 * its errors). Plugvisor's vCPUs are never preempted behind the guest's back by a host scheduler
 * it does not control, so the stolen-time counter stays 0; the structure's revision and
 * attributes are 0, as KVM writes them.
 */

export const KVM_REG_ARM_STD_HYP_BMAP = 0x6030_0000_0016_0001n;
export const PV_TIME_FEATURES = 0xc500_0020;
export const PV_TIME_ST = 0xc500_0021;
const STRUCT_SIZE = 64;

/** smccc_set_retval(vcpu, val, 0, 0, 0): both calls write x0..x3. */
const SMCCC_RESULTS: readonly ResultDecl[] = [{ reg: 0, name: 'ret' }, { reg: 1 }, { reg: 2 }, { reg: 3 }];

/**
 * PV_TIME_FEATURES(pv_func_id): a u32 (`u32 feature = smccc_get_arg1()`, kvm_hypercall_pv_features).
 * Discovery, truthful but with nothing it must answer: KVM says 0 for PV_TIME_FEATURES/PV_TIME_ST
 * only on a vCPU whose structure the VMM placed, so a VM with the calls exposed may still hear −1.
 */
const FEATURES_SIGNATURE: CallSignature = {
  args: [{ name: 'pv_func_id', reg: 1, width: 'u32', kind: 'enum', values: [PV_TIME_FEATURES, PV_TIME_ST] }],
  results: SMCCC_RESULTS,
  discovery: { kind: 'query', arg: 1 },
};

/** PV_TIME_ST takes no argument: x0 = the structure's IPA (u64), or −1 without one (kvm_init_stolen_time). */
const ST_SIGNATURE: CallSignature = { results: [{ reg: 0, name: 'ipa' }, { reg: 1 }, { reg: 2 }, { reg: 3 }] };
const ZERO_STRUCT = new Uint8Array(STRUCT_SIZE);

export interface PvTimeState {
  /** Per-vCPU structure address (guest-physical), or null/absent while the VMM set none. */
  bases: Array<bigint | null>;
}

const NAME = '@plugvisor/svc-pvtime';

/**
 * The VMM places vCPU `vcpu`'s stolen-time structure at `ipa`, as KVM_SET_DEVICE_ATTR
 * (KVM_ARM_VCPU_PVTIME_CTRL, KVM_ARM_VCPU_PVTIME_IPA) does, in Linux's order
 * (arch/arm64/kvm/pvtime.c, kvm_arm_pvtime_set_attr): EINVAL unless 64-byte aligned, then EEXIST
 * if already set, then EINVAL unless inside guest RAM (the memslot check comes last). So a second
 * address outside RAM is EEXIST, and a second unaligned one EINVAL.
 */
export function setStolenTimeBase(vm: Vm, vcpu: number, ipa: bigint): void {
  const state = vm.stateOf<PvTimeState>(NAME);
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= vm.machine.vcpuCount) throw new AbiError('EINVAL', `no vCPU ${vcpu}`);
  while (state.bases.length <= vcpu) state.bases.push(null);
  if (ipa % BigInt(STRUCT_SIZE) !== 0n) throw new AbiError('EINVAL', `stolen-time IPA 0x${ipa.toString(16)} is not 64-byte aligned`);
  if (state.bases[vcpu] != null) throw new AbiError('EEXIST', `vCPU ${vcpu} already has a stolen-time structure`);
  if (!vm.machine.memory.contains(ipa, STRUCT_SIZE)) throw new AbiError('EINVAL', `stolen-time IPA 0x${ipa.toString(16)} is not in guest RAM`);
  state.bases[vcpu] = ipa;
}

export function createPvTimeService(): ServicePlugin<PvTimeState> {
  return defineService<PvTimeState>({
    name: NAME,
    version: packageVersion(import.meta.url),
    description: 'Arm PV stolen time (KVM/arm64 guest ABI)',
    surface: {
      features: [
        {
          name: 'pv-time',
          default: 'legacy-opt-out',
          description: 'PV stolen time: PV_TIME_FEATURES and PV_TIME_ST (KVM exposed them before 5.19)',
          legacy:
            'KVM answered PV_TIME_FEATURES and PV_TIME_ST for every arm64 guest from Linux 5.5 until 5.19 added KVM_REG_ARM_STD_HYP_BMAP, whose bit 0 is set by default (arch/arm64/kvm/pvtime.c, hypercalls.c)',
          register: { id: KVM_REG_ARM_STD_HYP_BMAP, name: 'KVM_REG_ARM_STD_HYP_BMAP', bit: 0 },
        },
      ],
      calls: [
        { name: 'PV_TIME_FEATURES', conduit: 'smccc', id: PV_TIME_FEATURES, feature: 'pv-time', signature: FEATURES_SIGNATURE },
        { name: 'PV_TIME_ST', conduit: 'smccc', id: PV_TIME_ST, feature: 'pv-time', signature: ST_SIGNATURE },
      ],
      state: { id: 'pvtime-bases', version: 1 },
    },
    state: {
      create: () => ({ bases: [] }),
      save: (s): StateValue => s.bases,
      load(data) {
        if (!Array.isArray(data) || !data.every((b) => b === null || (typeof b === 'bigint' && b >= 0n && b < 1n << 64n && b % 64n === 0n))) {
          throw new AbiError('EINVAL', 'pvtime-bases state is not a list of 64-byte aligned addresses');
        }
        return { bases: [...(data as Array<bigint | null>)] };
      },
    },
    handlers: {
      PV_TIME_FEATURES(v, b) {
        const arg = v.regs.lo(1);
        const has = b.state.bases[v.index] != null;
        smcccReturn(v.regs, has && (arg === PV_TIME_FEATURES || arg === PV_TIME_ST) ? 0 : -1);
      },
      PV_TIME_ST(v, b) {
        const base = b.state.bases[v.index];
        if (base == null) return smcccReturn(v.regs, -1);
        v.machine.memory.write(base, ZERO_STRUCT); // revision 0, attributes 0, stolen time 0
        smcccReturn(v.regs, 0);
        v.regs.set(0, base);
      },
    },
    apply(hv, self) {
      smcccArchHooks(hv).features.for(PV_TIME_FEATURES).tap(self.name, (vm) => (vm.abi.isEnabled('pv-time') ? 0 : undefined));
    },
  });
}

export default createPvTimeService;
