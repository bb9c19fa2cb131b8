/*
 * Removed pages on 2 vCPUs. vCPU 1 loads from page `area[1]` in a loop (so its engine holds the
 * translation), noting before each load whether vCPU 0 had said it removed the page. vCPU 0
 * removes the page (TEST_REMOVE_PAGES; another page was removed before vCPU 1 started, so stage 2
 * translation is already on and only a TLB flush makes vCPU 1 see this one), then says so. A load vCPU 1 completes after it saw the
 * flag is a violation: the page must fault on every vCPU from the removal on. vCPU 1's handler
 * takes the abort (Xen's, memory/holes.ts) and stops the loop. Reports: pages removed, then from
 * vCPU 1: violations, ESR_EL1, FAR_EL1, the address loaded, loads done before the removal (> 0).
 */
#include "guest.h"
#include "test-calls.h"

static u8 area[3][4096] __attribute__((aligned(4096)));
static volatile u32 loading, removed, faulted, done;
static volatile u64 esr, far;

static void report(u64 v)
{
    struct smccc_res r;
    smccc_hvc(TEST_REPORT, v, 0, 0, &r);
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 ec = read_esr() >> 26;
    if (kind == EXC_CUR_SPX_SYNC && ec == 0x25) {
        esr = read_esr();
        __asm__ volatile("mrs %0, far_el1" : "=r"(far));
        faulted = 1;
        f->elr += 4;
        return;
    }
    printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
    halt();
}

void secondary_main(u64 context)
{
    (void)context;
    volatile u64 *p = (volatile u64 *)&area[1][64];
    u64 violations = 0, before = 0;
    while (!faulted) {
        u32 seen = removed;
        u64 v = *p;
        if (faulted) break;
        if (seen && ++violations == 100000) break; /* it never faults: give up, report */
        if (!seen) before++;
        loading = 1;
        (void)v;
    }
    report(violations);
    report(esr);
    report(far);
    report((u64)&area[1][64]);
    report(before > 0);
    done = 1;
    halt();
}

int main(u64 x0)
{
    (void)x0;
    struct smccc_res r;
    area[1][64] = 1;
    /* Another page first: stage 2 is already on when vCPU 1 starts loading. */
    smccc_hvc(TEST_REMOVE_PAGES, (u64)area[2], 1, 0, &r);
    psci_cpu_on(1, (u64)secondary_entry, 0);
    while (!loading)
        ;
    smccc_hvc(TEST_REMOVE_PAGES, (u64)area[1], 1, 0, &r);
    removed = 1;
    report(r.a0);
    while (!done)
        ;
    psci_system_off();
}
