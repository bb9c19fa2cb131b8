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
#include "mmu-alias.h"


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
    mmu_on_ram_alias(l1);
    void (*at_alias)(void) = (void (*)(void))((u64)aliased + RAM_ALIAS_OFFSET);
    at_alias();
    printf("back at %lx\n", (u64)main);
    psci_system_off();
}
