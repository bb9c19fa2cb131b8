/* Guest faults; the test picks one with TEST_GET_MODE:
 * 0 = load from an address outside RAM and devices, 1 = UNDEF with VBAR_EL1 = 0,
 * 2 = recursive fault (the exception handler itself faults). */
#include "guest.h"
#include "test-calls.h"

void handle_exception(u64 kind, struct exc_frame *f)
{
    (void)kind; (void)f;
    printf("in handler: faulting again\n");
    __asm__ volatile("udf #1");
}

int main(u64 x0)
{
    (void)x0;
    struct smccc_res r;
    smccc_hvc(TEST_GET_MODE, 0, 0, 0, &r);
    printf("fault mode %lu\n", r.a0);
    if (r.a0 == 0) {
        printf("value %x\n", mmio_read32(0x10000000UL));
    } else if (r.a0 == 1) {
        __asm__ volatile("msr vbar_el1, xzr; isb; udf #0");
    } else {
        __asm__ volatile("udf #0");
    }
    printf("still alive?\n");
    psci_system_off();
}
