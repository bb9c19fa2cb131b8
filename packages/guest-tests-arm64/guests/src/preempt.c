/*
 * A preemptible hypercall re-executed by the machine, as a Xen guest sees memory_op's
 * continuations (xen/arch/arm/domain.c hypercall_create_continuation: the argument registers
 * rewritten, PC back on the HVC). The call is core's test-only PREEMPT_MARK (WORK_OP 0x31,
 * cmd 1 | start << 6, x1 = a byte array, x2 = n): it adds 1 to every byte in a few legs.
 *
 * The guest issues it once and sees it finish: every byte exactly 1, the byte after them 0.
 * An interrupt the test raises during the first leg must be taken between two legs, at the HVC
 * itself (ELR_EL1 points at `hvc #0xea1`, x0 already holds the rewritten start), and the call
 * still completes. Then PREEMPT_PLAIN (cmd 2), which uses no continuation: 42, and -EINVAL
 * with a non-zero start field (Xen's do_memory_op rule). Then PREEMPT_MARK again on a second
 * array with IRQs masked (PSTATE.I): an interrupt the test raises meanwhile must not end a leg
 * early — Xen's hypercall_preempt_check() asks local_events_need_delivery(), false while the
 * guest masks IRQs (xen/arch/arm/include/asm/event.h) — and is taken once the guest unmasks.
 * Prints two lines and powers off.
 */
#include "guest.h"

#define WORK_OP 0x31
#define N 40
#define BUF ((volatile u8 *)0x40a00000UL)
#define BUF2 ((volatile u8 *)0x40a00100UL)
#define HVC_XEN 0xd401d422u /* hvc #0xea1 */
#define GICD 0x08000000UL

static volatile u32 irqs, irq_id, irq_at_hvc;
static volatile u64 irq_x0;

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind != EXC_CUR_SPX_IRQ) {
        printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
        halt();
    }
    u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
    if ((iar & 0x3ff) >= 1020) return;
    irqs++;
    irq_id = iar & 0x3ff;
    irq_at_hvc = *(volatile u32 *)f->elr == HVC_XEN;
    irq_x0 = f->x[0];
    mmio_write32(GICC_BASE + GICC_EOIR, iar);
}

int main(u64 x0)
{
    (void)x0;
    /* GIC as Linux's gic_cpu_init programs it: PPIs enabled here, priority 0xa0, PMR 0xf0. */
    mmio_write32(GICD + 0x100, 0xffffffff);
    for (u32 i = 0; i < 32; i += 4) mmio_write32(GICD + 0x400 + i, 0xa0a0a0a0);
    mmio_write32(GICC_BASE + 0x04, 0xf0);
    mmio_write32(GICC_BASE + 0x00, 1);
    irq_enable();

    s64 r = xen_hypercall(WORK_OP, 1, (u64)BUF, N, 0, 0);
    u32 bad = 0;
    for (u32 i = 0; i < N; i++) bad += BUF[i] != 1;
    bad += BUF[N] != 0;
    s64 plain = xen_hypercall(WORK_OP, 2, 0, 0, 0, 0);
    s64 refused = xen_hypercall(WORK_OP, 2 | (1UL << 6), 0, 0, 0, 0);
    printf("preempt: done=%ld bad=%u irqs=%u id=%u at_hvc=%u x0=%lx plain=%ld refused=%ld\n",
           r, bad, irqs, irq_id, irq_at_hvc, irq_x0, plain, refused);

    u32 before = irqs;
    irq_disable();
    s64 r2 = xen_hypercall(WORK_OP, 1, (u64)BUF2, N, 0, 0);
    u32 masked = irqs - before;
    irq_enable();
    __asm__ volatile("isb" ::: "memory");
    u32 after = irqs - before;
    u32 bad2 = 0;
    for (u32 i = 0; i < N; i++) bad2 += BUF2[i] != 1;
    printf("preempt masked: done=%ld bad=%u irqs_while_masked=%u irqs_after=%u\n", r2, bad2, masked, after);
    psci_system_off();
}
