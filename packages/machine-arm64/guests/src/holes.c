/*
 * Guest pages removed by the hypervisor (a balloon): what an access to one looks like from inside
 * the guest. Four pages `area` are filled with a pattern; the test hypercall TEST_REMOVE_PAGES
 * takes the middle two away. Then the guest touches them:
 *   1. MMU off, EL1: a load, a store, a branch into a removed page, and a call of code at the
 *      end of the page before the removed ones that branches to a block running on into the
 *      first (called twice before the removal, so both blocks are translated and chained:
 *      translated code of a removed page must not survive it);
 *   2. MMU on (one level 1 table: RAM at its own address, again at +1 GiB readable and
 *      executable by EL0, again at +2 GiB for EL1 only), EL1: a load through the +1 GiB alias and
 *      a branch through the +2 GiB alias — so the fault address is virtual, not physical;
 *   3. EL0 (MMU on, code and stack at the +1 GiB alias): a load and a branch, then SVC back.
 * Each access must fault as Xen reports it (xen/arch/arm/traps.c inject_abt64_exception): a
 * synchronous exception at VBAR_EL1 + 0x200 from EL1, + 0x400 from EL0, ESR_EL1 = EC (0x25/0x21
 * from EL1, 0x24/0x20 from EL0) | IL with ISS 0, FAR_EL1 = the virtual address touched, ELR_EL1 =
 * the instruction that touched it. Per probe the guest reports: vector kind, ESR, FAR, the
 * address it touched, ELR, the address of its instruction. Then it checks the two pages kept
 * their pattern (report 1), adds the removed ones back with TEST_ADD_PAGES, checks they read as
 * zero (report 1) and are writable again, and reports how many faults it took in all.
 */
#include "guest.h"
#include "test-calls.h"

#define ALIAS_EL0 0x40000000UL /* +1 GiB: EL0 and EL1 read/write, EL0 executable */
#define ALIAS_EL1 0x80000000UL /* +2 GiB: EL1 only */
#define DESC_BLOCK 0x1UL
#define DESC_AF (1UL << 10)
#define DESC_SH_INNER (3UL << 8)
#define DESC_AP_EL0 (1UL << 6)  /* AP[2:1] = 01: read/write at EL1 and EL0 */
#define DESC_PXN (1UL << 53)
#define DESC_UXN (1UL << 54)
#define DESC_ATTR(i) ((u64)(i) << 2)
#define PAGE 4096UL

static u8 area[4][PAGE] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 el0_stack[1024] __attribute__((aligned(16)));

static volatile u64 fault_kind, fault_esr, fault_far, fault_elr, faults;
/* Where the handler resumes after an instruction abort (the instruction after the branch). */
static volatile u64 resume_to;
static volatile u64 el0_load_insn, el0_load_addr, el0_fetch_addr;
static volatile u64 el0_load[4], el0_fetch[4];

static u64 call(u32 fid, u64 a1, u64 a2)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, a2, 0, &r);
    return r.a0;
}

static void report(u64 v) { call(TEST_REPORT, v, 0); }

static u64 read_far(void) { u64 v; __asm__ volatile("mrs %0, far_el1" : "=r"(v)); return v; }

extern void enter_el0(u64 pc, u64 sp);
extern void el0_return(void);

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 esr = read_esr();
    u64 ec = esr >> 26;
    if ((kind == EXC_CUR_SPX_SYNC || kind == EXC_LOWER_SYNC) && (ec == 0x20 || ec == 0x21 || ec == 0x24 || ec == 0x25)) {
        fault_kind = kind;
        fault_esr = esr;
        fault_far = read_far();
        fault_elr = f->elr;
        faults++;
        if (resume_to) {
            f->elr = resume_to;
            resume_to = 0;
        } else {
            f->elr += 4;
        }
        return;
    }
    if (kind == EXC_LOWER_SYNC && ec == 0x15) { /* SVC from EL0: back to EL1, into enter_el0's caller */
        f->elr = (u64)el0_return;
        f->spsr = 0x3c5;
        return;
    }
    printf("unexpected exception kind %lu ESR %lx FAR %lx ELR %lx\n", kind, esr, read_far(), f->elr);
    halt();
}

/* A load from addr; *insn = the load's address (as the PC sees it). */
static inline __attribute__((always_inline)) u64 probe_load(u64 addr, u64 *insn)
{
    u64 v, pc;
    __asm__ volatile("mov %0, #0x5a\n\tadr %1, 1f\n1:\tldr %0, [%2]" : "=&r"(v), "=&r"(pc) : "r"(addr) : "memory");
    *insn = pc;
    return v;
}

static inline __attribute__((always_inline)) void probe_store(u64 addr, u64 value, u64 *insn)
{
    u64 pc;
    __asm__ volatile("adr %0, 1f\n1:\tstr %1, [%2]" : "=&r"(pc) : "r"(value), "r"(addr) : "memory");
    *insn = pc;
}

/* A branch to addr; the handler resumes after it (resume_to). */
static inline __attribute__((always_inline)) void probe_fetch(u64 addr)
{
    __asm__ volatile("adr x9, 1f\n\tstr x9, [%1]\n\tblr %0\n1:" ::"r"(addr), "r"(&resume_to) : "x9", "x30", "memory");
}

static void report_fault(u64 addr, u64 insn)
{
    report(fault_kind);
    report(fault_esr);
    report(fault_far);
    report(addr);
    report(fault_elr);
    report(insn);
}

static void mmu_on(void)
{
    l1[0] = 0x00000000UL | DESC_AF | DESC_ATTR(0) | DESC_PXN | DESC_UXN | DESC_BLOCK;   /* devices */
    l1[1] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_UXN | DESC_BLOCK; /* RAM */
    l1[2] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_AP_EL0 | DESC_BLOCK; /* RAM for EL0 */
    l1[3] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_UXN | DESC_BLOCK; /* RAM again, EL1 */
    u64 mair = 0x00UL | (0xffUL << 8);
    u64 tcr = 25UL | (1UL << 8) | (1UL << 10) | (3UL << 12) | (1UL << 23);
    __asm__ volatile("msr mair_el1, %0; msr tcr_el1, %1; msr ttbr0_el1, %2; isb; tlbi vmalle1; dsb sy; isb"
                     ::"r"(mair), "r"(tcr), "r"((u64)l1) : "memory");
    u64 sctlr;
    __asm__ volatile("mrs %0, sctlr_el1" : "=r"(sctlr));
    sctlr |= 1UL | (1UL << 2) | (1UL << 12);
    sctlr |= 1UL << 23; /* SPAN = 1: exceptions leave PAN clear */
    __asm__ volatile("msr sctlr_el1, %0; isb" ::"r"(sctlr) : "memory");
}

/* Runs at EL0 at its +1 GiB alias: everything it touches is PC-relative (the alias). */
__attribute__((noinline)) void el0_main(void)
{
    u64 insn;
    probe_load(el0_load_addr, &insn);
    el0_load_insn = insn;
    el0_load[0] = fault_kind; /* EL0 may read these through the alias */
    el0_load[1] = fault_esr;
    el0_load[2] = fault_far;
    el0_load[3] = fault_elr;
    probe_fetch(el0_fetch_addr);
    el0_fetch[0] = fault_kind;
    el0_fetch[1] = fault_esr;
    el0_fetch[2] = fault_far;
    el0_fetch[3] = fault_elr;
    __asm__ volatile("svc #0" ::: "memory");
    for (;;) {
    }
}

__asm__(
    ".text\n"
    ".globl enter_el0\n"
    "enter_el0:\n"                    /* x0 = EL0 pc, x1 = EL0 sp */
    "\tstp x29, x30, [sp, #-96]!\n"
    "\tstp x19, x20, [sp, #16]\n"
    "\tstp x21, x22, [sp, #32]\n"
    "\tstp x23, x24, [sp, #48]\n"
    "\tstp x25, x26, [sp, #64]\n"
    "\tstp x27, x28, [sp, #80]\n"
    "\tmsr elr_el1, x0\n"
    "\tmsr sp_el0, x1\n"
    "\tmov x2, #0x3c0\n"             /* EL0t, D A I F masked */
    "\tmsr spsr_el1, x2\n"
    "\teret\n"
    ".globl el0_return\n"
    "el0_return:\n"
    "\tldp x19, x20, [sp, #16]\n"
    "\tldp x21, x22, [sp, #32]\n"
    "\tldp x23, x24, [sp, #48]\n"
    "\tldp x25, x26, [sp, #64]\n"
    "\tldp x27, x28, [sp, #80]\n"
    "\tldp x29, x30, [sp], #96\n"
    "\tret\n");

static void fill(int page)
{
    u64 *p = (u64 *)area[page];
    for (u64 i = 0; i < PAGE / 8; i++) p[i] = ((u64)page << 56) | (i * 0x9e3779b97f4a7c15UL >> 8);
}

static u64 intact(int page)
{
    u64 *p = (u64 *)area[page];
    for (u64 i = 0; i < PAGE / 8; i++)
        if (p[i] != (((u64)page << 56) | (i * 0x9e3779b97f4a7c15UL >> 8))) return 0;
    return 1;
}

static u64 zero(int page)
{
    volatile u64 *p = (volatile u64 *)area[page];
    for (u64 i = 0; i < PAGE / 8; i++)
        if (p[i] != 0) return 0;
    return 1;
}

int main(u64 x0)
{
    (void)x0;
    u64 insn;
    for (int i = 0; i < 4; i++) fill(i);
    /* page 0 ends with `b 1f; nop; 1: nop`, page 1 starts with `ret`: the branch's block is
     * chained to a block spanning both pages */
    u32 *stub = (u32 *)area[1] - 3;
    stub[0] = 0x14000002; /* b +8 */
    stub[1] = 0xd503201f;
    stub[2] = 0xd503201f;
    stub[3] = 0xd65f03c0;
    ((void (*)(void))stub)();
    ((void (*)(void))stub)();
    report(call(TEST_REMOVE_PAGES, (u64)area[1], 2));

    /* 1. MMU off, EL1 */
    probe_load((u64)&area[1][8], &insn);
    report_fault((u64)&area[1][8], insn);
    probe_store((u64)&area[2][16], 0x1234, &insn);
    report_fault((u64)&area[2][16], insn);
    probe_fetch((u64)area[2]);
    report_fault((u64)area[2], (u64)area[2]);
    probe_fetch((u64)stub);
    report_fault((u64)area[1], (u64)area[1]);
    fill(0);

    /* 2. MMU on, EL1, through aliases */
    mmu_on();
    probe_load((u64)&area[2][24] + ALIAS_EL0, &insn);
    report_fault((u64)&area[2][24] + ALIAS_EL0, insn);
    probe_fetch((u64)area[1] + ALIAS_EL1);
    report_fault((u64)area[1] + ALIAS_EL1, (u64)area[1] + ALIAS_EL1);

    /* 3. EL0 */
    el0_load_addr = (u64)&area[1][32] + ALIAS_EL0;
    el0_fetch_addr = (u64)area[2] + 64 + ALIAS_EL0;
    enter_el0((u64)el0_main + ALIAS_EL0, (u64)&el0_stack[1024] + ALIAS_EL0);
    report(el0_load[0]);
    report(el0_load[1]);
    report(el0_load[2]);
    report(el0_load_addr);
    report(el0_load[3]);
    report(el0_load_insn);
    report(el0_fetch[0]);
    report(el0_fetch[1]);
    report(el0_fetch[2]);
    report(el0_fetch_addr);
    report(el0_fetch[3]);
    report(el0_fetch_addr);

    /* 4. the rest kept, the removed ones back and zero */
    report(intact(0) && intact(3));
    report(call(TEST_ADD_PAGES, (u64)area[1], 2));
    report(zero(1) && zero(2));
    fill(1);
    fill(2);
    report(intact(1) && intact(2) && intact(0) && intact(3));
    report(faults);
    psci_system_off();
}
