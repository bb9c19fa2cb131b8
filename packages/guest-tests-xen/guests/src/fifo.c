/*
 * FIFO event channels from a real guest: Linux's consumer (xenlib.c) on a FIFO domain, driven
 * by PPI 31. Phases, each reported to the test service:
 *   1 VMM burst: 64 ports bound to the VMM at 16 priorities; the test raises batches (from its
 *     service call or while the machine is paused) until `param 1` events have been raised;
 *     the guest logs each batch's delivery order and counts every port.
 *   2 loopback: EVTCHNOP_send on an interdomain channel to itself, both directions.
 *   3 IPIs between vCPU 0 and vCPU 1 (bind_ipi), ping-pong; then BUSY: vCPU 1 unmasks a port
 *     whose word has BUSY set (as Xen mid-link) and must spin until it is cleared.
 *   4 masked port: raised while masked (no delivery), unmask re-raises it once.
 *   5 close while linked: the port stays busy (not reallocated) until consumed; never handled.
 *   6 expand_array to 128 pages, the 129th -ENOSPC.
 *   7 EVTCHNOP_reset: back to 2-level (set_priority -ENOSYS, expand_array -EOPNOTSUPP), events
 *     flow through shared_info, and init_control works again.
 */
#include "xen.h"

#define NVMM 64
enum { TAG_FAIL = 0xdead, TAG_ABI = 1, TAG_BIND_VMM = 2, TAG_BATCH = 3, TAG_LOG = 4, TAG_RAISE = 5, TAG_COUNT = 6,
       TAG_SELF = 7, TAG_IPI = 8, TAG_SET_BUSY = 9, TAG_CLEAR_BUSY = 10, TAG_BUSY = 11, TAG_MASK = 12,
       TAG_CLOSE = 13, TAG_EXPAND = 14, TAG_RESET = 15, TAG_DONE = 16 };

static volatile u32 counts[1024];
static volatile u32 total[MAX_VCPUS];
static volatile u32 logbuf[NVMM];
static volatile u32 nlog;
static u32 vmm[NVMM];
static u32 ipi_to0, ipi_to1, busy_port;
static volatile u32 cpu1_cmd, busy_done;

static void on_event(u32 vcpu, u32 port)
{
    if (port < 1024) counts[port]++;
    total[vcpu]++;
    if (vcpu == 0 && nlog < NVMM) logbuf[nlog++] = port;
}

static int linked(u32 port) { return (*event_word_of(port) >> EVTCHN_FIFO_LINKED) & 1; }

void secondary_main(u64 context)
{
    (void)context;
    CHECK(register_vcpu_info(1, VCPU_INFO_GPA + 64) == 0);
    irq_enable();
    CHECK(evtchn_send(ipi_to0) == 0); /* "up" */
    for (u32 k = 1;; k++) {
        block_until(&counts[ipi_to1], k);
        if (cpu1_cmd == 1) { /* BUSY: Linux's unmask must wait for Xen to drop BUSY */
            cpu1_cmd = 0;
            evtchn_unmask(busy_port);
            busy_done = 1;
        }
        CHECK(evtchn_send(ipi_to0) == 0);
    }
}

int main(u64 x0)
{
    (void)x0;
    evtchn_handler = on_event;
    CHECK(map_shared_info(SHINFO_GPA) == 0);
    CHECK(register_vcpu_info(0, VCPU_INFO_GPA) == 0);
    s64 rc = fifo_probe();
    test_report(TAG_ABI, fifo_active, (u64)rc);
    CHECK(rc == 0);
    CHECK(fifo_init_control(1) == 0); /* vCPU 1's block, from the boot vCPU (Linux's percpu_init) */
    CHECK(fifo_init_control(1) == -EINVAL);
    CHECK(fifo_expand_array() == 0);
    irq_enable();

    /* 1: VMM burst */
    for (int i = 0; i < NVMM; i++) {
        CHECK(alloc_unbound(0, &vmm[i]) == 0);
        test_sync(TAG_BIND_VMM, vmm[i], (u64)((i * 7) % 16));
        CHECK(set_priority(vmm[i], (u32)((i * 7) % 16)) == 0);
        evtchn_unmask(vmm[i]);
    }
    test_report(TAG_LOG, (u64)logbuf, (u64)&nlog);
    u32 expect = 0;
    for (u32 batch = 0;; batch++) {
        u32 k = nlog;
        nlog = 0;
        u32 n = (u32)test_sync(TAG_BATCH, k, batch);
        if (!n) break;
        expect += n;
        block_until(&total[0], expect);
    }
    CHECK(total[0] == expect);
    for (int i = 0; i < NVMM; i++) test_report(TAG_COUNT, vmm[i], counts[vmm[i]]);
    printf("burst: %u events on %u ports\n", expect, NVMM);

    /* 2: loopback */
    u32 a, b;
    CHECK(alloc_unbound(DOMID_SELF, &a) == 0);
    CHECK(bind_interdomain(DOMID_SELF, a, &b) == 0);
    evtchn_unmask(a);
    evtchn_unmask(b);
    block_until(&counts[b], 1); /* bind_interdomain sets the new port pending */
    for (u32 k = 1; k <= 1000; k++) {
        CHECK(evtchn_send(a) == 0);
        block_until(&counts[b], k + 1);
        CHECK(evtchn_send(b) == 0);
        block_until(&counts[a], k);
    }
    irq_disable();
    CHECK(evtchn_send(a) == 0);
    CHECK(evtchn_send(a) == 0); /* still pending: the same event */
    irq_enable();
    block_until(&counts[b], 1002);
    test_report(TAG_SELF, counts[a], counts[b]);

    /* 3: IPIs */
    CHECK(bind_ipi(1, &ipi_to1) == 0);
    CHECK(bind_ipi(0, &ipi_to0) == 0);
    CHECK(set_priority(ipi_to1, 0) == 0);
    CHECK(set_priority(ipi_to0, 0) == 0);
    evtchn_unmask(ipi_to1);
    evtchn_unmask(ipi_to0);
    CHECK(psci_cpu_on(1, (u64)secondary_entry, 0) == 0);
    block_until(&counts[ipi_to0], 1);
    const u32 rounds = 1000;
    for (u32 k = 1; k <= rounds; k++) {
        CHECK(evtchn_send(ipi_to1) == 0);
        block_until(&counts[ipi_to0], k + 1);
    }
    test_report(TAG_IPI, counts[ipi_to1], counts[ipi_to0]);
    test_report(TAG_IPI + 100, total[1], upcalls[1]);

    /* BUSY: a masked, idle port whose word Xen is "linking" (BUSY set by the test) */
    busy_port = vmm[2];
    evtchn_mask(busy_port);
    test_sync(TAG_SET_BUSY, busy_port, (u64)event_word_of(busy_port));
    cpu1_cmd = 1;
    CHECK(evtchn_send(ipi_to1) == 0);
    while (busy_retries < 1000) /* vCPU 1 spins in clear_masked_cond (time-sliced with us) */
        ;
    CHECK(!busy_done && (*event_word_of(busy_port) >> EVTCHN_FIFO_MASKED) & 1);
    test_sync(TAG_CLEAR_BUSY, busy_port, (u64)event_word_of(busy_port));
    block_until(&counts[ipi_to0], rounds + 2);
    CHECK(busy_done && !((*event_word_of(busy_port) >> EVTCHN_FIFO_MASKED) & 1));
    test_report(TAG_BUSY, busy_retries >= 1000, busy_done);

    /* 4: masked port, unmask re-raise */
    u32 p = vmm[0], c = counts[p];
    evtchn_mask(p);
    test_sync(TAG_RAISE, p, 0);
    for (volatile int i = 0; i < 10000; i++)
        ;
    CHECK(evtchn_is_pending(p) && counts[p] == c);
    evtchn_unmask(p); /* pending: clear_masked_cond fails, EVTCHNOP_unmask relinks it */
    block_until(&counts[p], c + 1);
    test_report(TAG_MASK, c, counts[p]);

    /* 5: close while linked */
    p = vmm[1];
    c = counts[p];
    irq_disable();
    test_sync(TAG_RAISE, p, 0);
    CHECK(linked(p) && evtchn_is_pending(p));
    CHECK(evtchn_close(p) == 0);
    CHECK(linked(p) && !evtchn_is_pending(p)); /* Xen clears PENDING only */
    u32 q, r;
    CHECK(alloc_unbound(DOMID_SELF, &q) == 0);
    CHECK(q != p); /* still LINKED: busy, skipped */
    u32 u = upcalls[0];
    irq_enable();
    block_until(&upcalls[0], u + 1);
    CHECK(!linked(p) && counts[p] == c); /* consumed, not handled */
    CHECK(alloc_unbound(DOMID_SELF, &r) == 0);
    CHECK(r == p); /* free again */
    test_report(TAG_CLOSE, q, r);
    CHECK(evtchn_close(q) == 0 && evtchn_close(r) == 0);

    /* 6: expand_array to the limit */
    while ((rc = fifo_expand_array()) == 0)
        ;
    test_report(TAG_EXPAND, (u64)fifo_pages, (u64)rc);

    /* 7: reset to 2-level */
    rc = evtchn_reset(DOMID_SELF);
    CHECK(rc == 0);
    use_2level();
    s64 sp = set_priority(1, 0);
    struct evtchn_expand_array e = { .array_gfn = ARRAY_GPA >> 12 };
    s64 ex = evtchn_op(EVTCHNOP_expand_array, &e);
    u32 t0 = total[0];
    CHECK(alloc_unbound(DOMID_SELF, &a) == 0);
    CHECK(bind_interdomain(DOMID_SELF, a, &b) == 0);
    c = counts[b];
    evtchn_unmask(a);
    evtchn_unmask(b);
    block_until(&total[0], t0 + 1); /* the pending-at-bind event, through shared_info */
    CHECK(evtchn_send(a) == 0);
    block_until(&total[0], t0 + 2);
    CHECK(counts[b] == c + 2);
    test_report(TAG_RESET, (u64)sp, (u64)ex);
    test_report(TAG_RESET + 100, a, b);
    CHECK(evtchn_reset(DOMID_SELF) == 0);
    s64 again = fifo_init_control(0);
    test_report(TAG_RESET + 200, (u64)again, 0);
    printf("fifo: done\n");
    test_report(TAG_DONE, 0, 0);
    psci_system_off();
}
