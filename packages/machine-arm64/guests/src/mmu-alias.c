/*
 * Hypercalls from a virtual address that is not the physical one. The guest turns its MMU on
 * with one level-1 table (4 KiB granule, 39-bit VAs: Arm ARM D8.2): 0..1 GiB as Device memory
 * (the UART), 1..2 GiB identity-mapped RAM (where it runs, with its vector table), and 2..3 GiB
 * mapping the same RAM again. It then calls `aliased` at its alias, 0x4000_0000 above its
 * physical address, where it makes a Xen hypercall (HVC #0xEA1), an SMCCC call (HVC #0) and an
 * HVC with an unknown immediate (UNDEFINED, skipped by the handler). A hypervisor that reads the
 * HVC immediate from RAM at the PC's value finds nothing there (RAM ends at 1 GiB + its size)
 * and routes all three as SMCCC; one that reads through the guest's translation routes each to
 * its own conduit. Reports: TEST_REPORT(x0 of the Xen call), TEST_REPORT(SMCCC_VERSION),
 * TEST_REPORT(the PC the UNDEF was taken at, as seen in ELR_EL1).
 */
#include "guest.h"
#include "test-calls.h"

#define ALIAS_OFFSET 0x40000000UL
#define DESC_BLOCK 0x1UL       /* level-1 block descriptor */
#define DESC_AF (1UL << 10)    /* access flag */
#define DESC_SH_INNER (3UL << 8)
#define DESC_ATTR(i) ((u64)(i) << 2)

static u64 l1[512] __attribute__((aligned(4096)));
static volatile u64 undef_elr;

static void test_call(u32 fid, u64 a1)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, 0, 0, &r);
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 esr = read_esr();
    if (kind == EXC_CUR_SPX_SYNC && (esr >> 26) == 0) { /* UNDEFINED: note where, skip it */
        undef_elr = f->elr;
        f->elr += 4;
        return;
    }
    printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, esr, f->elr);
    halt();
}

static void mmu_on(void)
{
    l1[0] = 0x00000000UL | DESC_AF | DESC_ATTR(0) | DESC_BLOCK;                 /* Device-nGnRnE */
    l1[1] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_BLOCK; /* RAM */
    l1[2] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_BLOCK; /* RAM again */
    u64 mair = 0x00UL | (0xffUL << 8);                  /* attr0 Device-nGnRnE, attr1 Normal WB */
    u64 tcr = 25UL                                       /* T0SZ: 39-bit VAs, walk from level 1 */
              | (1UL << 8) | (1UL << 10) | (3UL << 12)   /* IRGN0, ORGN0 write-back, SH0 inner */
              | (1UL << 23);                             /* EPD1: no TTBR1 walks */
    __asm__ volatile("msr mair_el1, %0; msr tcr_el1, %1; msr ttbr0_el1, %2; isb; tlbi vmalle1; dsb sy; isb"
                     ::"r"(mair), "r"(tcr), "r"((u64)l1) : "memory");
    u64 sctlr;
    __asm__ volatile("mrs %0, sctlr_el1" : "=r"(sctlr));
    sctlr |= 1UL | (1UL << 2) | (1UL << 12);             /* M, C, I */
    __asm__ volatile("msr sctlr_el1, %0; isb" ::"r"(sctlr) : "memory");
}

__attribute__((noinline)) static void aliased(void)
{
    u64 pc;
    __asm__ volatile("adr %0, ." : "=r"(pc));
    printf("running at %lx\n", pc);
    test_call(TEST_REPORT, (u64)xen_hypercall(7, 1, 2, 3, 4, 5));
    struct smccc_res r;
    smccc_hvc(SMCCC_VERSION, 0, 0, 0, &r);
    test_call(TEST_REPORT, r.a0);
    __asm__ volatile("hvc #0x123" ::: "memory");
    test_call(TEST_REPORT, undef_elr);
}

int main(u64 x0)
{
    (void)x0;
    mmu_on();
    void (*at_alias)(void) = (void (*)(void))((u64)aliased + ALIAS_OFFSET);
    at_alias();
    printf("back at %lx\n", (u64)main);
    psci_system_off();
}
