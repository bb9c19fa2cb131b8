/*
 * The GICv2 distributor and CPU interface as Linux's drivers/irqchip/irq-gic.c programs them, on
 * 2 vCPUs: vCPU 0 initialises the distributor (gic_dist_init) and each vCPU its interface
 * (gic_cpu_init: PPIs disabled, SGIs enabled, priorities 0xa0, PMR 0xf0, CTLR enable). Then:
 * an SGI to self is held back by PMR until PMR is raised; a PPI is held back while disabled;
 * vCPU 0 sends SGI 3 to vCPU 1, which answers with SGI 5 (IAR's bits 12:10 give the sender).
 * Reports: TYPER, vCPU 0's ITARGETSR0, vCPU 1's ITARGETSR0, SGI 7 taken while masked (0) and
 * after (1), PPI 27 taken while disabled (0) and after (1), SGI 3's source at vCPU 1 (0),
 * SGI 5's source at vCPU 0 (1), spurious IARs.
 */
#include "guest.h"
#include "test-calls.h"

#define GICD 0x08000000UL
#define GICD_CTLR 0x000
#define GICD_TYPER 0x004
#define GICD_ISENABLER 0x100
#define GICD_ICENABLER 0x180
#define GICD_ICACTIVER 0x380
#define GICD_IPRIORITYR 0x400
#define GICD_ITARGETSR 0x800
#define GICD_ICFGR 0xc00
#define GICD_SGIR 0xf00
#define GICC_CTLR 0x00
#define GICC_PMR 0x04

static volatile u32 alive, seen7, seen27, seen3, seen5, src3, src5, spurious;

static void test_call(u32 fid, u64 a1, u64 a2, u64 a3)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, a2, a3, &r);
}

static u32 rd(u64 off) { return mmio_read32(GICD + off); }
static void wr(u64 off, u32 v) { mmio_write32(GICD + off, v); }
static u32 cpu(void) { return read_mpidr() & 0xff; }

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind != EXC_CUR_SPX_IRQ) {
        printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
        halt();
    }
    u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
    u32 id = iar & 0x3ff;
    if (id >= 1020) {
        spurious++;
        return;
    }
    if (id == 7) seen7++;
    if (id == 27) {
        seen27++;
        test_call(TEST_SET_IRQ, cpu(), 27, 0);
    }
    if (id == 3 && cpu() == 1) { src3 = (iar >> 10) & 7; seen3++; }
    if (id == 5 && cpu() == 0) { src5 = (iar >> 10) & 7; seen5++; }
    mmio_write32(GICC_BASE + GICC_EOIR, iar);
}

static void cpu_init(void)
{
    wr(GICD_ICACTIVER, 0xffffffff);
    wr(GICD_ICENABLER, 0xffff0000);
    wr(GICD_ISENABLER, 0x0000ffff);
    for (u32 i = 0; i < 32; i += 4) wr(GICD_IPRIORITYR + i, 0xa0a0a0a0);
    mmio_write32(GICC_BASE + GICC_PMR, 0xf0);
    mmio_write32(GICC_BASE + GICC_CTLR, 1);
}

/* Waits for a handler to set *flag: checked with IRQs masked, so an IRQ taken just before WFI cannot be missed (WFI wakes on a pending IRQ even while masked). */
static void wait_for(volatile u32 *flag)
{
    for (;;) {
        irq_disable();
        if (*flag) break;
        wfi();
        irq_enable();
    }
    irq_enable();
}

static void spin(void)
{
    for (volatile u32 i = 0; i < 20000; i++)
        ;
}

void secondary_main(u64 context)
{
    (void)context;
    test_call(TEST_REPORT, rd(GICD_ITARGETSR), 0, 0);
    cpu_init();
    irq_enable();
    alive = 1;
    wait_for(&seen3);
    wr(GICD_SGIR, (0x01 << 16) | 5); /* to vCPU 0 */
    halt();
}

int main(u64 x0)
{
    (void)x0;
    u32 typer = rd(GICD_TYPER);
    u32 lines = ((typer & 0x1f) + 1) * 32;
    test_call(TEST_REPORT, typer, 0, 0);
    wr(GICD_CTLR, 0);
    u32 mask = rd(GICD_ITARGETSR) & 0xff;
    test_call(TEST_REPORT, rd(GICD_ITARGETSR), 0, 0);
    mask |= mask << 8;
    mask |= mask << 16;
    for (u32 i = 32; i < lines; i += 4) wr(GICD_ITARGETSR + i, mask);
    for (u32 i = 32; i < lines; i += 16) wr(GICD_ICFGR + i / 4, 0);
    for (u32 i = 32; i < lines; i += 4) wr(GICD_IPRIORITYR + i, 0xa0a0a0a0);
    for (u32 i = 32; i < lines; i += 32) {
        wr(GICD_ICACTIVER + i / 8, 0xffffffff);
        wr(GICD_ICENABLER + i / 8, 0xffffffff);
    }
    wr(GICD_CTLR, 1);
    cpu_init();
    irq_enable();

    /* PMR below the priority holds an SGI back */
    mmio_write32(GICC_BASE + GICC_PMR, 0x90);
    wr(GICD_SGIR, (2 << 24) | 7); /* to self */
    spin();
    test_call(TEST_REPORT, seen7, 0, 0);
    mmio_write32(GICC_BASE + GICC_PMR, 0xf0);
    wait_for(&seen7);
    test_call(TEST_REPORT, seen7, 0, 0);

    /* a disabled PPI is held back */
    test_call(TEST_SET_IRQ, 0, 27, 1);
    spin();
    test_call(TEST_REPORT, seen27, 0, 0);
    wr(GICD_ISENABLER, 1u << 27);
    wait_for(&seen27);
    test_call(TEST_REPORT, seen27, 0, 0);

    /* an IPI to vCPU 1 and its answer */
    psci_cpu_on(1, (u64)secondary_entry, 0);
    while (!alive)
        ;
    wr(GICD_SGIR, (0x02 << 16) | 3);
    wait_for(&seen5);
    test_call(TEST_REPORT, src3, 0, 0);
    test_call(TEST_REPORT, src5, 0, 0);
    test_call(TEST_REPORT, spurious, 0, 0);
    psci_system_off();
}
