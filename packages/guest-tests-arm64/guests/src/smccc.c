/*
 * The SMCCC test guest: real aarch64 code that makes the calls the tests in ../src choose and
 * prints every register the hypervisor handed back, so the tests assert the transcript.
 *
 * The test writes a `struct params` at PARAMS_GPA before boot:
 *   mode 0 (script): run ops[0..nops) in order, then PSCI SYSTEM_OFF. Each call op loads
 *     x0..x7 from op->x (x0 as a full 64-bit value), x8..x17 with a canary, traps (HVC #0, SMC #0
 *     or SMC #1) and prints
 *         #<index> <x0> <x1> <x2> <x3> m<mask>
 *     where bit n of <mask> is set if the call changed xn (n = 0..17). Timed calls read the
 *     generic counter (op->arg: 0 CNTVCT_EL0, 1 CNTPCT_EL0) right before and after the trap and
 *     append " t<before> <after>". Memory ops store or load a u64 at op->x[0]; a flush op writes
 *     the output collected so far (e.g. before a call that ends the run).
 *   mode 1 (smp): the multi-vCPU PSCI scenario below (CPU_ON, CPU_OFF, AFFINITY_INFO).
 * Numbers are hexadecimal, 16 digits.
 *
 * Output is collected in RAM and written to the UART at the end, while this vCPU is the only
 * one running, so lines of several vCPUs never interleave. The buffer is guest memory, so it
 * travels in snapshots like everything else.
 */
#include "guest.h"

#define PARAMS_GPA 0x40800000UL
#define PARAMS_MAGIC 0x5354534554565650UL /* "PVVTESTS" */

enum { OP_HVC = 1, OP_SMC = 2, OP_SMC_IMM1 = 3, OP_TIMED_HVC = 4, OP_STORE = 5, OP_LOAD = 6, OP_FLUSH = 7 };
enum { MODE_SCRIPT = 0, MODE_SMP = 1 };

struct op {
    u32 kind;
    u32 arg;
    u64 x[8];
};

struct params {
    u64 magic;
    u32 mode;
    u32 nops;
    struct op ops[];
};

#define CANARY 0x5a5a000000000000UL

static char out_buf[128 * 1024];
static u32 out_len;

static void emit_char(char c)
{
    if (out_len < sizeof(out_buf))
        out_buf[out_len++] = c;
}

static void emit_str(const char *s)
{
    while (*s)
        emit_char(*s++);
}

static void emit_hex(u64 v, int digits)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v && n < 16);
    while (n < digits)
        tmp[n++] = '0';
    while (n)
        emit_char(tmp[--n]);
}

static void emit_hex16(u64 v) { emit_hex(v, 16); }

static void emit_dec(s64 v)
{
    char tmp[24];
    int n = 0;
    u64 u = v < 0 ? (u64)-v : (u64)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        emit_char('-');
    while (n)
        emit_char(tmp[--n]);
}

/* Writes the collected output to the UART (only while no other vCPU runs). */
static void flush(void)
{
    for (u32 i = 0; i < out_len; i++)
        uart_putc(out_buf[i]);
    out_len = 0;
}

static void print_call(u32 index, const struct smccc_regs *in, const struct smccc_regs *out)
{
    u32 mask = 0;
    for (int i = 0; i < 18; i++)
        if (in->x[i] != out->x[i])
            mask |= 1u << i;
    emit_char('#');
    emit_dec(index);
    for (int i = 0; i < 4; i++) {
        emit_char(' ');
        emit_hex16(out->x[i]);
    }
    emit_str(" m");
    emit_hex(mask, 1);
}

static void load(struct smccc_regs *r, const struct op *op)
{
    for (int i = 0; i < 8; i++)
        r->x[i] = op->x[i];
    for (int i = 8; i < 18; i++)
        r->x[i] = CANARY | i;
}

static void run_script(const struct params *p)
{
    for (u32 i = 0; i < p->nops; i++) {
        const struct op *op = &p->ops[i];
        struct smccc_regs in, out;
        switch (op->kind) {
        case OP_HVC:
        case OP_SMC:
        case OP_SMC_IMM1:
            load(&in, op);
            out = in;
            if (op->kind == OP_HVC)
                smccc_hvc_regs(&out);
            else if (op->kind == OP_SMC)
                smccc_smc_regs(&out);
            else
                smccc_smc_imm1_regs(&out);
            print_call(i, &in, &out);
            emit_char('\n');
            break;
        case OP_TIMED_HVC: {
            load(&in, op);
            out = in;
            u64 before, after;
            if (op->arg == 0) {
                before = read_cntvct();
                smccc_hvc_regs(&out);
                after = read_cntvct();
            } else {
                before = read_cntpct();
                smccc_hvc_regs(&out);
                after = read_cntpct();
            }
            print_call(i, &in, &out);
            emit_str(" t");
            emit_hex16(before);
            emit_char(' ');
            emit_hex16(after);
            emit_char('\n');
            break;
        }
        case OP_STORE:
            *(volatile u64 *)op->x[0] = op->x[1];
            break;
        case OP_LOAD:
            emit_char('#');
            emit_dec(i);
            emit_char(' ');
            emit_hex16(*(volatile u64 *)op->x[0]);
            emit_char('\n');
            break;
        case OP_FLUSH:
            flush();
            break;
        default:
            emit_str("bad op ");
            emit_dec(op->kind);
            emit_char('\n');
            break;
        }
    }
}

/* ---- mode 1: several vCPUs ----------------------------------------------------------------- */

#define PSCI_CPU_ON_32        0x84000003u
#define PSCI_AFFINITY_INFO    0x84000004u
#define PSCI_AFFINITY_INFO_64 0xC4000004u
#define MAX_CPUS 4

/* What a started vCPU does (set by vCPU 0 before CPU_ON). */
enum { PLAN_WAIT_FOR_OFF = 1, PLAN_CALLS_THEN_OFF = 2 };

/* x0..x3 exactly as each vCPU entered probe_entry (written before it touches any register). */
u64 entry_regs[MAX_CPUS][4];
static volatile u32 plan[MAX_CPUS], ready[MAX_CPUS], go_off[MAX_CPUS];
static volatile s64 own_results[MAX_CPUS][2];
static volatile u64 seen_context[MAX_CPUS];

/* CPU_ON entry point: records x0..x3, then the runtime's secondary_entry (stack, vectors). */
__asm__(".text\n"
        ".globl probe_entry\n"
        "probe_entry:\n"
        "    mrs  x9, mpidr_el1\n"
        "    and  x9, x9, #0xff\n"
        "    adrp x10, entry_regs\n"
        "    add  x10, x10, :lo12:entry_regs\n"
        "    add  x10, x10, x9, lsl #5\n"
        "    stp  x0, x1, [x10]\n"
        "    stp  x2, x3, [x10, #16]\n"
        "    b    secondary_entry\n");
extern char probe_entry[];

static s64 call3(u32 fid, u64 a1, u64 a2, u64 a3)
{
    struct smccc_res r;
    smccc_hvc(fid, a1, a2, a3, &r);
    return (s64)r.a0;
}

static s64 call3_smc(u32 fid, u64 a1, u64 a2, u64 a3)
{
    struct smccc_res r;
    smccc_smc(fid, a1, a2, a3, &r);
    return (s64)r.a0;
}

void secondary_main(u64 context)
{
    u32 cpu = read_mpidr() & 0xff;
    seen_context[cpu] = context;
    if (plan[cpu] == PLAN_CALLS_THEN_OFF) {
        own_results[cpu][0] = call3(PSCI_CPU_ON_64, 0, (u64)probe_entry, 0); /* vCPU 0 is on */
        own_results[cpu][1] = call3(PSCI_AFFINITY_INFO_64, cpu, 0, 0);      /* itself: on */
        __asm__ volatile("dmb ish" ::: "memory");
        ready[cpu] = 1;
    } else {
        __asm__ volatile("dmb ish" ::: "memory");
        ready[cpu] = 1;
        while (!go_off[cpu])
            ;
    }
    call3(PSCI_CPU_OFF, 0, 0, 0);
    printf("cpu%u: still running after CPU_OFF\n", cpu);
    halt();
}

static void wait_ready(u32 cpu)
{
    while (!ready[cpu])
        ;
    __asm__ volatile("dmb ish" ::: "memory");
    ready[cpu] = 0;
}

/* Polls AFFINITY_INFO(cpu) until it says OFF (1); a vCPU that called CPU_OFF must get there. */
static s64 wait_off(u32 cpu)
{
    s64 rc;
    for (int i = 0; i < 1000000; i++)
        if ((rc = call3(PSCI_AFFINITY_INFO_64, cpu, 0, 0)) != 0)
            return rc;
    return 0;
}

static void show_entry(u32 cpu)
{
    emit_str("cpu");
    emit_dec(cpu);
    emit_str(" entry x0=");
    emit_hex16(entry_regs[cpu][0]);
    for (int i = 1; i < 4; i++) {
        emit_str(i == 1 ? " x1=" : i == 2 ? " x2=" : " x3=");
        emit_hex(entry_regs[cpu][i], 1);
    }
    emit_str(" context=");
    emit_hex16(seen_context[cpu]);
    emit_char('\n');
}

static void show_own(u32 cpu)
{
    emit_str("cpu");
    emit_dec(cpu);
    emit_str(" cpu_on(0) ");
    emit_dec(own_results[cpu][0]);
    emit_str(" affinity(self) ");
    emit_dec(own_results[cpu][1]);
    emit_char('\n');
}

static void R(const char *label, s64 value)
{
    emit_str(label);
    emit_char(' ');
    emit_dec(value);
    emit_char('\n');
}

static void run_smp(void)
{
    u64 entry = (u64)probe_entry;
    R("affinity(1)", call3(PSCI_AFFINITY_INFO_64, 1, 0, 0));
    R("affinity(7)", call3(PSCI_AFFINITY_INFO_64, 7, 0, 0));

    plan[1] = PLAN_WAIT_FOR_OFF;
    R("cpu_on(1)", call3(PSCI_CPU_ON_64, 1, entry, 0xfedcba9876543210UL));
    R("cpu_on(1) again", call3(PSCI_CPU_ON_64, 1, entry, 0));
    wait_ready(1);
    show_entry(1);
    R("affinity(1)", call3(PSCI_AFFINITY_INFO_64, 1, 0, 0));
    R("cpu_on(mpidr bit 24)", call3(PSCI_CPU_ON_64, 1UL << 24, entry, 0));
    R("cpu_on(mpidr bit 40)", call3(PSCI_CPU_ON_64, 1UL << 40, entry, 0));
    R("cpu_on(aff3=1 aff0=2)", call3(PSCI_CPU_ON_64, 0x100000002UL, entry, 0));
    R("cpu_on(7)", call3(PSCI_CPU_ON_64, 7, entry, 0));
    R("cpu_on(0, self)", call3(PSCI_CPU_ON_64, 0, entry, 0));
    R("cpu_on(mpidr 0x80000001)", call3(PSCI_CPU_ON_64, 0x80000001UL, entry, 0)); /* bit 31: not an affinity bit */

    /* SMC32 CPU_ON: upper halves of x1..x3 are zeroed first, so this starts vCPU 2 with 0x1234. */
    plan[2] = PLAN_CALLS_THEN_OFF;
    R("cpu_on32(2)", call3(PSCI_CPU_ON_32, 0xffffffff00000002UL, entry | 0xabcd000000000000UL, 0xabcdef0100001234UL));
    wait_ready(2);
    show_entry(2);
    show_own(2);
    R("cpu2 off", wait_off(2));

    R("affinity(3)", call3(PSCI_AFFINITY_INFO_64, 3, 0, 0));
    R("affinity(0, L1)", call3(PSCI_AFFINITY_INFO_64, 0, 1, 0));
    R("affinity(3, L1)", call3(PSCI_AFFINITY_INFO_64, 3, 1, 0));
    R("affinity(0x100, L1)", call3(PSCI_AFFINITY_INFO_64, 0x100, 1, 0));
    R("affinity(0, L2)", call3(PSCI_AFFINITY_INFO_64, 0, 2, 0));
    R("affinity(0, L3)", call3(PSCI_AFFINITY_INFO_64, 0, 3, 0));
    R("affinity(0x100000000, L3)", call3(PSCI_AFFINITY_INFO_64, 0x100000000UL, 3, 0));
    R("affinity(0, L4)", call3(PSCI_AFFINITY_INFO_64, 0, 4, 0));
    R("affinity(bit 24)", call3(PSCI_AFFINITY_INFO_64, 1UL << 24, 0, 0));
    R("affinity(mpidr 0x80000001)", call3(PSCI_AFFINITY_INFO_64, 0x80000001UL, 0, 0));
    R("affinity64(0x100000003)", call3(PSCI_AFFINITY_INFO_64, 0x100000003UL, 0, 0));
    R("affinity32(0x100000003)", call3(PSCI_AFFINITY_INFO, 0x100000003UL, 0, 0));
    R("affinity32(1, level 0x100000000)", call3(PSCI_AFFINITY_INFO, 1, 0x100000000UL, 0));
    R("affinity64(1, level 0x100000000)", call3(PSCI_AFFINITY_INFO_64, 1, 0x100000000UL, 0));

    go_off[1] = 1;
    R("cpu1 off", wait_off(1));
    R("affinity(1, L0)", call3(PSCI_AFFINITY_INFO_64, 1, 0, 0));
    R("affinity(1, L1)", call3(PSCI_AFFINITY_INFO_64, 1, 1, 0));

    plan[1] = PLAN_CALLS_THEN_OFF;
    R("cpu_on(1) after off", call3(PSCI_CPU_ON_64, 1, entry, 0x5555));
    wait_ready(1);
    show_entry(1);
    R("cpu1 off", wait_off(1));

    plan[3] = PLAN_CALLS_THEN_OFF;
    R("cpu_on(3) via smc", call3_smc(PSCI_CPU_ON_64, 3, entry, 0x3333));
    wait_ready(3);
    show_entry(3);
    show_own(3);
    R("cpu3 off", wait_off(3));

    emit_str("cpu0: CPU_OFF\n");
    flush(); /* every other vCPU is off */
    call3(PSCI_CPU_OFF, 0, 0, 0);
    puts("cpu0: still running after CPU_OFF\n");
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    flush();
    printf("unhandled exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
    halt();
}

int main(u64 x0)
{
    (void)x0;
    const struct params *p = (const struct params *)PARAMS_GPA;
    if (p->magic != PARAMS_MAGIC) {
        puts("no test parameters\n");
        psci_system_off();
    }
    if (p->mode == MODE_SCRIPT)
        run_script(p);
    else if (p->mode == MODE_SMP)
        run_smp();
    else
        emit_str("unknown mode\n");
    emit_str("done\n");
    flush();
    psci_system_off();
}
