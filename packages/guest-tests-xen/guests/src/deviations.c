/*
 * Where svc-xen and svc-evtchn-fifo once differed from Xen on Arm, probed from a real guest and
 * reported to the test, which pins what each build/VM configuration answers (svc-xen README,
 * "Deviations and limits"; svc-evtchn-fifo README, "Deviations kept and fixed"):
 *  - XENMEM_add_to_physmap(XENMAPSPACE_shared_info) at a gfn outside RAM (Xen: 0; kept -EINVAL);
 *  - XENMAPSPACE_dev_mmio from this domU, into itself and into domain 0 (Xen's
 *    xatp_permission_check: -EACCES; -ENOSYS / -EPERM without `xen-fidelity`);
 *  - shared_info's wallclock as the guest finds it after mapping the page (Xen's
 *    arch_domain_create: update_domain_wallclock_time, wc_version 2; 0 without `xen-fidelity`),
 *    read with Linux's xen_read_wallclock version loop;
 *  - FIFO (needs evtchn-fifo): an event raised for vCPU 1 before vCPU 1 has a control block is
 *    dropped before PENDING is set (xen/common/event_fifo.c evtchn_fifo_set_pending), so once
 *    vCPU 1 has one, Linux's unmask finds nothing and nothing reaches vCPU 1's queue; the next
 *    event does.
 */
#include "xen.h"

enum { TAG_FAIL = 0xdead, TAG_PHYSMAP = 1, TAG_WALLCLOCK = 2, TAG_WC_NSEC = 3, TAG_FIFO_LOST = 4, TAG_FIFO_NEXT = 5, TAG_DONE = 6 };

#define OUTSIDE_RAM_GFN 0x50000UL /* 0x5000_0000: past the 16 MiB of RAM at 0x4000_0000 */
#define PL011_GFN 0x9000UL        /* the UART's MMIO frame (0x0900_0000) */

static s64 add_to_physmap(u16 domid, u32 space, u64 idx, u64 gpfn)
{
    struct xen_add_to_physmap x = { .domid = domid, .space = space, .idx = idx, .gpfn = gpfn };
    return xen_hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, (u64)&x, 0, 0, 0);
}

static u32 vcpu1_events;
static void on_event(u32 vcpu, u32 port)
{
    (void)port;
    if (vcpu == 1) vcpu1_events++;
}

int main(u64 x0)
{
    (void)x0;
    evtchn_handler = on_event;
    volatile struct shared_info *sh = (volatile struct shared_info *)SHINFO_GPA;

    s64 outside = add_to_physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, OUTSIDE_RAM_GFN);
    s64 mmio_self = add_to_physmap(DOMID_SELF, XENMAPSPACE_dev_mmio, PL011_GFN, OUTSIDE_RAM_GFN);
    s64 mmio_dom0 = add_to_physmap(0, XENMAPSPACE_dev_mmio, PL011_GFN, OUTSIDE_RAM_GFN);
    test_report(TAG_PHYSMAP, (u64)-outside, ((u64)(u32)-mmio_self << 32) | (u32)-mmio_dom0);
    printf("add_to_physmap: shared_info outside RAM %ld, dev_mmio self %ld, dev_mmio dom0 %ld\n", outside, mmio_self, mmio_dom0);

    CHECK(map_shared_info(SHINFO_GPA) == 0);
    u32 version, sec, nsec, hi;
    do { /* xen_read_wallclock: retry while odd or changed */
        version = sh->wc_version;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        sec = sh->wc_sec;
        nsec = sh->wc_nsec;
        hi = sh->wc_sec_hi;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while ((sh->wc_version & 1) || version != sh->wc_version);
    test_report(TAG_WALLCLOCK, version, ((u64)hi << 32) | sec);
    test_report(TAG_WC_NSEC, nsec, 0);
    printf("wallclock: version %u, sec %lu, nsec %u\n", version, ((u64)hi << 32) | sec, nsec);

    CHECK(register_vcpu_info(0, VCPU_INFO_GPA) == 0);
    if (test_param(1)) {
        CHECK(fifo_probe() == 0); /* vCPU 0's control block only */
        CHECK(fifo_expand_array() == 0); /* MASKED-filled, as Linux */
        u32 a, b;
        CHECK(alloc_unbound(DOMID_SELF, &a) == 0);
        CHECK(bind_interdomain(DOMID_SELF, a, &b) == 0);
        volatile u32 *wb = event_word_of(b);
        __atomic_fetch_and(wb, ~(1u << EVTCHN_FIFO_PENDING), __ATOMIC_SEQ_CST); /* the bind's event, acked */
        struct evtchn_bind_vcpu bv = { .port = b, .vcpu = 1 };
        CHECK(evtchn_op(EVTCHNOP_bind_vcpu, &bv) == 0);
        CHECK(evtchn_send(a) == 0); /* for vCPU 1, which has no control block yet */
        u32 word_after_send = *wb;
        CHECK(fifo_init_control(1) == 0); /* as Linux's cpu-up prepare step does, from vCPU 0 */
        evtchn_unmask(b); /* Linux: EVTCHNOP_unmask only if PENDING */
        volatile struct evtchn_fifo_control_block *cb1 = (volatile struct evtchn_fifo_control_block *)(CONTROL_GPA + 4096UL);
        test_report(TAG_FIFO_LOST, word_after_send, ((u64)cb1->ready << 32) | cb1->head[7]);
        printf("fifo: word after send to vCPU 1 without a control block %x, vCPU 1 ready %x head[7] %u\n", word_after_send, cb1->ready, cb1->head[7]);
        CHECK(evtchn_send(a) == 0); /* now vCPU 1 has a control block: linked, queue 7 ready */
        test_report(TAG_FIFO_NEXT, *wb, ((u64)cb1->ready << 32) | cb1->head[7]);
        printf("fifo: next send: word %x, vCPU 1 ready %x head[7] %u (port %u)\n", *wb, cb1->ready, cb1->head[7], b);
    }
    test_report(TAG_DONE, 0, 0);
    psci_system_off();
}
