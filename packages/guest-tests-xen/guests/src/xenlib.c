/*
 * The guest side of Xen event channels, mirroring Linux's drivers/xen/events/events_fifo.c (init_control_block, evtchn_fifo_setup's expand step,
 * clear_masked_cond with BUSY, clear_linked, consume_one_event, __evtchn_fifo_handle_events),
 * events_2l.c (the selector/pending scan) and events_base.c (__xen_evtchn_do_upcall, and the
 * probe in xen_init_IRQ: FIFO if init_control succeeds, else 2-level). The upcall arrives as
 * PPI 31 through the vector table; the guest acknowledges it at the GIC CPU interface.
 */
#include "xen.h"

int fifo_active;
int fifo_pages;
void (*evtchn_handler)(u32 vcpu, u32 port);
void (*irq_hook)(u32 intid);
volatile u32 upcalls[MAX_VCPUS], spurious_irqs;
volatile u32 busy_retries;

struct cpu_events {
    volatile struct vcpu_info *vi;
    volatile struct evtchn_fifo_control_block *cb;
    u32 head[EVTCHN_FIFO_MAX_QUEUES]; /* Linux's per-cpu cpu_queue.head */
};
static struct cpu_events cpus[MAX_VCPUS];
static volatile u32 *event_array[MAX_EVENT_ARRAY_PAGES];
static volatile struct shared_info *const shinfo = (volatile struct shared_info *)SHINFO_GPA;

/* ---- hypercalls ------------------------------------------------------------------------- */

s64 evtchn_op(u32 cmd, void *arg) { return xen_hypercall(__HYPERVISOR_event_channel_op, cmd, (u64)arg, 0, 0, 0); }

s64 map_shared_info(u64 gpa)
{
    struct xen_add_to_physmap x = { .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = gpa >> 12 };
    return xen_hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, (u64)&x, 0, 0, 0);
}

s64 register_vcpu_info(u32 vcpu, u64 gpa)
{
    struct vcpu_register_vcpu_info r = { .mfn = gpa >> 12, .offset = (u32)(gpa & 0xfff), .rsvd = 0 };
    s64 rc = xen_hypercall(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, vcpu, (u64)&r, 0, 0);
    if (rc == 0) cpus[vcpu].vi = (volatile struct vcpu_info *)gpa;
    return rc;
}

s64 alloc_unbound(u16 remote_dom, u32 *port)
{
    struct evtchn_alloc_unbound a = { .dom = DOMID_SELF, .remote_dom = remote_dom, .port = 0 };
    s64 rc = evtchn_op(EVTCHNOP_alloc_unbound, &a);
    *port = a.port;
    return rc;
}

s64 bind_interdomain(u16 remote_dom, u32 remote_port, u32 *port)
{
    struct evtchn_bind_interdomain b = { .remote_dom = remote_dom, .remote_port = remote_port };
    s64 rc = evtchn_op(EVTCHNOP_bind_interdomain, &b);
    *port = b.local_port;
    return rc;
}

s64 bind_ipi(u32 vcpu, u32 *port)
{
    struct evtchn_bind_ipi b = { .vcpu = vcpu };
    s64 rc = evtchn_op(EVTCHNOP_bind_ipi, &b);
    *port = b.port;
    return rc;
}

s64 evtchn_send(u32 port) { struct evtchn_port p = { port }; return evtchn_op(EVTCHNOP_send, &p); }
s64 evtchn_close(u32 port) { struct evtchn_port p = { port }; return evtchn_op(EVTCHNOP_close, &p); }
s64 evtchn_unmask_hypercall(u32 port) { struct evtchn_port p = { port }; return evtchn_op(EVTCHNOP_unmask, &p); }
s64 evtchn_reset(u16 dom) { struct evtchn_reset r = { dom }; return evtchn_op(EVTCHNOP_reset, &r); }
s64 set_priority(u32 port, u32 prio) { struct evtchn_set_priority s = { port, prio }; return evtchn_op(EVTCHNOP_set_priority, &s); }

/* ---- test service ------------------------------------------------------------------------ */

u64 test_param(u64 index) { struct smccc_res r; smccc_hvc(TEST_PARAM, index, 0, 0, &r); return r.a0; }
void test_report(u64 tag, u64 a, u64 b) { smccc_hvc(TEST_REPORT, tag, a, b, 0); }
u64 test_sync(u64 tag, u64 a, u64 b) { struct smccc_res r; smccc_hvc(TEST_SYNC, tag, a, b, &r); return r.a0; }
void block_until(volatile u32 *p, u32 v)
{
    while (*p < v) smccc_hvc(TEST_BLOCK, (u64)p, v, 0, 0);
}

/* ---- FIFO (events_fifo.c) ---------------------------------------------------------------- */

static inline volatile u32 *event_word(u32 port) { return &event_array[port / EVENT_WORDS_PER_PAGE][port % EVENT_WORDS_PER_PAGE]; }
volatile u32 *event_word_of(u32 port) { return event_word(port); }
static inline u32 cmpxchg32(volatile u32 *p, u32 old, u32 new)
{
    __atomic_compare_exchange_n(p, &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return old; /* the value found */
}

/* init_control_block: clear the page, zero the local heads, EVTCHNOP_init_control. */
s64 fifo_init_control(u32 vcpu)
{
    u64 page = CONTROL_GPA + 4096UL * vcpu;
    volatile u64 *p = (volatile u64 *)page;
    for (int i = 0; i < 512; i++) p[i] = 0;
    for (int q = 0; q < EVTCHN_FIFO_MAX_QUEUES; q++) cpus[vcpu].head[q] = 0;
    struct evtchn_init_control ic = { .control_gfn = page >> 12, .offset = 0, .vcpu = vcpu };
    s64 rc = evtchn_op(EVTCHNOP_init_control, &ic);
    if (rc == 0) cpus[vcpu].cb = (volatile struct evtchn_fifo_control_block *)page;
    return rc;
}

/* xen_evtchn_fifo_init: on the boot vCPU; any error means 2-level (xen_init_IRQ). */
s64 fifo_probe(void)
{
    s64 rc = fifo_init_control(this_vcpu());
    fifo_active = rc == 0;
    if (fifo_active) {
        puts("xen:events: Using FIFO-based ABI\n");
    } else {
        printf("xen:events: Using 2-level ABI (init_control: %ld)\n", rc);
        use_2level();
    }
    return rc;
}

/* evtchn_fifo_setup's expansion step: a page of MASKED words, then EVTCHNOP_expand_array. */
s64 fifo_expand_array(void)
{
    /* past the limit Linux would not ask; ask anyway with a spare page to see Xen's -ENOSPC */
    u64 slot = fifo_pages < MAX_EVENT_ARRAY_PAGES ? (u64)fifo_pages : MAX_EVENT_ARRAY_PAGES;
    volatile u32 *page = (volatile u32 *)(ARRAY_GPA + 4096UL * slot);
    for (int i = 0; i < EVENT_WORDS_PER_PAGE; i++) page[i] = 1u << EVTCHN_FIFO_MASKED;
    struct evtchn_expand_array e = { .array_gfn = (u64)page >> 12 };
    s64 rc = evtchn_op(EVTCHNOP_expand_array, &e);
    if (rc == 0 && fifo_pages < MAX_EVENT_ARRAY_PAGES) event_array[fifo_pages++] = page;
    return rc;
}

/* clear_masked_cond: false if the port is pending (the caller must ask Xen to unmask). */
static int clear_masked_cond(volatile u32 *word)
{
    u32 w = *word, old, new;
    do {
        if (!(w & (1u << EVTCHN_FIFO_MASKED))) return 1;
        if (w & (1u << EVTCHN_FIFO_PENDING)) return 0;
        if (w & (1u << EVTCHN_FIFO_BUSY)) busy_retries++;
        old = w & ~(1u << EVTCHN_FIFO_BUSY); /* never clear MASKED while Xen holds BUSY */
        new = old & ~(1u << EVTCHN_FIFO_MASKED);
        w = cmpxchg32(word, old, new);
    } while (w != old);
    return 1;
}

/* clear_linked: clear LINKED and LINK together, return the old LINK. */
static u32 clear_linked(volatile u32 *word)
{
    u32 w = *word, old, new;
    do {
        old = w;
        new = w & ~((1u << EVTCHN_FIFO_LINKED) | EVTCHN_FIFO_LINK_MASK);
    } while ((w = cmpxchg32(word, old, new)) != old);
    return w & EVTCHN_FIFO_LINK_MASK;
}

static void consume_one_event(u32 cpu, volatile struct evtchn_fifo_control_block *cb, u32 q, u32 *ready)
{
    u32 head = cpus[cpu].head[q];
    if (head == 0) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* virt_rmb: word up to date before head */
        head = cb->head[q];
    }
    u32 port = head;
    volatile u32 *word = event_word(port);
    head = clear_linked(word);
    if (head == 0) *ready &= ~(1u << q);
    u32 w = *word;
    if ((w & (1u << EVTCHN_FIFO_PENDING)) && !(w & (1u << EVTCHN_FIFO_MASKED))) {
        __atomic_fetch_and(word, ~(1u << EVTCHN_FIFO_PENDING), __ATOMIC_SEQ_CST); /* irq ack: clear_evtchn */
        evtchn_handler(cpu, port);
    }
    cpus[cpu].head[q] = head;
}

static void fifo_handle_events(u32 cpu)
{
    volatile struct evtchn_fifo_control_block *cb = cpus[cpu].cb;
    if (!cb) return;
    u32 ready = __atomic_exchange_n(&cb->ready, 0, __ATOMIC_SEQ_CST);
    while (ready) {
        u32 q = (u32)__builtin_ctz(ready);
        consume_one_event(cpu, cb, q, &ready);
        ready |= __atomic_exchange_n(&cb->ready, 0, __ATOMIC_SEQ_CST);
    }
}

/* ---- 2-level (events_2l.c) --------------------------------------------------------------- */

void use_2level(void)
{
    fifo_active = 0;
    fifo_pages = 0;
    for (int i = 0; i < MAX_VCPUS; i++) cpus[i].cb = 0;
    /* xen_init_IRQ masks every port before use */
    for (int i = 0; i < 64; i++) __atomic_store_n(&shinfo->evtchn_mask[i], ~0UL, __ATOMIC_SEQ_CST);
    /*
     * Selector bits a FIFO period left set (register_vcpu_info sets them all) would swallow the
     * next 2-level upcall: with every port masked they mean nothing, so start clean.
     */
    for (int i = 0; i < MAX_VCPUS; i++)
        if (cpus[i].vi) __atomic_store_n(&cpus[i].vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
}

static void l2_handle_events(u32 cpu)
{
    volatile struct vcpu_info *vi = cpus[cpu].vi;
    u64 sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
    while (sel) {
        u32 idx = (u32)__builtin_ctzl(sel);
        sel &= sel - 1;
        u64 bits;
        while ((bits = shinfo->evtchn_pending[idx] & ~shinfo->evtchn_mask[idx]) != 0) {
            u32 bit = (u32)__builtin_ctzl(bits);
            __atomic_fetch_and(&shinfo->evtchn_pending[idx], ~(1UL << bit), __ATOMIC_SEQ_CST); /* clear_evtchn */
            evtchn_handler(cpu, idx * 64 + bit);
        }
    }
}

/* ---- mask / unmask ----------------------------------------------------------------------- */

void evtchn_mask(u32 port)
{
    if (fifo_active) __atomic_fetch_or(event_word(port), 1u << EVTCHN_FIFO_MASKED, __ATOMIC_SEQ_CST);
    else __atomic_fetch_or(&shinfo->evtchn_mask[port / 64], 1UL << (port % 64), __ATOMIC_SEQ_CST);
}

void evtchn_unmask(u32 port)
{
    if (fifo_active) {
        if (!clear_masked_cond(event_word(port))) evtchn_unmask_hypercall(port);
        return;
    }
    /* evtchn_2l_unmask on an HVM-like (Arm) guest: a pending port goes through Xen */
    if (shinfo->evtchn_pending[port / 64] & (1UL << (port % 64))) evtchn_unmask_hypercall(port);
    else __atomic_fetch_and(&shinfo->evtchn_mask[port / 64], ~(1UL << (port % 64)), __ATOMIC_SEQ_CST);
}

int evtchn_is_pending(u32 port)
{
    if (fifo_active) return (*event_word(port) >> EVTCHN_FIFO_PENDING) & 1;
    return (shinfo->evtchn_pending[port / 64] >> (port % 64)) & 1;
}

/* ---- the upcall (events_base.c) ---------------------------------------------------------- */

static void xen_evtchn_do_upcall(u32 cpu)
{
    volatile struct vcpu_info *vi = cpus[cpu].vi;
    upcalls[cpu]++;
    do {
        vi->evtchn_upcall_pending = 0;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (fifo_active) fifo_handle_events(cpu);
        else l2_handle_events(cpu);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    } while (vi->evtchn_upcall_pending);
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind == EXC_CUR_SPX_IRQ) {
        u32 iar = mmio_read32(GICC_BASE + GICC_IAR);
        u32 id = iar & 0x3ff;
        if (id == 1023) {
            spurious_irqs++;
            return;
        }
        if (irq_hook) irq_hook(id);
        if (id == GUEST_EVTCHN_PPI && cpus[this_vcpu()].vi) xen_evtchn_do_upcall(this_vcpu());
        mmio_write32(GICC_BASE + GICC_EOIR, iar);
        return;
    }
    printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
    test_report(0xdead, kind, f->elr);
    psci_system_off();
}
