/*
 * Benchmark guest for removed pages (src/bench/holes.ts). TEST_GET_MODE picks the loop, x1 of
 * TEST_REPORT carries nothing the bench needs but proves the loop ran:
 *   mode 0  sweep: `rounds` passes over the first `pages` pages of a 4 MiB buffer, one load and
 *           one store per 4 KiB page (16 pages stay in QEMU's TLB; 1,024 are more than it keeps,
 *           so translations are refilled every pass);
 *   mode 1  fault: `rounds` loads from `hole` (a page the host removed), each a data abort the
 *           handler skips;
 *   mode 2  svc: `rounds` SVC #0, each a synchronous exception the CPU model takes natively and
 *           the same handler returns from (the baseline of mode 1).
 * `rounds`, `pages` and `hole` are written by the host before boot (symbols found in the image).
 */
#include "guest.h"
#include "test-calls.h"

#define PAGE 4096UL
#define SWEEP_PAGES 1024UL

volatile u64 rounds = 0x524f554e44530000UL; /* "ROUNDS": patched by the host */
volatile u64 hole = 0x484f4c4500000000UL;   /* "HOLE": patched by the host */
volatile u64 pages = 0x5041474553000000UL;  /* "PAGES": patched by the host (at most SWEEP_PAGES) */
static u8 buffer[SWEEP_PAGES][PAGE] __attribute__((aligned(4096)));
static volatile u64 taken;

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 ec = read_esr() >> 26;
    if (kind == EXC_CUR_SPX_SYNC && (ec == 0x25 || ec == 0x15)) {
        taken++;
        if (ec == 0x25) f->elr += 4; /* SVC: ELR is already past it */
        return;
    }
    printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
    halt();
}

int main(u64 x0)
{
    (void)x0;
    struct smccc_res r;
    smccc_hvc(TEST_GET_MODE, 0, 0, 0, &r);
    u64 mode = r.a0, n = rounds, np = pages, sum = 0;
    if (mode == 0) {
        for (u64 i = 0; i < n; i++)
            for (u64 p = 0; p < np && p < SWEEP_PAGES; p++) {
                volatile u64 *w = (volatile u64 *)buffer[p];
                sum += *w;
                *w = sum + i;
            }
    } else if (mode == 1) {
        volatile u64 *h = (volatile u64 *)hole;
        for (u64 i = 0; i < n; i++) sum += *h;
        sum = taken;
    } else {
        for (u64 i = 0; i < n; i++) __asm__ volatile("svc #0" ::: "memory");
        sum = taken;
    }
    smccc_hvc(TEST_REPORT, sum, 0, 0, &r);
    psci_system_off();
}
