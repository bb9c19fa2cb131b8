/*
 * Bench guest: how fast an event gets from the VMM to a C handler in the guest.
 *   param 0 = 0: FIFO. Linux's probe and consumer (xenlib.c); one port bound to the VMM. The
 *                handler reports each event with TEST_SYNC(HANDLED, port) — the test's clock
 *                stops there.
 *   param 0 = 1: baseline. No event channels: the test raises PPI 31 on the machine directly and
 *                the IRQ vector reports it the same way; the difference is what the event-channel
 *                layer (svc-xen + svc-evtchn-fifo + the guest's consumer) costs.
 * Between events the guest waits in TEST_BLOCK (parked, as a Linux vCPU in WFI).
 */
#include "xen.h"

enum { TAG_FAIL = 0xdead, TAG_BIND_VMM = 2, TAG_READY = 3, TAG_HANDLED = 4 };
static volatile u32 handled, forever;

static void on_event(u32 vcpu, u32 port)
{
    (void)vcpu;
    handled++;
    test_sync(TAG_HANDLED, port, handled);
}

static void on_irq(u32 intid)
{
    if (intid != GUEST_EVTCHN_PPI) return;
    handled++;
    test_sync(TAG_HANDLED, 0, handled);
}

int main(u64 x0)
{
    (void)x0;
    if (test_param(0) == 0) {
        evtchn_handler = on_event;
        CHECK(map_shared_info(SHINFO_GPA) == 0);
        CHECK(register_vcpu_info(0, VCPU_INFO_GPA) == 0);
        CHECK(fifo_probe() == 0);
        CHECK(fifo_expand_array() == 0);
        u32 p;
        CHECK(alloc_unbound(0, &p) == 0);
        test_sync(TAG_BIND_VMM, p, 0);
        evtchn_unmask(p);
    } else {
        irq_hook = on_irq;
    }
    irq_enable();
    test_sync(TAG_READY, 0, 0);
    for (;;) block_until(&forever, 1);
}
