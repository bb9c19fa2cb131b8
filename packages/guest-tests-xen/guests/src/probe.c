/*
 * Linux's event-channel bring-up on Xen/Arm (xen_guest_init + xen_init_IRQ): map shared_info
 * with XENMEM_add_to_physmap, register vCPU 0's vcpu_info, then try the FIFO ABI
 * (init_control on vCPU 0) and fall back to 2-level on any error. Prints which ABI it got.
 * Then it runs `param 1` rounds of event traffic in whichever ABI it chose: one event from the
 * VMM (raised by the test at the round's sync point) and one loopback EVTCHNOP_send; in a
 * 2-level domain each round also asks for FIFO again and reports what the three FIFO ops say
 * (a hibernated guest resumed on a newer build must keep seeing -ENOSYS).
 */
#include "xen.h"

enum { TAG_FAIL = 0xdead, TAG_ABI = 1, TAG_BIND_VMM = 2, TAG_ROUND = 3, TAG_FIFO_OPS = 4, TAG_DONE = 5 };

static volatile u32 counts[4096];
static volatile u32 total;

static void on_event(u32 vcpu, u32 port)
{
    (void)vcpu;
    counts[port]++;
    total++;
}

int main(u64 x0)
{
    (void)x0;
    evtchn_handler = on_event;
    CHECK(map_shared_info(SHINFO_GPA) == 0);
    CHECK(register_vcpu_info(0, VCPU_INFO_GPA) == 0);
    s64 rc = fifo_probe();
    test_report(TAG_ABI, fifo_active, (u64)rc);
    if (fifo_active) CHECK(fifo_expand_array() == 0);

    u32 vport, a, b;
    CHECK(alloc_unbound(0, &vport) == 0);
    test_sync(TAG_BIND_VMM, vport, 0);
    CHECK(alloc_unbound(DOMID_SELF, &a) == 0);
    CHECK(bind_interdomain(DOMID_SELF, a, &b) == 0);
    evtchn_unmask(vport);
    evtchn_unmask(a);
    evtchn_unmask(b);
    irq_enable();
    block_until(&counts[b], 1); /* pending at bind */

    u32 rounds = (u32)test_param(1);
    for (u32 r = 1; r <= rounds; r++) {
        test_sync(TAG_ROUND, r, vport); /* the VMM raises vport */
        CHECK(evtchn_send(a) == 0);
        block_until(&counts[vport], r);
        block_until(&counts[b], r + 1);
        if (!fifo_active) {
            struct evtchn_init_control ic = { .control_gfn = CONTROL_GPA >> 12, .offset = 0, .vcpu = 0 };
            struct evtchn_expand_array e = { .array_gfn = ARRAY_GPA >> 12 };
            s64 i = evtchn_op(EVTCHNOP_init_control, &ic);
            s64 x = evtchn_op(EVTCHNOP_expand_array, &e);
            s64 s = set_priority(b, 0);
            test_report(TAG_FIFO_OPS, r, ((u64)(u16)-i << 32) | ((u64)(u16)-x << 16) | (u64)(u16)-s);
            if (i || x || s) printf("round %u: %s, FIFO ops %ld %ld %ld\n", r, fifo_active ? "FIFO" : "2-level", i, x, s);
        } else {
            printf("round %u: FIFO\n", r);
        }
    }
    printf("probe: %s ABI, %u rounds, vmm %u, loopback %u, total %u\n", fifo_active ? "FIFO" : "2-level", rounds, counts[vport], counts[b], total);
    test_report(TAG_DONE, counts[vport], counts[b]);
    psci_system_off();
}
