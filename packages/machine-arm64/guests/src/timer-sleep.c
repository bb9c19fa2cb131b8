/*
 * An idle guest, as a tickless kernel is between events: arms the virtual timer one second ahead
 * (CNTV_TVAL_EL0 = CNTFRQ_EL0, CNTV_CTL_EL0.ENABLE), enables its PPI 27 at the GIC, and waits in
 * WFI until the interrupt is taken; the handler masks the timer (CNTV_CTL_EL0.IMASK) and ends the
 * interrupt. Reports: the virtual counter before arming, the counter in the handler, interrupts
 * taken (1), then powers off.
 */
#include "guest.h"
#include "test-calls.h"

#define GICD 0x08000000UL
#define GICD_CTLR 0x000
#define GICD_ISENABLER 0x100
#define GICC_CTLR 0x00
#define GICC_PMR 0x04
#define VTIMER_PPI 27

static volatile u32 taken;
static volatile u64 woke_at;

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
    u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
    if ((iar & 0x3ff) == VTIMER_PPI) {
        woke_at = read_cntvct();
        __asm__ volatile("msr cntv_ctl_el0, %0\n\tisb" : : "r"(3UL) : "memory"); /* ENABLE | IMASK */
        taken++;
    }
    mmio_write32(GICC_BASE + GICC_EOIR, iar);
}

int main(u64 x0)
{
    (void)x0;
    mmio_write32(GICD + GICD_CTLR, 1);
    mmio_write32(GICD + GICD_ISENABLER, 1u << VTIMER_PPI);
    mmio_write32(GICC_BASE + GICC_PMR, 0xf0);
    mmio_write32(GICC_BASE + GICC_CTLR, 1);

    u64 armed_at = read_cntvct();
    __asm__ volatile("msr cntv_tval_el0, %0\n\tmsr cntv_ctl_el0, %1\n\tisb" : : "r"(read_cntfrq()), "r"(1UL) : "memory");
    for (;;) {
        irq_disable();
        if (taken) break;
        wfi();
        irq_enable();
    }
    irq_enable();
    test_call(TEST_REPORT, armed_at, 0, 0);
    test_call(TEST_REPORT, woke_at, 0, 0);
    test_call(TEST_REPORT, taken, 0, 0);
    psci_system_off();
}
