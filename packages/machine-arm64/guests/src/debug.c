/*
 * Self-hosted debug, as kvm-unit-tests arm/debug.c (debug-bp, debug-wp, debug-sstep) drives
 * it: an EL1 hardware breakpoint (DBGBVR0/DBGBCR0_EL1), a watchpoint (DBGWVR0/DBGWCR0_EL1),
 * software step (MDSCR_EL1.SS with SPSR.SS on ERET), then BRK #0x42. The engine cannot take
 * hardware debug exceptions (arming one crashes Unicorn 2.0.1), so the machine leaves them
 * unarmed: the guest must see no debug exception, keep running, and take the BRK with the
 * architected syndrome (EC 0x3c, ISS = the immediate).
 */
#include "guest.h"

static volatile u64 debug_exceptions, brk_esr, brk_elr;
static volatile u64 watched;

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 esr = read_esr();
    u64 ec = esr >> 26;
    if (kind == EXC_CUR_SPX_SYNC && ec == 0x3c) { /* BRK64 */
        brk_esr = esr;
        brk_elr = f->elr;
        f->elr += 4;
        return;
    }
    /* 0x31 breakpoint, 0x33 software step, 0x35 watchpoint (current EL) */
    debug_exceptions++;
    printf("debug exception EC=%lx elr=%lx\n", ec, f->elr);
    f->spsr |= 1ul << 9;          /* PSTATE.D: no more debug exceptions */
    f->spsr &= ~(1ul << 21);      /* PSTATE.SS */
}

extern char bp_target[];

int main(u64 x0)
{
    (void)x0;
    const u64 mdscr = (1ul << 13) | (1ul << 15); /* KDE | MDE */
    __asm__ volatile("msr dbgbvr0_el1, %0" :: "r"((u64)bp_target));
    __asm__ volatile("msr dbgbcr0_el1, %0" :: "r"((u64)((0xff << 5) | (1 << 1) | 1)));
    __asm__ volatile("msr dbgwvr0_el1, %0" :: "r"((u64)&watched));
    __asm__ volatile("msr dbgwcr0_el1, %0" :: "r"((u64)((0xff << 5) | (3 << 3) | (1 << 1) | 1)));
    __asm__ volatile("msr mdscr_el1, %0\n\tisb\n\tmsr daifclr, #8\n\tisb" :: "r"(mdscr) : "memory");
    __asm__ volatile("bp_target: nop" ::: "memory");
    watched = 1;
    printf("breakpoint and watchpoint: %lu debug exceptions\n", debug_exceptions);

    /* software step: ERET to the next instruction with SPSR.SS set (EL1h, D clear) */
    __asm__ volatile(
        "msr mdscr_el1, %0\n\t"
        "adr x1, 1f\n\tmsr elr_el1, x1\n\t"
        "mov x1, #0x5\n\torr x1, x1, #(1 << 21)\n\tmsr spsr_el1, x1\n\t"
        "isb\n\teret\n"
        "1: nop\n\tnop\n" :: "r"(mdscr | 1) : "x1", "memory");
    printf("software step: %lu debug exceptions\n", debug_exceptions);

    __asm__ volatile("brk_site: brk #0x42" ::: "memory");
    extern char brk_site[];
    printf("brk: esr=%lx at site=%d\n", brk_esr, brk_elr == (u64)brk_site);
    psci_system_off();
}
