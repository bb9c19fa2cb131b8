/*
 * Multi-vCPU fairness: vCPU 0 starts vCPU 1 (PSCI CPU_ON), then busy-waits (no WFI) until
 * vCPU 1 says it is alive; vCPU 1 busy-waits for vCPU 0's "go". Neither finishes unless the
 * hypervisor preempts the spinning vCPU in favour of the other.
 */
#include "guest.h"

static volatile u32 alive, go, done;

void secondary_main(u64 context)
{
    printf("cpu1 up: mpidr=%lx context=%lx\n", read_mpidr(), context);
    alive = 1;
    while (!go)
        ;
    printf("cpu1 saw go\n");
    done = 1;
    halt();
}

int main(u64 x0)
{
    (void)x0;
    printf("cpu0: starting cpu1\n");
    s64 rc = psci_cpu_on(1, (u64)secondary_entry, 0x1234);
    printf("cpu0: CPU_ON returned %ld\n", rc);
    while (!alive)
        ;
    printf("cpu0: cpu1 is alive\n");
    go = 1;
    while (!done)
        ;
    printf("cpu0: done\n");
    psci_system_off();
}
