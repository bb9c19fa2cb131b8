import { defineService, packageVersion, smcccReturn, type CallSignature, type ServicePlugin } from '@plugvisor/core';

/**
 * The KVM vendor-hypervisor service base (SMCCC owner 6; Linux arch/arm64/kvm/hypercalls.c,
 * drivers/firmware/smccc/kvm_guest.c):
 *   CALL_UID      0x8600FF01 → KVM's UID 28b46fb6-2ec5-11e9-a9ca-4b564d003a74 as four words
 *   KVM_FEATURES  0x86000000 → the bitmap of available vendor functions: x0 = functions 0–31,
 *                             x1 = 32–63, x2 = 64–95, x3 = 96–127
 * Both gated by KVM_REG_ARM_VENDOR_HYP_BMAP bit 0 (FUNC_FEAT), on by default.
 *
 * How another vendor service adds its function without editing this one: it declares a
 * feature whose firmware register bit is its function number in KVM_REG_ARM_VENDOR_HYP_BMAP
 * (functions 0–63) or KVM_REG_ARM_VENDOR_HYP_BMAP_2 (functions 64–127, bit = function − 64),
 * exactly as KVM numbers them. KVM_FEATURES answers from the VM's values of those registers,
 * so the function is advertised exactly while the VM has it enabled (svc-ptp does this, bit 1).
 */

export const KVM_REG_ARM_VENDOR_HYP_BMAP = 0x6030_0000_0016_0002n;
export const KVM_REG_ARM_VENDOR_HYP_BMAP_2 = 0x6030_0000_0016_0003n;
export const VENDOR_HYP_CALL_UID = 0x8600_ff01;
export const VENDOR_HYP_KVM_FEATURES = 0x8600_0000;
export const KVM_UID_WORDS = Object.freeze([0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d]);

/** CALL_UID: no argument; the UID in x0..x3. */
const CALL_UID_SIGNATURE: CallSignature = {
  results: [
    { reg: 0, name: 'uid0' },
    { reg: 1, name: 'uid1' },
    { reg: 2, name: 'uid2' },
    { reg: 3, name: 'uid3' },
  ],
};

/**
 * KVM_FEATURES: no argument; bit n of x0..x3 (32 bits each) says vendor function
 * 0x86000000 + n is there. Discovery: the bitmap must match what the VM exposes, bit for bit.
 */
const FEATURES_SIGNATURE: CallSignature = {
  results: [
    { reg: 0, name: 'functions_0_31' },
    { reg: 1, name: 'functions_32_63' },
    { reg: 2, name: 'functions_64_95' },
    { reg: 3, name: 'functions_96_127' },
  ],
  discovery: { kind: 'bitmap', base: VENDOR_HYP_KVM_FEATURES, words: [0, 1, 2, 3] },
};

export function createKvmVendorService(): ServicePlugin<undefined> {
  return defineService<undefined>({
    name: '@plugvisor/svc-kvm-vendor',
    version: packageVersion(import.meta.url),
    description: 'KVM vendor hypervisor service: CALL_UID and KVM_FEATURES',
    surface: {
      features: [
        {
          name: 'kvm-vendor',
          default: 'legacy-opt-out',
          description: 'KVM vendor service discovery: CALL_UID and KVM_FEATURES (FUNC_FEAT)',
          legacy:
            'KVM answered the vendor CALL_UID and KVM_FEATURES for every arm64 guest (added with the PTP service) before Linux 5.19 added KVM_REG_ARM_VENDOR_HYP_BMAP, whose FUNC_FEAT bit is set by default (arch/arm64/kvm/hypercalls.c)',
          register: { id: KVM_REG_ARM_VENDOR_HYP_BMAP, name: 'KVM_REG_ARM_VENDOR_HYP_BMAP', bit: 0 },
        },
      ],
      calls: [
        { name: 'KVM_VENDOR_CALL_UID', conduit: 'smccc', id: VENDOR_HYP_CALL_UID, feature: 'kvm-vendor', signature: CALL_UID_SIGNATURE },
        { name: 'KVM_VENDOR_FEATURES', conduit: 'smccc', id: VENDOR_HYP_KVM_FEATURES, feature: 'kvm-vendor', signature: FEATURES_SIGNATURE },
      ],
    },
    handlers: {
      KVM_VENDOR_CALL_UID: (v) => smcccReturn(v.regs, KVM_UID_WORDS[0]!, KVM_UID_WORDS[1]!, KVM_UID_WORDS[2]!, KVM_UID_WORDS[3]!),
      KVM_VENDOR_FEATURES(v, b) {
        // A register the build does not have reads as no functions.
        const abi = b.vm.abi;
        const has = (id: bigint) => abi.catalog.registerById.has(id);
        const bmap = has(KVM_REG_ARM_VENDOR_HYP_BMAP) ? abi.getOneReg(KVM_REG_ARM_VENDOR_HYP_BMAP) : 0n;
        const bmap2 = has(KVM_REG_ARM_VENDOR_HYP_BMAP_2) ? abi.getOneReg(KVM_REG_ARM_VENDOR_HYP_BMAP_2) : 0n;
        const r = v.regs;
        r.setU32(0, Number(bmap & 0xffff_ffffn));
        r.setU32(1, Number((bmap >> 32n) & 0xffff_ffffn));
        r.setU32(2, Number(bmap2 & 0xffff_ffffn));
        r.setU32(3, Number((bmap2 >> 32n) & 0xffff_ffffn));
      },
    },
  });
}

export default createKvmVendorService;
