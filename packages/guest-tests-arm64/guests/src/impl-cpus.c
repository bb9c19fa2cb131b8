/*
 * Target-implementation probe guest: Linux's sequence for KVM's DISCOVER_IMPL_VER /
 * DISCOVER_IMPL_CPUS, step by step over HVC, printing every answer.
 *
 *   drivers/firmware/smccc/kvm_guest.c  kvm_init_hyp_services:
 *       VENDOR_HYP_CALL_UID must be KVM's four words, then KVM_FEATURES: a 128-bit bitmap of
 *       vendor function numbers (the low 32 bits of x0..x3)
 *   drivers/firmware/smccc/kvm_guest.c  kvm_arm_target_impl_cpu_init:
 *       both function 64 (DISCOVER_IMPL_VER) and 65 (DISCOVER_IMPL_CPUS) available, else nothing;
 *       DISCOVER_IMPL_VER: x0 must be SUCCESS, the version (low 32 bits of x1, SMCCC_VERSION
 *       form) must have major 1, the count x2 must not be 0; then DISCOVER_IMPL_CPUS(i) for
 *       i < count, each x0 SUCCESS, x1..x3 = MIDR, REVIDR, AIDR
 *
 * Then, beyond Linux: DISCOVER_IMPL_CPUS(count) (one past the list) and the guest's own MIDR_EL1,
 * REVIDR_EL1 and AIDR_EL1, so a test can compare the default list with the CPU the guest runs on.
 *
 * Output lines (hexadecimal):
 *   uid_ok <0|1>
 *   features <x0> <x1> <x2> <x3>
 *   impl_ver <x0> <x1> <x2> <x3>        (only when both functions are available)
 *   impl_cpu <i> <x0> <x1> <x2> <x3>     (each i < count, then i = count)
 *   impl: <what Linux would log>
 *   own <midr> <revidr> <aidr>
 *   done
 */
#include "guest.h"

#define VENDOR_HYP_CALL_UID   0x8600FF01u
#define KVM_FEATURES          0x86000000u
#define DISCOVER_IMPL_VER     0xC6000040u
#define DISCOVER_IMPL_CPUS    0xC6000041u
#define FUNC_DISCOVER_IMPL_VER  64
#define FUNC_DISCOVER_IMPL_CPUS 65
#define SMCCC_RET_SUCCESS     0

static u32 services[4];

static int available(u32 func)
{
    return func < 128 && ((services[func / 32] >> (func % 32)) & 1);
}

static inline u64 read_midr(void) { u64 v; __asm__ volatile("mrs %0, midr_el1" : "=r"(v)); return v; }
static inline u64 read_revidr(void) { u64 v; __asm__ volatile("mrs %0, revidr_el1" : "=r"(v)); return v; }
static inline u64 read_aidr(void) { u64 v; __asm__ volatile("mrs %0, aidr_el1" : "=r"(v)); return v; }

static void impl_cpus(void)
{
    struct smccc_res r;

    if (!available(FUNC_DISCOVER_IMPL_VER) || !available(FUNC_DISCOVER_IMPL_CPUS)) {
        printf("impl: not available\n");
        return;
    }
    smccc_hvc(DISCOVER_IMPL_VER, 0, 0, 0, &r);
    printf("impl_ver %lx %lx %lx %lx\n", r.a0, r.a1, r.a2, r.a3);
    if (r.a0 != SMCCC_RET_SUCCESS) {
        printf("impl: DISCOVER_IMPL_VER failed\n");
        return;
    }
    u32 ver = (u32)r.a1;
    if ((ver >> 16) != 1) {
        printf("impl: Unsupported target CPU implementation version v%u.%u\n", ver >> 16, ver & 0xffff);
        return;
    }
    if (!r.a2) {
        printf("impl: No target implementation CPUs specified\n");
        return;
    }
    u64 max_cpus = r.a2;
    for (u64 i = 0; i < max_cpus; i++) {
        smccc_hvc(DISCOVER_IMPL_CPUS, i, 0, 0, &r);
        printf("impl_cpu %lx %lx %lx %lx %lx\n", i, r.a0, r.a1, r.a2, r.a3);
        if (r.a0 != SMCCC_RET_SUCCESS) {
            printf("impl: Discovering target implementation CPUs failed\n");
            return;
        }
    }
    smccc_hvc(DISCOVER_IMPL_CPUS, max_cpus, 0, 0, &r);
    printf("impl_cpu %lx %lx %lx %lx %lx\n", max_cpus, r.a0, r.a1, r.a2, r.a3);
    printf("impl: Number of target implementation CPUs is %lu\n", max_cpus);
}

int main(u64 x0)
{
    (void)x0;
    struct smccc_res r;

    smccc_hvc(VENDOR_HYP_CALL_UID, 0, 0, 0, &r);
    int uid_ok = r.a0 == 0xb66fb428u && r.a1 == 0xe911c52eu && r.a2 == 0x564bcaa9u && r.a3 == 0x743a004du;
    printf("uid_ok %u\n", uid_ok);
    if (uid_ok) {
        smccc_hvc(KVM_FEATURES, 0, 0, 0, &r);
        services[0] = (u32)r.a0;
        services[1] = (u32)r.a1;
        services[2] = (u32)r.a2;
        services[3] = (u32)r.a3;
        printf("features %x %x %x %x\n", services[0], services[1], services[2], services[3]);
        impl_cpus();
    }
    printf("own %lx %lx %lx\n", read_midr(), read_revidr(), read_aidr());
    printf("done\n");
    psci_system_off();
}
