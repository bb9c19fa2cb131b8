import { describe, expect, it } from 'vitest';
import { APPEND, haveLinux, hwrngReads, initLines, kernel, linuxArgs, plugvisor, tail } from './linux-guest.js';

// Debian's stock arm64 kernel boots to its initramfs's /init on the arm64 machine. The guest's
// own drivers find Plugvisor's services: PSCI and SMCCC (drivers/firmware/psci/psci.c), the KVM
// vendor services (drivers/firmware/smccc/kvm_guest.c), the KVM PTP clock
// (drivers/ptp/ptp_kvm_arm.c: ptp0, PTP_SYS_OFFSET_PRECISE) and the SMCCC TRNG
// (drivers/char/hw_random/arm_smccc_trng.c: /dev/hwrng); and an operator's opt-out shows in what
// they find. /init powers off through PSCI SYSTEM_OFF (exit 0).
const KVM_LINE = /smccc: KVM: hypervisor services detected \(0x([0-9a-f]{8}) 0x([0-9a-f]{8}) 0x([0-9a-f]{8}) 0x([0-9a-f]{8})\)/;

describe('Debian arm64 kernel to userspace', () => {
  it('is there: scripts/setup.sh fetches the kernel and builds the initramfs (.cache/linux)', () => {
    expect(haveLinux, `run bash scripts/setup.sh: it fetches Debian's arm64 kernel into ${kernel} and builds the initramfs`).toBe(true);
  });

  it.runIf(haveLinux)('1 vCPU: PSCI 1.3, SMCCC 1.1, the KVM services, ptp0 and hwrng through smccc_trng, then power-off', async () => {
    const r = await plugvisor(linuxArgs(1));
    expect(r.code, tail(r)).toBe(0);
    expect(r.out).toContain(`Kernel command line: ${APPEND}`);
    expect(r.out).toContain('psci: PSCIv1.3 detected in firmware.');
    expect(r.out).toContain('psci: SMC Calling Convention v1.1');
    // KVM_REG_ARM_VENDOR_HYP_BMAP bit 0 (KVM_FEATURES), bit 1 (KVM_PTP)
    expect(r.out.match(KVM_LINE)?.slice(1)).toEqual(['00000000', '00000000', '00000000', '00000003']);
    const init = initLines(r.out);
    expect(init).toContain('cpus online 0');
    expect(init).toContain('ptp0 clock_name=KVM virtual PTP');
    expect(init.some((l) => /^ptp0 precise before device=\d+\.\d{9} realtime=\d+\.\d{9} monoraw=\d+\.\d{9} ok$/.test(l)), tail(r)).toBe(true);
    expect(init).toContain('smccc_trng module ok');
    expect(init).toContain('hwrng current=smccc_trng');
    const reads = hwrngReads(r.out);
    expect(reads).toHaveLength(2);
    expect(reads[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(reads[0]).not.toBe(reads[1]);
    expect(init).toContain('clock monotonic ok');
    expect(init).toContain('checks ok');
    expect(r.out).toContain('reboot: Power down');
  });

  it.runIf(haveLinux)('2 vCPUs: the second CPU comes up through PSCI CPU_ON and the guest still reaches power-off', async () => {
    const r = await plugvisor(linuxArgs(2));
    expect(r.code, tail(r)).toBe(0);
    expect(r.out).toMatch(/smp: Brought up 1 node, 2 CPUs/);
    const init = initLines(r.out);
    expect(init).toContain('cpus online 0-1');
    expect(init).toContain('hwrng current=smccc_trng');
    expect(init).toContain('ptp0 clock_name=KVM virtual PTP');
    expect(init).toContain('checks ok');
  });

  it.runIf(haveLinux)('TRNG opted out: the kernel discovers no TRNG and smccc_trng binds nothing', async () => {
    const r = await plugvisor(linuxArgs(1, '--feature', 'trng=off'));
    expect(r.code, tail(r)).toBe(0);
    const init = initLines(r.out);
    // The module loads (it is only a driver); with no smccc_trng device it binds nothing.
    expect(init).toContain('smccc_trng module ok');
    expect(init).toContain('hwrng current=none');
    expect(init).toContain('hwrng absent');
    expect(init).toContain('ptp0 clock_name=KVM virtual PTP');
    expect(init).toContain('checks ok');
  });

  it.runIf(haveLinux)('PTP opted out: the KVM services bitmap lacks PTP and there is no ptp0', async () => {
    const r = await plugvisor(linuxArgs(1, '--feature', 'kvm-ptp=off'));
    expect(r.code, tail(r)).toBe(0);
    expect(r.out.match(KVM_LINE)?.slice(1)).toEqual(['00000000', '00000000', '00000000', '00000001']);
    const init = initLines(r.out);
    expect(init).toContain('ptp0 absent');
    expect(init).toContain('hwrng current=smccc_trng');
    expect(init).toContain('checks ok');
  });

  it.runIf(haveLinux)('PSCI capped at 1.1 by the operator: the kernel sees 1.1', async () => {
    const r = await plugvisor(linuxArgs(1, '--version', 'psci=1.1'));
    expect(r.code, tail(r)).toBe(0);
    expect(r.out).toContain('psci: PSCIv1.1 detected in firmware.');
  });
});
