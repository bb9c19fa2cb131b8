/*
 * PSCI CPU_ON of vCPU 1 at an entry point it cannot execute from (built once per target by
 * build.sh: -DTARGET=...): past the end of RAM, the PL011 UART (a device), the hypervisor's
 * EL3 trampoline ROM, an address with bit 63 set, all ones. PSCI allows CPU_ON to answer
 * INVALID_ADDRESS; KVM does not check the address (Linux arch/arm64/kvm/psci.c
 * kvm_psci_vcpu_on), the call succeeds and the target faults when it runs. vCPU 0 then asks
 * AFFINITY_INFO a bounded number of times and powers off: a hypervisor that keeps restarting
 * the target instead of stopping with a guest fault lets the run end with SYSTEM_OFF.
 */
#include "guest.h"

#ifndef TARGET
#error "build with -DTARGET=<entry point>"
#endif

#define PSCI_AFFINITY_INFO_64 0xC4000004u

int main(u64 x0)
{
    (void)x0;
    struct smccc_res r;
    s64 rc = psci_cpu_on(1, (u64)TARGET, 0);
    printf("cpu0: CPU_ON(1, %lx) returned %ld\n", (u64)TARGET, rc);
    u64 on = 0;
    for (int i = 0; i < 200000; i++) {
        smccc_hvc(PSCI_AFFINITY_INFO_64, 1, 0, 0, &r);
        if (r.a0 == 0) on++;
    }
    printf("cpu0: vCPU 1 reported ON %lu times\n", on);
    psci_system_off();
}
