/*
 * SOC_ID probe guest: Linux's discovery sequence for SMCCC_ARCH_SOC_ID, step by step, over HVC
 * (the conduit the device tree's PSCI node names on this board), printing every answer.
 *
 *   drivers/firmware/psci/psci.c  psci_probe / psci_init_smccc:
 *       PSCI_VERSION; at PSCI >= 1.0, PSCI_FEATURES(SMCCC_VERSION); unless that is
 *       NOT_SUPPORTED, SMCCC_VERSION, taken only if >= 1.1 (else SMCCC 1.0)
 *   drivers/firmware/smccc/smccc.c  arm_smccc_version_init:
 *       at SMCCC >= 1.2, SMCCC_ARCH_FEATURES(SOC_ID); if (s32)x0 >= 0, SOC_ID(0) and SOC_ID(1)
 *   drivers/firmware/smccc/soc_id.c  smccc_soc_init / smccc_soc_name_init:
 *       below 1.2 nothing; version NOT_SUPPORTED: "not implemented"; negative: invalid;
 *       else "ID = jep106:BBII:SSSS Revision = 0xRRRRRRRR", then SOC_ID64 (0xC0000002) with
 *       x1 = 2 through the SMCCC 1.2 register set, a name in x1..x17 if (u32)x0 == 0
 *
 * Output lines (hexadecimal, the tests parse them):
 *   psci_version <x0>
 *   psci_features_smccc_version <x0>
 *   smccc_version <x0>                 (as the guest uses it: 0x10000 when not taken)
 *   arch_features_soc_id <x0>          (only at SMCCC >= 1.2)
 *   soc_id_version <x0> / soc_id_revision <x0>
 *   soc_id_name <x0> changed <mask>    (SOC_ID64 name call: x0 and which of x1..x17 changed)
 *   soc: <what Linux would log>, soc_name: reported / none
 *   done
 */
#include "guest.h"

typedef int s32;

#define PSCI_FEATURES          0x8400000Au
#define SMCCC_ARCH_FEATURES    0x80000001u
#define SMCCC_ARCH_SOC_ID      0x80000002u
#define SMCCC_ARCH_SOC_ID64    0xC0000002u
#define SMCCC_VERSION_1_0      0x10000u
#define SMCCC_VERSION_1_1      0x10001u
#define SMCCC_VERSION_1_2      0x10002u
#define NOT_SUPPORTED          (-1)

static s64 call(u32 fid, u64 a1)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, 0, 0, &r);
    return (s64)r.a0;
}

int main(u64 x0)
{
    (void)x0;
    u32 smccc_version = SMCCC_VERSION_1_0;
    s32 soc_version = NOT_SUPPORTED, soc_revision = NOT_SUPPORTED;

    u32 psci = (u32)call(PSCI_VERSION, 0);
    printf("psci_version %x\n", psci);
    if ((psci >> 16) >= 1) {
        s32 feature = (s32)call(PSCI_FEATURES, SMCCC_VERSION);
        printf("psci_features_smccc_version %x\n", (u32)feature);
        if (feature != NOT_SUPPORTED) {
            s32 ret = (s32)call(SMCCC_VERSION, 0);
            if (ret >= (s32)SMCCC_VERSION_1_1)
                smccc_version = (u32)ret;
        }
    }
    printf("smccc_version %x\n", smccc_version);

    if (smccc_version >= SMCCC_VERSION_1_2) {
        s32 has = (s32)call(SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID);
        printf("arch_features_soc_id %x\n", (u32)has);
        if (has >= 0) {
            soc_version = (s32)call(SMCCC_ARCH_SOC_ID, 0);
            soc_revision = (s32)call(SMCCC_ARCH_SOC_ID, 1);
            printf("soc_id_version %x\n", (u32)soc_version);
            printf("soc_id_revision %x\n", (u32)soc_revision);
        }
    }

    if (smccc_version < SMCCC_VERSION_1_2) {
        printf("soc: SMCCC below 1.2, SOC_ID not looked for\n");
    } else if (soc_version == NOT_SUPPORTED) {
        printf("soc: ARCH_SOC_ID not implemented, skipping\n");
    } else if (soc_version < 0 || soc_revision < 0) {
        printf("soc: invalid SoC version %x revision %x\n", (u32)soc_version, (u32)soc_revision);
    } else {
        printf("soc: ID = jep106:%02x%02x:%04x Revision = 0x%08x\n", (soc_version >> 24) & 0x7f, (soc_version >> 16) & 0x7f,
               soc_version & 0xffff, (u32)soc_revision);
        /* SMCCC 1.6's name, through the 1.2 register set (x0..x17), as smccc_soc_name_init. */
        struct smccc_regs r;
        for (int i = 0; i < 18; i++)
            r.x[i] = 0x5a5a000000000000UL | (u64)i;
        r.x[0] = SMCCC_ARCH_SOC_ID64;
        r.x[1] = 2;
        smccc_hvc_regs(&r);
        u32 changed = 0;
        for (int i = 1; i < 18; i++)
            if (r.x[i] != (0x5a5a000000000000UL | (u64)i) && !(i == 1 && r.x[i] == 2))
                changed |= 1u << i;
        printf("soc_id_name %x changed %x\n", (u32)r.x[0], changed);
        if ((u32)r.x[0] == 0)
            printf("soc_name: reported\n");
        else
            printf("soc_name: none\n");
    }
    printf("done\n");
    psci_system_off();
}
