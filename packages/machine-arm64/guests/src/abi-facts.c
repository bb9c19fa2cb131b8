/*
 * The machine's guest ABI read back from the guest side (src/abi-guest.test.ts compares every
 * line with machineAbi()). On 2 vCPUs, before anything programs the GIC:
 *   fact PATH=VALUE   a manifest fact as the guest reads it (PATH as flattenMachineFacts names it)
 *   obs NAME=VALUE    an observation the test maps onto the manifest (trap routing, ELR)
 * Registers: GICD_TYPER/IIDR/CTLR/ISENABLER/IPRIORITYR/ICFGR/ID (Arm IHI 0048B 4.3), GICC_IIDR
 * (4.4.15), PL011 UARTFR and ID registers (ARM DDI 0183), CNTFRQ_EL0, ID_AA64PFR0_EL1 and
 * ID_AA64ZFR0_EL1, MPIDR_EL1, CurrentEL/SPSel/DAIF at entry (Arm ARM DDI 0487), ESR_EL1 and
 * ELR_EL1 of an HVC with an unknown immediate, x0/x1 after SMC #1, which INTID each EL1 timer
 * raises (GICC_IAR).
 */
#include "guest.h"

#define GICD_BASE 0x08000000UL

static volatile u32 cpu1_done;
static volatile u64 trap_esr, trap_elr, hvc_at;
static volatile u32 traps;

static u64 entry_pstate(void)
{
    u64 el, spsel, daif;
    __asm__ volatile("mrs %0, CurrentEL" : "=r"(el));
    __asm__ volatile("mrs %0, SPSel" : "=r"(spsel));
    __asm__ volatile("mrs %0, daif" : "=r"(daif));
    return el | spsel | daif;
}

void handle_exception(u64 kind, struct exc_frame *f)
{
    if (kind != EXC_CUR_SPX_SYNC) {
        printf("obs unexpected-exception=%lx\n", kind);
        psci_system_off();
    }
    trap_esr = read_esr();
    trap_elr = f->elr;
    traps++;
    if (f->elr == hvc_at)
        f->elr += 4; /* ELR at the HVC (legacy rule): skip it; past it (Xen's rule): return there */
}

void secondary_main(u64 context)
{
    printf("fact cpu.MPIDR_EL1.byVcpu.vcpu1=0x%lx\n", read_mpidr());
    printf("obs cpu-on-pstate=0x%lx\n", entry_pstate());
    printf("obs cpu-on-context=0x%lx\n", context);
    cpu1_done = 1;
    halt();
}

static const char *trigger(u32 intid)
{
    u32 icfgr = mmio_read32(GICD_BASE + 0xc00 + (intid / 16) * 4);
    return (icfgr >> (2 * (intid % 16) + 1)) & 1 ? "edge" : "level";
}

/* Arms one EL1 timer (0 physical, 1 virtual) to fire now, waits for its interrupt with IRQs
 * masked (WFI wakes on a pending IRQ: Arm ARM D1.16.2), acknowledges it and reports its INTID. */
static void timer_intid(int virt)
{
    if (virt) {
        __asm__ volatile("msr cntv_tval_el0, %0\n\tmsr cntv_ctl_el0, %1\n\tisb" : : "r"(10UL), "r"(1UL));
    } else {
        __asm__ volatile("msr cntp_tval_el0, %0\n\tmsr cntp_ctl_el0, %1\n\tisb" : : "r"(10UL), "r"(1UL));
    }
    u32 iar = 1023;
    for (int i = 0; i < 1000 && (iar & 0x3ff) == 1023; i++) {
        wfi();
        iar = mmio_read32(GICC_BASE + GICC_IAR);
    }
    if (virt)
        __asm__ volatile("msr cntv_ctl_el0, %0\n\tisb" : : "r"(0UL));
    else
        __asm__ volatile("msr cntp_ctl_el0, %0\n\tisb" : : "r"(0UL));
    mmio_write32(GICC_BASE + GICC_EOIR, iar);
    printf("fact timer.%s=0x%x\n", virt ? "virtualTimerIntid" : "physicalTimerIntid", iar & 0x3ff);
}

int main(u64 x0)
{
    printf("fact boot.pstate=0x%lx\n", entry_pstate());
    printf("obs boot-x0=0x%lx\n", x0);

    /* GIC distributor and CPU interface at reset */
    printf("fact gic.distributor.GICD_TYPER.2vcpu=0x%x\n", mmio_read32(GICD_BASE + 0x004));
    printf("fact gic.distributor.GICD_IIDR=0x%x\n", mmio_read32(GICD_BASE + 0x008));
    printf("fact gic.distributor.resetState.GICD_CTLR=0x%x\n", mmio_read32(GICD_BASE + 0x000));
    printf("fact gic.distributor.resetState.GICD_ISENABLER0=0x%x\n", mmio_read32(GICD_BASE + 0x100));
    printf("fact gic.distributor.resetState.GICD_ISENABLER1=0x%x\n", mmio_read32(GICD_BASE + 0x104));
    printf("fact gic.distributor.resetState.GICD_IPRIORITYR0=0x%x\n", mmio_read32(GICD_BASE + 0x400));
    for (int i = 0; i < 3; i++)
        printf("fact gic.distributor.resetState.GICD_ICFGR%d=0x%x\n", i, mmio_read32(GICD_BASE + 0xc00 + 4 * i));
    static const char *const id_names[12] = { "PIDR4", "PIDR5", "PIDR6", "PIDR7", "PIDR0", "PIDR1",
                                              "PIDR2", "PIDR3", "CIDR0", "CIDR1", "CIDR2", "CIDR3" };
    for (int i = 0; i < 12; i++)
        printf("fact gic.distributor.idRegisters.%s=0x%x\n", id_names[i], mmio_read32(GICD_BASE + 0xfd0 + 4 * i));
    printf("fact gic.cpuInterface.GICC_IIDR=0x%x\n", mmio_read32(GICC_BASE + 0xfc));
    static const u32 intids[4] = { 27, 30, 31, 33 };
    for (int i = 0; i < 4; i++)
        printf("fact gic.interrupts.%u.trigger=%s\n", intids[i], trigger(intids[i]));

    /* PL011 */
    printf("fact uart.UARTFR=0x%x\n", mmio_read32(UART_BASE + 0x018));
    static const char *const uart_ids[8] = { "PeriphID0", "PeriphID1", "PeriphID2", "PeriphID3",
                                             "PCellID0", "PCellID1", "PCellID2", "PCellID3" };
    for (int i = 0; i < 8; i++)
        printf("fact uart.idRegisters.%s=0x%x\n", uart_ids[i], mmio_read32(UART_BASE + 0xfe0 + 4 * i));

    /* generic timer */
    printf("fact timer.CNTFRQ_EL0=0x%lx\n", read_cntfrq());
    timer_intid(0);
    timer_intid(1);

    /* ID registers (ID_AA64ZFR0_EL1 by encoding: op0 3, op1 0, CRn 0, CRm 4, op2 4) */
    u64 pfr0, zfr0;
    __asm__ volatile("mrs %0, id_aa64pfr0_el1" : "=r"(pfr0));
    __asm__ volatile("mrs %0, s3_0_c0_c4_4" : "=r"(zfr0));
    printf("obs ID_AA64PFR0_EL1=0x%lx\n", pfr0);
    printf("obs ID_AA64ZFR0_EL1=0x%lx\n", zfr0);

    /* MPIDR of both vCPUs */
    printf("fact cpu.MPIDR_EL1.byVcpu.vcpu0=0x%lx\n", read_mpidr());
    s64 rc = psci_cpu_on(1, (u64)secondary_entry, 0x5eed);
    if (rc != 0)
        printf("obs cpu-on-failed=0x%lx\n", (u64)rc);
    while (!cpu1_done)
        ;

    /* trap routing: HVC #0 and SMC #0 (SMCCC_VERSION), HVC #0xEA1 (Xen op 7 with 1..5) */
    struct smccc_res r;
    smccc_hvc(SMCCC_VERSION, 0, 0, 0, &r);
    printf("obs hvc-0x0-x0=0x%lx\n", r.a0);
    smccc_smc(SMCCC_VERSION, 0, 0, 0, &r);
    printf("obs smc-0x0-x0=0x%lx\n", r.a0);
    printf("obs hvc-0xea1-x0=0x%lx\n", (u64)xen_hypercall(7, 1, 2, 3, 4, 5));

    /* HVC with an unknown immediate, x0 = SMCCC_VERSION: an SMCCC answer (KVM's rule) or an
       exception (Xen's, legacy), its ESR and where ELR points */
    register u64 hx0 __asm__("x0") = SMCCC_VERSION;
    __asm__ volatile("adr x9, 1f\n\tstr x9, [%1]\n1:\thvc #0x123" : "+r"(hx0) : "r"(&hvc_at) : "x1", "x2", "x3", "x9", "memory");
    u64 hvc_x0 = hx0, at = hvc_at;
    printf("obs hvc-other-traps=%u\n", traps);
    printf("obs hvc-other-x0=0x%lx\n", hvc_x0);
    printf("obs hvc-other-esr=0x%lx\n", trap_esr);
    printf("obs hvc-other-elr-minus-hvc=0x%lx\n", traps ? trap_elr - at : 0);

    /* SMC with a non-zero immediate: x0 and x1 after */
    register u64 x0r __asm__("x0") = 0x77;
    register u64 x1r __asm__("x1") = 0x55;
    __asm__ volatile("smc #1" : "+r"(x0r), "+r"(x1r) : : "memory");
    u64 smc_x0 = x0r, smc_x1 = x1r;
    printf("fact traps.smc.other.x0=0x%lx\n", smc_x0);
    printf("obs smc-other-x1=0x%lx\n", smc_x1);
    printf("obs done=1\n");
    psci_system_off();
}
