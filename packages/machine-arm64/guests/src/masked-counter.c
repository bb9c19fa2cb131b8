/*
 * One vCPU keeps IRQs masked while a PPI is pending, and loops: load a counter from memory,
 * add one, store it back, bump a register copy, make a hypercall, every so often print a line;
 * then compares the counter in memory with the register copy. A hypervisor that stops the
 * vCPU inside a hook with uc_emu_start's timeout makes Unicorn execute the trapping
 * instruction again (a store applied twice, a console line printed twice): the copies then
 * disagree. At the end IRQs are unmasked, the pending PPI is taken and acknowledged, and the
 * guest reports: TEST_REPORT(mismatches), TEST_REPORT(iterations), TEST_REPORT(irqs taken).
 */
#include "guest.h"
#include "test-calls.h"

#define PPI 27 /* the virtual timer's PPI on QEMU virt; raised here with TEST_SET_IRQ */
#define ITERATIONS 20000

static volatile u64 counter;
static volatile u32 irqs;

static void test_call(u32 fid, u64 a1, u64 a2, u64 a3)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, a2, a3, &r);
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind != EXC_CUR_SPX_IRQ) {
        printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
        halt();
    }
    u32 intid = mmio_read32(GICC_BASE + GICC_IAR) & 0x3ff;
    if (intid == PPI) {
        irqs++;
        test_call(TEST_SET_IRQ, 0, PPI, 0); /* lower the line, then end the interrupt */
    }
    mmio_write32(GICC_BASE + GICC_EOIR, intid);
}

int main(u64 x0)
{
    (void)x0;
    u64 copy = 0, mismatches = 0;
    struct smccc_res r;
    irq_disable();
    test_call(TEST_SET_IRQ, 0, PPI, 1); /* pending, masked by PSTATE.I */
    for (u64 i = 0; i < ITERATIONS; i++) {
        u64 c;
        /* ldr / add / str on the counter, the register copy beside it */
        __asm__ volatile("ldr %0, [%1]\n\tadd %0, %0, #1\n\tstr %0, [%1]" : "=&r"(c) : "r"(&counter) : "memory");
        copy++;
        smccc_hvc(SMCCC_VERSION, 0, 0, 0, &r);
        if (r.a0 != 0x10001 || counter != copy) {
            if (mismatches++ < 4) printf("mismatch at %lu: counter %lu copy %lu version %lx\n", i, counter, copy, r.a0);
            copy = counter;
        }
        if (i % 1000 == 0) printf("iteration %lu\n", i);
    }
    printf("masked loop done: counter %lu mismatches %lu\n", counter, mismatches);
    irq_enable();
    while (!irqs)
        wfi();
    test_call(TEST_REPORT, mismatches, 0, 0);
    test_call(TEST_REPORT, counter, 0, 0);
    test_call(TEST_REPORT, irqs, 0, 0);
    psci_system_off();
}
