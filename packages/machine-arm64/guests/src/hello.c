/* Boot + console: prints who it is, asks for the SMCCC version, powers off. */
#include "guest.h"

int main(u64 x0)
{
    struct smccc_res r;
    printf("hello from plugvisor arm64\n");
    printf("x0=%lx mpidr=%lx el=%lu\n", x0, read_mpidr(), read_currentel() >> 2);
    smccc_hvc(SMCCC_VERSION, 0, 0, 0, &r);
    printf("smccc version %lx\n", r.a0);
    psci_system_off();
}
