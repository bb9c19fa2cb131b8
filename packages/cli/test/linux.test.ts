import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Debian's stock arm64 kernel (fetched by scripts/setup.sh into .cache/linux/Image, pinned by
// version and hash) on the arm64 machine: a guest nobody here wrote discovers PSCI, SMCCC and
// the KVM hypervisor services through its own drivers (Linux drivers/firmware/psci/psci.c,
// drivers/firmware/smccc/kvm_guest.c), and an operator's opt-out shows in what it finds.
// The boot does not reach userspace yet (the machine has no GIC distributor or timer); each run
// stops once the discovery lines are out.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const kernel = fileURLToPath(new URL('../../../.cache/linux/Image', import.meta.url));
const KVM_LINE = /smccc: KVM: hypervisor services detected \(0x([0-9a-f]{8}) 0x([0-9a-f]{8}) 0x([0-9a-f]{8}) 0x([0-9a-f]{8})\)/;

/** Boots the kernel until `until` matches its console (then stops it); its console so far. */
function bootUntil(args: string[], until: RegExp, seconds = 60): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'run', '--kernel', kernel, '--mem', '512M', '--append', 'earlycon=pl011,0x09000000 console=ttyAMA0', ...args]);
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no ${until} within ${seconds} s; console:\n${out.slice(-2000)}`));
    }, seconds * 1000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (until.test(out)) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve(out);
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!until.test(out)) reject(new Error(`exited ${code} before ${until}; console:\n${out.slice(-2000)}`));
    });
  });
}

describe('Debian arm64 kernel', () => {
  it('is there: scripts/setup.sh fetches it (.cache/linux/Image)', () => {
    expect(existsSync(kernel), 'run bash scripts/setup.sh: it fetches Debian\'s arm64 kernel').toBe(true);
  });

  it.runIf(existsSync(kernel))('finds PSCI 1.3, SMCCC 1.1 and the KVM services (features and PTP) of the default build', async () => {
    const out = await bootUntil([], KVM_LINE);
    expect(out).toContain('Machine model: linux,dummy-virt');
    expect(out).toContain('psci: PSCIv1.3 detected in firmware.');
    expect(out).toContain('psci: SMC Calling Convention v1.1');
    // KVM_REG_ARM_VENDOR_HYP_BMAP bit 0 (KVM_FEATURES), bit 1 (KVM_PTP)
    expect(out.match(KVM_LINE)!.slice(1)).toEqual(['00000000', '00000000', '00000000', '00000003']);
  });

  it.runIf(existsSync(kernel))('with kvm-ptp opted out, the kernel finds no PTP service', async () => {
    const out = await bootUntil(['--feature', 'kvm-ptp=off'], KVM_LINE);
    expect(out.match(KVM_LINE)!.slice(1)).toEqual(['00000000', '00000000', '00000000', '00000001']);
  });

  it.runIf(existsSync(kernel))('with PSCI capped at 1.1 by the operator, the kernel sees 1.1', async () => {
    const out = await bootUntil(['--version', 'psci=1.1'], KVM_LINE);
    expect(out).toContain('psci: PSCIv1.1 detected in firmware.');
  });
});
