import { capabilityOf, defineService, packageVersion, smcccReturn, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { KVM_REG_ARM_VENDOR_HYP_BMAP } from '@plugvisor/svc-kvm-vendor';

/**
 * KVM's PTP vendor hypercall, what Linux's ptp_kvm driver uses for host/guest clock
 * cross-timestamps (Linux Documentation/virt/kvm/arm/ptp_kvm.rst, arch/arm64/kvm/hypercalls.c
 * kvm_ptp_get_time):
 *   0x86000001, x1 (u32) = counter: 0 virtual, 1 physical
 *   → x0:x1 = host wall clock (CLOCK_REALTIME) ns, upper:lower 32 bits;
 *     x2:x3 = the guest's counter (CNTVCT_EL0 / CNTPCT_EL0) at that instant, upper:lower;
 *   unknown counter → −1.
 * Vendor function 1: KVM_REG_ARM_VENDOR_HYP_BMAP bit 1, on by default. Needs the vendor base
 * (CALL_UID, KVM_FEATURES), which advertises it from that bit.
 */

export const VENDOR_HYP_KVM_PTP = 0x8600_0001;
export const KVM_PTP_VIRT_COUNTER = 0;
export const KVM_PTP_PHYS_COUNTER = 1;

/**
 * KVM_PTP(counter): the selector is a u32 (`u32 feature = smccc_get_arg1()`); the four result
 * registers are clock samples (kind `time`; an unknown selector answers −1, 0, 0, 0 instead).
 */
const PTP_SIGNATURE: CallSignature = {
  args: [{ name: 'counter', reg: 1, width: 'u32', kind: 'enum', values: [KVM_PTP_VIRT_COUNTER, KVM_PTP_PHYS_COUNTER] }],
  results: [
    { reg: 0, name: 'wall_clock_ns_high', kind: 'time' },
    { reg: 1, name: 'wall_clock_ns_low', kind: 'time' },
    { reg: 2, name: 'counter_high', kind: 'time' },
    { reg: 3, name: 'counter_low', kind: 'time' },
  ],
};

export function createPtpService(): ServicePlugin<undefined> {
  return defineService<undefined>({
    name: '@plugvisor/svc-ptp',
    version: packageVersion(import.meta.url),
    description: 'KVM PTP vendor hypercall (ptp_kvm)',
    requires: ['@plugvisor/svc-kvm-vendor'],
    surface: {
      features: [
        {
          name: 'kvm-ptp',
          default: 'legacy-opt-out',
          description: 'KVM PTP: host wall clock and guest counter sampled together (KVM exposed it to every guest before 5.19)',
          legacy:
            'KVM served the PTP call to every arm64 guest (ptp_kvm) before Linux 5.19 added KVM_REG_ARM_VENDOR_HYP_BMAP, whose PTP bit is set by default (arch/arm64/kvm/hypercalls.c kvm_ptp_get_time)',
          register: { id: KVM_REG_ARM_VENDOR_HYP_BMAP, name: 'KVM_REG_ARM_VENDOR_HYP_BMAP', bit: 1 },
        },
      ],
      calls: [{ name: 'KVM_PTP', conduit: 'smccc', id: VENDOR_HYP_KVM_PTP, feature: 'kvm-ptp', signature: PTP_SIGNATURE }],
    },
    handlers: {
      KVM_PTP(v) {
        const r = v.regs;
        const selector = r.lo(1);
        const sample =
          selector === KVM_PTP_VIRT_COUNTER || selector === KVM_PTP_PHYS_COUNTER
            ? capabilityOf(v.machine, 'counter-clock')?.sample(selector === KVM_PTP_VIRT_COUNTER ? 'virtual' : 'physical')
            : undefined;
        // unknown selector, or a machine without an architected counter (KVM: clocksource not the arch counter)
        if (!sample) return smcccReturn(r, -1);
        const ns = BigInt.asUintN(64, sample.wallClockNs);
        const cnt = BigInt.asUintN(64, sample.counter);
        r.setU32(0, Number(ns >> 32n));
        r.setU32(1, Number(ns & 0xffff_ffffn));
        r.setU32(2, Number(cnt >> 32n));
        r.setU32(3, Number(cnt & 0xffff_ffffn));
      },
    },
  });
}

export default createPtpService;
