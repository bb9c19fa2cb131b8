/*
 * Plugvisor's demo guest: probes the hypervisor the way Linux does, prints what it found, then
 * runs a two-vCPU workload full of hypercalls (the snapshot point falls somewhere inside it).
 * Only vCPU 0 prints, and only in sequence, so the transcript is the same however the vCPUs
 * were scheduled, and an interrupted-and-restored run prints exactly what an uninterrupted one does.
 */
#include "guest.h"

#define PSCI_FEATURES          0x8400000Au
#define PSCI_AFFINITY_INFO_64  0xC4000004u
#define PSCI_SYSTEM_RESET2_64  0xC4000012u
#define PSCI_SYSTEM_OFF2_64    0xC4000015u
#define SMCCC_ARCH_FEATURES    0x80000001u
#define ARCH_WORKAROUND_1      0x80008000u
#define ARCH_WORKAROUND_2      0x80007FFFu
#define ARCH_WORKAROUND_3      0x80003FFFu
#define TRNG_VERSION           0x84000050u
#define TRNG_FEATURES          0x84000051u
#define TRNG_GET_UUID          0x84000052u
#define TRNG_RND64             0xC4000053u
#define VENDOR_CALL_UID        0x8600FF01u
#define VENDOR_KVM_FEATURES    0x86000000u
#define VENDOR_KVM_PTP         0x86000001u
#define PV_TIME_FEATURES       0xC5000020u

static struct smccc_res call(u32 fid, u64 a1, u64 a2, u64 a3)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, a2, a3, &r);
    return r;
}

static const char *yes(s64 v) { return v == 0 ? "yes" : "no"; }

static void probe(void)
{
    /* PSCI first: its version tells whether PSCI_FEATURES exists (Linux psci_probe). */
    s64 psci = (s64)call(PSCI_VERSION, 0, 0, 0).a0;
    printf("PSCI: version %ld.%ld\n", psci >> 16, psci & 0xffff);
    if (psci >= 0x10000) {
        printf("PSCI: SYSTEM_RESET2 %s, SYSTEM_OFF2 %s, CPU_ON %s\n",
               yes((s64)call(PSCI_FEATURES, PSCI_SYSTEM_RESET2_64, 0, 0).a0),
               (s64)call(PSCI_FEATURES, PSCI_SYSTEM_OFF2_64, 0, 0).a0 > 0 ? "yes" : "no",
               yes((s64)call(PSCI_FEATURES, PSCI_CPU_ON_64, 0, 0).a0));
    }
    /* SMCCC 1.1 is discovered through PSCI_FEATURES(SMCCC_VERSION) (Linux psci_init_smccc). */
    s64 smccc = 0x10000;
    if (psci >= 0x10000 && (s64)call(PSCI_FEATURES, SMCCC_VERSION, 0, 0).a0 == 0)
        smccc = (s64)call(SMCCC_VERSION, 0, 0, 0).a0;
    printf("SMCCC: version %ld.%ld\n", smccc >> 16, smccc & 0xffff);
    if (smccc >= 0x10001) {
        printf("SMCCC: ARCH_WORKAROUND_1 %ld, _2 %ld, _3 %ld (1 = not affected, -2 = not required)\n",
               (s64)call(SMCCC_ARCH_FEATURES, ARCH_WORKAROUND_1, 0, 0).a0,
               (s64)call(SMCCC_ARCH_FEATURES, ARCH_WORKAROUND_2, 0, 0).a0,
               (s64)call(SMCCC_ARCH_FEATURES, ARCH_WORKAROUND_3, 0, 0).a0);
    }

    /* TRNG (Linux smccc_probe_trng / arch_get_random_seed_longs). */
    struct smccc_res r = call(TRNG_VERSION, 0, 0, 0);
    if ((s64)r.a0 < 0) {
        printf("TRNG: not present\n");
    } else {
        struct smccc_res u = call(TRNG_GET_UUID, 0, 0, 0);
        struct smccc_res rnd = call(TRNG_RND64, 128, 0, 0);
        printf("TRNG: version %lu.%lu, RND64 %s, uuid %08lx-%08lx-%08lx-%08lx, 128 random bits %s\n",
               r.a0 >> 16, r.a0 & 0xffff, yes((s64)call(TRNG_FEATURES, TRNG_RND64, 0, 0).a0),
               u.a0, u.a1, u.a2, u.a3, (s64)rnd.a0 == 0 && rnd.a1 == 0 ? "ok" : "BAD");
    }

    /* KVM vendor services (Linux kvm_init_hyp_services): UID, then the features bitmap, then PTP. */
    struct smccc_res uid = call(VENDOR_CALL_UID, 0, 0, 0);
    if (uid.a0 == 0xb66fb428 && uid.a1 == 0xe911c52e && uid.a2 == 0x564bcaa9 && uid.a3 == 0x743a004d) {
        u64 feats = call(VENDOR_KVM_FEATURES, 0, 0, 0).a0 & 0xffffffff;
        printf("KVM vendor services: UID matches KVM, features bitmap 0x%lx\n", feats);
        if (feats & 2) {
            struct smccc_res p = call(VENDOR_KVM_PTP, 0, 0, 0);
            printf("KVM PTP: %s\n", (s64)p.a0 >= 0 && (p.a0 | p.a1) != 0 ? "host clock and virtual counter sampled" : "failed");
        }
    } else {
        printf("KVM vendor services: not present\n");
    }
    printf("PV time: %s\n", (s64)call(SMCCC_ARCH_FEATURES, PV_TIME_FEATURES, 0, 0).a0 == 0 ? "offered" : "not offered");
}

/* The workload: each vCPU sums a series, making a hypercall per step. */
#define STEPS 6000
static volatile u64 partial[2];
static volatile u32 finished[2];

static u64 work(u32 cpu)
{
    u64 sum = 0;
    for (u64 i = 1; i <= STEPS; i++) {
        sum += i * (cpu + 1) + (call(SMCCC_VERSION, 0, 0, 0).a0 & 0xf);
    }
    return sum;
}

void secondary_main(u64 context)
{
    partial[1] = work(1) + context;
    finished[1] = 1;
    struct smccc_res r;
    smccc_hvc(PSCI_CPU_OFF, 0, 0, 0, &r);
    halt();
}

int main(u64 x0)
{
    (void)x0;
    printf("Plugvisor demo guest on vCPU %lu: probing the hypervisor\n", read_mpidr() & 0xff);
    probe();
    s64 on = psci_cpu_on(1, (u64)secondary_entry, 1000);
    printf("starting vCPU 1: CPU_ON returned %ld\n", on);
    for (u32 round = 1; round <= 4; round++) {
        partial[0] += work(0);
        printf("vCPU 0: round %u done, running sum %lu\n", round, partial[0]);
    }
    if (on != 0) {
        /* No vCPU 1 (a 1-vCPU VM: CPU_ON answers INVALID_PARAMETERS): nothing to wait for. */
        printf("total %lu (vCPU 1 did not start)\n", partial[0]);
        psci_system_off();
    }
    while (!finished[1])
        ;
    /* AFFINITY_INFO reports vCPU 1 off once its CPU_OFF took effect. */
    while ((s64)call(PSCI_AFFINITY_INFO_64, 1, 0, 0).a0 != 1)
        ;
    printf("vCPU 1: sum %lu; vCPU 1 is now off\n", partial[1]);
    printf("total %lu\n", partial[0] + partial[1]);
    psci_system_off();
}
