/*
 * Exception injection: UNDEF from HVC with an unknown immediate, SMC with a non-zero immediate,
 * SVC, a Xen hypercall, and IRQs (pending while PSTATE.I masks them, taken after daifclr+WFI,
 * and taken immediately when unmasked).
 */
#include "guest.h"
#include "test-calls.h"

static volatile u32 irqs, last_intid;

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind == EXC_CUR_SPX_IRQ) {
        u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
        printf("IRQ intid=%u elr=%lx\n", iar & 0x3ff, f->elr);
        /* "device" ack: lower the line, then end of interrupt */
        smccc_hvc(TEST_SET_IRQ, read_mpidr() & 0xff, iar & 0x3ff, 0, 0);
        mmio_write32(GICC_BASE + GICC_EOIR, iar);
        last_intid = iar & 0x3ff;
        irqs++;
        return;
    }
    u64 esr = read_esr();
    printf("sync exception kind=%lu EC=%lx ISS=%lx IL=%lu spsr=%lx\n", kind, esr >> 26, esr & 0x1ffffff,
           (esr >> 25) & 1, f->spsr);
    if ((esr >> 26) == 0) /* UNDEF: skip the instruction */
        f->elr += 4;
}

int main(u64 x0)
{
    (void)x0;
    printf("daif at boot %lx\n", read_daif());
    __asm__ volatile("hvc #0x123" ::: "memory");
    printf("back from bad hvc\n");

    register u64 r0 __asm__("x0") = 0x77;
    __asm__ volatile("smc #1" : "+r"(r0) : : "memory");
    printf("smc #1 -> x0=%lx\n", r0);

    __asm__ volatile("svc #0x42" ::: "memory");
    printf("back from svc\n");

    printf("xen op 7 -> %ld\n", xen_hypercall(7, 1, 2, 3, 4, 5));

    /* IRQ while masked: stays pending */
    smccc_hvc(TEST_SET_IRQ, 0, 31, 1, 0);
    for (volatile int i = 0; i < 1000; i++)
        ;
    printf("masked: irqs=%u\n", irqs);
    /* WFI wakes on a pending IRQ even while PSTATE.I masks it (Arm ARM D1.16.2); unmasking then
     * takes it. (Unmasking first would take it at once, and a WFI after that would wait for an
     * interrupt that never comes.) */
    wfi();
    irq_enable();
    printf("after wfi: irqs=%u intid=%u\n", irqs, last_intid);

    /* IRQ while unmasked: taken right after the hypercall returns */
    smccc_hvc(TEST_SET_IRQ, 0, 40, 1, 0);
    printf("unmasked: irqs=%u intid=%u\n", irqs, last_intid);

    /* masked, then unmasked while spinning (no WFI): noticed at a slice boundary */
    irq_disable();
    smccc_hvc(TEST_SET_IRQ, 0, 33, 1, 0);
    irq_enable();
    while (irqs < 3)
        ;
    printf("spin: irqs=%u intid=%u\n", irqs, last_intid);
    psci_system_off();
}
