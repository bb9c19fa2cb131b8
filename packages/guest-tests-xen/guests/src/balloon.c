/*
 * A balloon driver with a scheduler under it: the case Xen's preemptible hypercalls exist for.
 *
 * On each vCPU, task A balloons NPAGES pages out with one XENMEM_decrease_reservation, as Linux's
 * drivers/xen/balloon.c (decrease_reservation) and mem-reservation.c (xenmem_reservation_decrease)
 * do: a `struct xen_memory_reservation` naming an array of gfns. Xen preempts such a call between
 * extents (xen/common/memory.c: hypercall_preempt_check) and continues it by rewriting the
 * guest's x0 to `op | done << MEMOP_EXTENT_SHIFT` and putting the PC back on the HVC
 * (xen/arch/arm/domain.c: hypercall_create_continuation). The virtual timer, armed to fall due
 * while the call runs, makes an interrupt pending; the guest takes it at the HVC with x0 already
 * rewritten, and its "scheduler" (the IRQ handler) deschedules task A the way a kernel does: A's
 * registers — the continuation included — are saved in guest memory, where the hypervisor cannot
 * see them, and task B runs on its own stack. B prints "task B running" (an operator may snapshot
 * the VM there: plugvisor run --snapshot-on-output 'task B running', then plugvisor restore in
 * another process), checks from the guest side that exactly the first `done` extents are gone and
 * the rest still hold what A wrote, and switches back to A (resume_task: A's registers, PC on the
 * HVC). A re-issues the call with its saved registers and it completes: every extent processed
 * exactly once (the result is NPAGES, and every page then faults: a page done twice would end the
 * op early, one skipped would still be there). Then A populates the pages back (XENMEM_populate_
 * physmap, as balloon.c's increase_reservation on an auto-translated guest) and checks they are
 * there and zeroed.
 *
 * Where the timer falls is a matter of host time (the counter follows the host clock), so A
 * measures a small balloon first and aims at the middle of the big one; when the interrupt comes
 * before the call or after it, A puts the pages back, re-aims and tries again.
 *
 * Runs on every vCPU the machine has (PSCI CPU_ON of MPIDR 1.. until it is refused), each on its
 * own pages. Needs svc-xen's opt-in feature memory-reservation (plugvisor run balloon.elf
 * --feature memory-reservation=on). Ends with "balloon: ok" and PSCI SYSTEM_OFF; any failed check
 * prints "balloon: FAIL …" and ends with SYSTEM_RESET, so the run's exit status tells them apart.
 */
#include "xen.h"

#define XENMEM_decrease_reservation 1
#define XENMEM_current_reservation 3
#define XENMEM_maximum_reservation 4
#define XENMEM_populate_physmap 6
#define MEMOP_EXTENT_SHIFT 6

#define GICD 0x08000000UL
#define VTIMER_PPI 27
#define NCPUS 2
#define NPAGES 1024 /* per vCPU, four legs of svc-xen's 256-page budget at the least */
#define CALIBRATE 64
#define ATTEMPTS 12

/* xen/include/public/memory.h, arm64: 32 bytes. */
struct xen_memory_reservation { u64 extent_start; u64 nr_extents; u32 extent_order; u32 mem_flags; u16 domid; };
struct xen_memory_domain { u16 domid; };

/* A descheduled task's registers, as the vectors saved them (struct exc_frame) plus its SP. */
struct task_regs { u64 x[31]; u64 elr; u64 spsr; u64 sp; };

struct cpu {
    struct xen_memory_reservation resv;
    u64 list[NPAGES];
    struct task_regs saved;      /* task A while task B runs */
    volatile u32 armed;          /* the timer is aimed at A's call */
    volatile u32 switched;       /* task B has run (this attempt) */
    volatile u64 irq_at;         /* the counter when the interrupt came, if not mid-call */
    u64 latency;                 /* ticks from the timer falling due to the scheduler running, mid-call */
    volatile u64 faults, far, elr;
    u64 done_at_switch;
    volatile u32 finished;
};

static u8 area[NCPUS][NPAGES][4096] __attribute__((aligned(4096)));
static struct cpu cpus[NCPUS];
u8 stacks_b[NCPUS][16384] __attribute__((aligned(16))); /* task B's stacks (task_b_entry) */
static struct xen_memory_domain self = { DOMID_SELF };
static volatile u32 print_lock, ncpus = 1;
extern char balloon_hvc[], probe_load[];
void task_b_entry(void);
void resume_task(struct task_regs *t) __attribute__((noreturn));

static u32 this_cpu(void) { return (u32)(read_mpidr() & 0xff); }

/* One vCPU prints at a time; with interrupts off, so a task switch never happens holding the lock. */
#define say(...)                                                                     \
    do {                                                                             \
        u64 daif_ = read_daif();                                                     \
        irq_disable();                                                               \
        while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) {}             \
        printf(__VA_ARGS__);                                                         \
        __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);                          \
        __asm__ volatile("msr daif, %0" : : "r"(daif_) : "memory");                  \
    } while (0)

static void __attribute__((noreturn)) system_reset(void)
{
    struct smccc_res r;
    smccc_hvc(PSCI_SYSTEM_RESET, 0, 0, 0, &r);
    halt();
}

static void __attribute__((noreturn)) fail(u32 cpu, int line, const char *what)
{
    say("balloon: FAIL cpu %u line %d: %s\n", cpu, line, what);
    system_reset();
}
#define EXPECT(cpu, cond) do { if (!(cond)) fail((cpu), __LINE__, #cond); } while (0)

/*
 * HYPERVISOR_memory_op(cmd, arg) at a known instruction, so the scheduler can tell an interrupt
 * taken on this HVC (a call between two legs) from one taken anywhere else. Xen's hypercall ABI on
 * arm64: x16 the call, x0.. the arguments, x0 the result (xen/arch/arm/traps.c).
 */
static __attribute__((noinline)) s64 memop(u64 cmd, void *arg)
{
    register u64 x16 __asm__("x16") = __HYPERVISOR_memory_op;
    register u64 x0 __asm__("x0") = cmd;
    register u64 x1 __asm__("x1") = (u64)arg;
    __asm__ volatile(".global balloon_hvc\nballoon_hvc:\n\thvc #0xea1"
                     : "+r"(x0), "+r"(x1), "+r"(x16)
                     :
                     : "x2", "x3", "x4", "memory");
    return (s64)x0;
}

static s64 reserve(struct cpu *c, u32 op, u64 first, u64 nr)
{
    c->resv = (struct xen_memory_reservation){ (u64)&c->list[first], nr, 0, 0, DOMID_SELF };
    return memop(op, &c->resv);
}

/* One byte load at a known instruction: 1 if it took the data abort (FAR and ELR checked). */
static __attribute__((noinline)) u32 gone(struct cpu *c, u32 cpu, const volatile u8 *p)
{
    u64 before = c->faults;
    __asm__ volatile("mov x1, %0\n\t.global probe_load\nprobe_load:\n\tldrb w2, [x1]" : : "r"(p) : "x1", "x2", "memory");
    if (c->faults == before) return 0;
    EXPECT(cpu, c->far == (u64)p && c->elr == (u64)probe_load);
    return 1;
}

static void fill(u32 cpu)
{
    for (u64 i = 0; i < NPAGES; i++) {
        area[cpu][i][0] = (u8)(i + 1);
        area[cpu][i][2048] = (u8)(cpu + 0x40);
        area[cpu][i][4095] = 0x5a;
    }
}

static u32 intact(u32 cpu, u64 i)
{
    return area[cpu][i][0] == (u8)(i + 1) && area[cpu][i][2048] == (u8)(cpu + 0x40) && area[cpu][i][4095] == 0x5a;
}

static void timer_arm(u64 ticks)
{
    __asm__ volatile("msr cntv_tval_el0, %0\n\tmsr cntv_ctl_el0, %1\n\tisb" : : "r"(ticks), "r"(1UL) : "memory");
}
static void timer_off(void) { __asm__ volatile("msr cntv_ctl_el0, %0\n\tisb" : : "r"(0UL) : "memory"); }

/*
 * The scheduler: the timer's interrupt. Taken on task A's HVC with a start extent in x0, task A is
 * in the middle of its call: save its registers and run task B instead.
 */
static void timer_irq(u32 cpu, struct exc_frame *f)
{
    struct cpu *c = &cpus[cpu];
    u64 due;
    __asm__ volatile("mrs %0, cntv_cval_el0" : "=r"(due));
    u64 now = read_cntvct();
    __asm__ volatile("msr cntv_ctl_el0, %0\n\tisb" : : "r"(3UL) : "memory"); /* ENABLE | IMASK: the line drops */
    if (!c->armed) {
        c->irq_at = now;
        return;
    }
    c->armed = 0;
    if (f->elr != (u64)balloon_hvc || (f->x[0] >> MEMOP_EXTENT_SHIFT) == 0) {
        c->irq_at = read_cntvct(); /* before the call's first leg, or after its last */
        return;
    }
    for (u32 i = 0; i < 31; i++) c->saved.x[i] = f->x[i];
    c->saved.elr = f->elr;
    c->saved.spsr = f->spsr;
    c->saved.sp = (u64)f + 288; /* above the vectors' frame (start.S: sub sp, sp, #288): A's SP */
    c->switched = 1;
    c->latency = now - due;
    f->x[0] = cpu;
    f->elr = (u64)task_b_entry;
    f->spsr = 0x3c5; /* EL1h, DAIF masked: task B needs no interrupts */
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    u32 cpu = this_cpu();
    struct cpu *c = &cpus[cpu];
    u64 esr = read_esr();
    if (kind == EXC_CUR_SPX_SYNC && (esr >> 26) == 0x25) { /* a removed page: Xen's stage-2 data abort */
        __asm__ volatile("mrs %0, far_el1" : "=r"(c->far));
        c->elr = f->elr;
        c->faults++;
        f->elr += 4;
        return;
    }
    if (kind == EXC_CUR_SPX_IRQ) {
        u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
        u32 id = iar & 0x3ff;
        if (id >= 1020) return;
        mmio_write32(GICC_BASE + GICC_EOIR, iar);
        if (id == VTIMER_PPI) timer_irq(cpu, f);
        return;
    }
    say("balloon: FAIL cpu %u: exception kind %lu ESR %lx ELR %lx\n", cpu, kind, esr, f->elr);
    system_reset();
}

/*
 * Task B: runs while task A is descheduled mid-call. From here A's continuation exists only in
 * c->saved (guest memory). It checks the pages against the start extent A's x0 holds, then
 * resumes A.
 */
void task_b(u64 cpu)
{
    struct cpu *c = &cpus[cpu];
    const struct task_regs *a = &c->saved;
    u64 done = a->x[0] >> MEMOP_EXTENT_SHIFT;
    c->done_at_switch = done;
    say("balloon: cpu %lu: task A descheduled in XENMEM_decrease_reservation, %lu of %u extents done; task B running\n",
        cpu, done, NPAGES);
    EXPECT(cpu, (a->x[0] & ((1UL << MEMOP_EXTENT_SHIFT) - 1)) == XENMEM_decrease_reservation);
    EXPECT(cpu, a->x[1] == (u64)&c->resv && a->x[16] == __HYPERVISOR_memory_op && a->elr == (u64)balloon_hvc);
    EXPECT(cpu, done > 0 && done < NPAGES);
    u64 out = 0, bad = 0;
    for (u64 i = 0; i < NPAGES; i++) {
        u32 g = gone(c, cpu, area[cpu][i]);
        out += g;
        bad += i < done ? !g : g || !intact(cpu, i);
    }
    EXPECT(cpu, out == done && bad == 0);
    say("balloon: cpu %lu: task B saw %lu pages gone, %lu intact; resuming task A\n", cpu, out, NPAGES - out);
    resume_task(&c->saved);
}

/* Task B's first instruction: its own stack, then task_b(cpu). */
__asm__(".text\n.global task_b_entry\ntask_b_entry:\n"
        "\tadrp x1, stacks_b\n\tadd x1, x1, :lo12:stacks_b\n"
        "\tadd x2, x0, #1\n\tadd x1, x1, x2, lsl #14\n\tmov sp, x1\n"
        "\tbl task_b\n\tb halt\n");

/* Back into a saved task: its SP, ELR, SPSR and every register, then ERET (interrupts off until then). */
__asm__(".text\n.global resume_task\nresume_task:\n"
        "\tmsr daifset, #2\n"
        "\tldr x1, [x0, #264]\n\tmov sp, x1\n"
        "\tldp x1, x2, [x0, #248]\n\tmsr elr_el1, x1\n\tmsr spsr_el1, x2\n"
        "\tldp x2, x3, [x0, #16]\n\tldp x4, x5, [x0, #32]\n\tldp x6, x7, [x0, #48]\n"
        "\tldp x8, x9, [x0, #64]\n\tldp x10, x11, [x0, #80]\n\tldp x12, x13, [x0, #96]\n"
        "\tldp x14, x15, [x0, #112]\n\tldp x16, x17, [x0, #128]\n\tldp x18, x19, [x0, #144]\n"
        "\tldp x20, x21, [x0, #160]\n\tldp x22, x23, [x0, #176]\n\tldp x24, x25, [x0, #192]\n"
        "\tldp x26, x27, [x0, #208]\n\tldp x28, x29, [x0, #224]\n\tldr x30, [x0, #240]\n"
        "\tldp x0, x1, [x0, #0]\n\teret\n");

/* Task A on vCPU `cpu`. */
static void balloon(u32 cpu)
{
    struct cpu *c = &cpus[cpu];
    for (u64 i = 0; i < NPAGES; i++) c->list[i] = (u64)area[cpu][i] >> 12;

    /* GIC CPU interface and the virtual timer's PPI, as Linux's gic_cpu_init and arch_timer do. */
    mmio_write32(GICD + 0x100, 1u << VTIMER_PPI);
    mmio_write32(GICD + 0x400 + VTIMER_PPI / 4 * 4, 0xa0a0a0a0);
    mmio_write32(GICC_BASE + 0x04, 0xf0);
    mmio_write32(GICC_BASE + 0x00, 1);
    irq_enable();

    /* One interrupt first, so the figures below are not its first translation by the engine. */
    c->irq_at = 0;
    timer_arm(0);
    while (!c->irq_at) __asm__ volatile("yield");

    /* How long a leg takes on this host: a small balloon out and back in. */
    u64 t0 = read_cntvct();
    EXPECT(cpu, reserve(c, XENMEM_decrease_reservation, 0, CALIBRATE) == CALIBRATE);
    u64 per_page = (read_cntvct() - t0) / CALIBRATE + 1;
    EXPECT(cpu, reserve(c, XENMEM_populate_physmap, 0, CALIBRATE) == CALIBRATE);

    u64 aim = per_page * NPAGES / 3, attempt;
    s64 rc = 0;
    for (attempt = 1; attempt <= ATTEMPTS; attempt++) {
        fill(cpu);
        c->switched = 0;
        c->irq_at = 0;
        c->armed = 1;
        timer_arm(aim);
        rc = reserve(c, XENMEM_decrease_reservation, 0, NPAGES);
        u64 ended = read_cntvct();
        timer_off();
        c->armed = 0;
        if (c->switched) break;
        /* The interrupt fell before the first leg (aim later) or after the last (aim sooner). */
        aim = c->irq_at && c->irq_at < ended ? aim * 2 : aim / 2 + 1;
        EXPECT(cpu, rc == NPAGES);
        EXPECT(cpu, reserve(c, XENMEM_populate_physmap, 0, NPAGES) == NPAGES);
    }
    EXPECT(cpu, c->switched);
    EXPECT(cpu, rc == NPAGES);
    u64 out = 0;
    for (u64 i = 0; i < NPAGES; i++) out += gone(c, cpu, &area[cpu][i][i & 4095]);
    EXPECT(cpu, out == NPAGES);
    say("balloon: cpu %u: task A resumed: %ld of %u extents done, %lu pages gone (attempt %lu)\n", cpu, rc, NPAGES, out, attempt);

    /* Back in, zeroed. */
    u64 t1 = read_cntvct();
    rc = reserve(c, XENMEM_populate_physmap, 0, NPAGES);
    u64 took = read_cntvct() - t1;
    EXPECT(cpu, rc == NPAGES);
    u64 nonzero = 0;
    for (u64 i = 0; i < NPAGES; i++) nonzero += gone(c, cpu, area[cpu][i]) + area[cpu][i][0] + area[cpu][i][2048] + area[cpu][i][4095];
    EXPECT(cpu, nonzero == 0);
    say("balloon: cpu %u: %u pages populated back, zeroed\n", cpu, NPAGES);
    u64 hz = read_cntfrq();
    say("balloon: cpu %u: timing: interrupt taken %lu ns after it fell due, mid-call; populate of %u pages %lu ns\n", cpu,
        c->latency * 1000000000UL / hz, NPAGES, took * 1000000000UL / hz);
}

void secondary_main(u64 context)
{
    u32 cpu = (u32)context;
    balloon(cpu);
    __atomic_store_n(&cpus[cpu].finished, 1, __ATOMIC_RELEASE);
    halt();
}

int main(u64 x0)
{
    (void)x0;
    mmio_write32(GICD + 0x000, 1); /* GICD_CTLR */
    s64 max = memop(XENMEM_maximum_reservation, &self);
    s64 cur = memop(XENMEM_current_reservation, &self);
    if (max == -ENOSYS) {
        say("balloon: FAIL: XENMEM_maximum_reservation is -ENOSYS (svc-xen's feature memory-reservation is off)\n");
        system_reset();
    }
    EXPECT(0, max > 0 && cur == max);
    for (u32 i = 1; i < NCPUS; i++) {
        if (psci_cpu_on(i, (u64)secondary_entry, i) != 0) break;
        ncpus++;
    }
    say("balloon: %u vCPUs, %ld pages reserved of %ld\n", ncpus, cur, max);
    balloon(0);
    for (u32 i = 1; i < ncpus; i++)
        while (!__atomic_load_n(&cpus[i].finished, __ATOMIC_ACQUIRE)) __asm__ volatile("yield");
    EXPECT(0, memop(XENMEM_current_reservation, &self) == max);
    say("balloon: ok\n");
    psci_system_off();
}
