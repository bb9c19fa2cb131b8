/*
 * PSCI CPU_ON carries the caller's data endianness to the target, as KVM does (Linux
 * arch/arm64/kvm/psci.c, kvm_psci_vcpu_on: reset_state.be = kvm_vcpu_is_be(source_vcpu), applied
 * by kvm_reset_vcpu with kvm_vcpu_set_be: SCTLR_EL1.EE, bit 25). On 3 vCPUs:
 *   obs engine-be-byte0   vCPU 0 stores 0x11223344 with SCTLR_EL1.EE = 1 and reads its first
 *                         byte with EE = 0: 0x11 when the engine honours EE for data
 *   obs be-caller-rc      CPU_ON of vCPU 1 made with EE = 1 (set around the HVC, no memory
 *                         access in between)
 *   obs le-caller-rc      CPU_ON of vCPU 2 made with EE = 0
 *   obs cpuN-sctlr-ee     SCTLR_EL1.EE as vCPU N read it at its first instruction
 *   obs cpuN-byte0        the first byte of 0x11223344 stored by vCPU N before it cleared EE
 *   obs cpuN-sctlr-rest   the rest of its SCTLR_EL1 (EE cleared): the same reset value for both
 */
#include "guest.h"

#define SCTLR_EE (1UL << 25)

static volatile u32 word0;
volatile u32 entry_word[4];
volatile u64 entry_sctlr[4];
static volatile u32 up[4];

/* CPU_ON's target entry: records SCTLR_EL1 and a 32-bit store as made with the entry's EE, then
   clears EE and continues as the runtime's secondary_entry (x0 = context kept). */
__asm__(
    "    .globl endian_entry\n"
    "endian_entry:\n"
    "    mrs     x20, sctlr_el1\n"
    "    mrs     x21, mpidr_el1\n"
    "    and     x21, x21, #0xff\n"
    "    adrp    x22, entry_word\n" /* no literal pool: a load with EE = 1 would swap it */
    "    add     x22, x22, :lo12:entry_word\n"
    "    movz    w23, #0x3344\n"
    "    movk    w23, #0x1122, lsl #16\n"
    "    str     w23, [x22, x21, lsl #2]\n"
    "    bic     x24, x20, #(1 << 25)\n"
    "    msr     sctlr_el1, x24\n"
    "    isb\n"
    "    adrp    x22, entry_sctlr\n"
    "    add     x22, x22, :lo12:entry_sctlr\n"
    "    str     x20, [x22, x21, lsl #3]\n"
    "    b       secondary_entry\n");
extern char endian_entry[];

void secondary_main(u64 context)
{
    u64 n = read_mpidr() & 0xff;
    (void)context;
    up[n] = 1;
    halt();
}

static u64 sctlr(void) { u64 v; __asm__ volatile("mrs %0, sctlr_el1" : "=r"(v)); return v; }

/* CPU_ON (x0..x3) made with SCTLR_EL1.EE = be, restored right after the HVC. */
static s64 cpu_on_with_ee(u64 target, u64 entry, u64 context, int be)
{
    u64 old = sctlr(), with = be ? (old | SCTLR_EE) : (old & ~SCTLR_EE);
    register u64 x0 __asm__("x0") = PSCI_CPU_ON_64;
    register u64 x1 __asm__("x1") = target;
    register u64 x2 __asm__("x2") = entry;
    register u64 x3 __asm__("x3") = context;
    __asm__ volatile("msr sctlr_el1, %4\n\tisb\n\thvc #0\n\tmsr sctlr_el1, %5\n\tisb"
                     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3)
                     : "r"(with), "r"(old)
                     : "memory");
    return (s64)x0;
}

int main(u64 x0)
{
    (void)x0;
    /* does the engine honour SCTLR_EL1.EE for data at EL1? */
    u64 old = sctlr();
    __asm__ volatile("msr sctlr_el1, %1\n\tisb\n\tstr %w2, [%0]\n\tmsr sctlr_el1, %3\n\tisb"
                     : : "r"(&word0), "r"(old | SCTLR_EE), "r"(0x11223344u), "r"(old) : "memory");
    printf("obs engine-be-byte0=0x%x\n", ((volatile u8 *)&word0)[0]);

    printf("obs be-caller-rc=%ld\n", cpu_on_with_ee(1, (u64)endian_entry, 1, 1));
    while (!up[1])
        ;
    printf("obs le-caller-rc=%ld\n", cpu_on_with_ee(2, (u64)endian_entry, 2, 0));
    while (!up[2])
        ;
    for (int n = 1; n <= 2; n++) {
        printf("obs cpu%d-sctlr-ee=%u\n", n, (entry_sctlr[n] & SCTLR_EE) ? 1u : 0u);
        printf("obs cpu%d-byte0=0x%x\n", n, ((volatile u8 *)&entry_word[n])[0]);
        printf("obs cpu%d-sctlr-rest=0x%lx\n", n, entry_sctlr[n] & ~SCTLR_EE);
    }
    printf("obs done=1\n");
    psci_system_off();
    return 0;
}
