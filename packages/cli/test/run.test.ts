import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';
import { rebuildGuestImages } from '@plugvisor/core/testing';

// `plugvisor run` / `restore` / `demo` as operators use them: the built binary, real guests.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const machineGuest = (name: string) => fileURLToPath(new URL(`../../machine-arm64/guests/bin/${name}.elf`, import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-run-'));

describe.skipIf(!unicornAvailable())('plugvisor run / restore (arm64 on Unicorn)', () => {
  it('boots the demo guest: it finds the default build the way Linux probes, and powers off (exit 0)', () => {
    const r = plugvisor('run', demo, '--vcpus', '2');
    expect(r.code).toBe(0);
    expect(r.out).toContain('PSCI: version 1.3');
    expect(r.out).toContain('SMCCC: version 1.1');
    expect(r.out).toContain('TRNG: version 1.0, RND64 yes, uuid 00e0210d-eb118443-44527080-4c5a4e55');
    expect(r.out).toContain('KVM vendor services: UID matches KVM, features bitmap 0x3');
    expect(r.out).toContain('total 108049000');
  });

  it('applies --feature, --version and --set-reg before the first run', () => {
    const r = plugvisor('run', demo, '--vcpus', '2', '--version', 'psci=1.0', '--set-reg', '0x6030000000160000=0', '--feature', 'kvm-ptp=off');
    expect(r.code).toBe(0);
    expect(r.out).toContain('PSCI: version 1.0');
    expect(r.out).toContain('TRNG: not present');
    expect(r.out).toContain('features bitmap 0x1');
  });

  it('refuses a bad --set-reg with its errno before any guest code runs', () => {
    const einval = plugvisor('run', demo, '--set-reg', '0x6030000000160000=0x2');
    expect(einval.code).toBe(2);
    expect(einval.err).toMatch(/--set-reg 0x6030000000160000=0x2 rejected: EINVAL: KVM_REG_ARM_STD_BMAP/);
    expect(einval.out).toBe('');
    const enoent = plugvisor('run', demo, '--set-reg', '0x6030000000160007=0');
    expect(enoent.code).toBe(2);
    expect(enoent.err).toContain('ENOENT');
    expect(plugvisor('run', demo, '--set-reg', '0x6030000000140000=0x10004').err).toMatch(/EINVAL: KVM_REG_ARM_PSCI_VERSION/);
    expect(plugvisor('run', demo, '--feature', 'nope=on').err).toContain("ENOENT: unknown feature 'nope'");
  });

  it('reports bad input and guest faults with their own exit statuses', () => {
    expect(plugvisor('run', '/nonexistent.elf').code).toBe(2);
    expect(plugvisor('run', demo, '--vcpus', 'x').code).toBe(2);
    const fault = plugvisor('run', machineGuest('fault'));
    expect(fault.code).toBe(10);
    expect(fault.err).toMatch(/guest fault: .*vCPU 0.*PC/);
  });

  it('snapshots mid-run and restores in a new process with an identical transcript', () => {
    const snap = join(dir, 'a.snap');
    const whole = plugvisor('run', demo, '--vcpus', '2');
    const first = plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '15000', '--snapshot-file', snap);
    expect(first.code).toBe(0);
    expect(first.err).toContain('snapshot after 15000 hypercall traps written to');
    const second = plugvisor('restore', snap);
    expect(second.code).toBe(0);
    expect(first.out + second.out).toBe(whole.out);
    expect(first.out.length).toBeGreaterThan(0);
    expect(second.out).toContain('total 108049000');
  });

  it('refuses to restore a default VM onto a build without TRNG, naming it; a VM with TRNG cleared moves', () => {
    const snap = join(dir, 'b.snap');
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '15000', '--snapshot-file', snap).code).toBe(0);
    const refused = plugvisor('restore', snap, '--build', fixture('no-trng.json'));
    expect(refused.code).toBe(3);
    expect(refused.err).toContain("feature 'trng' is enabled in the VM but the build has no @plugvisor/svc-trng");
    expect(refused.out).toBe('');

    const cleared = join(dir, 'c.snap');
    const first = plugvisor('run', demo, '--vcpus', '2', '--set-reg', '0x6030000000160000=0', '--snapshot-at', '15000', '--snapshot-file', cleared);
    expect(first.out).toContain('TRNG: not present');
    const moved = plugvisor('restore', cleared, '--build', fixture('no-trng.json'));
    expect(moved.code).toBe(0);
    expect(moved.out).toContain('total 108049000');
  });

  it('refuses, in check and restore, a destination that differs only in what TRNG_VERSION answers, naming call and probe', () => {
    const snap = join(dir, 'e.snap');
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '15000', '--snapshot-file', snap).code).toBe(0);
    const defaultBuild = fileURLToPath(new URL('../builds/default.json', import.meta.url));
    const checked = plugvisor('check', defaultBuild, fixture('trng-1-1.json'), '--vm', snap);
    expect(checked.code).toBe(3);
    expect(checked.out).toMatch(/feature 'trng' of @plugvisor\/svc-trng@[\d.]+ answers differently than the VM saw: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
    const refused = plugvisor('restore', snap, '--build', fixture('trng-1-1.json'));
    expect(refused.code).toBe(3);
    expect(refused.err).toMatch(/TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
    expect(refused.out).toBe('');

    // A VM that cannot see TRNG does not care what TRNG_VERSION answers.
    const cleared = join(dir, 'f.snap');
    expect(plugvisor('run', demo, '--vcpus', '2', '--set-reg', '0x6030000000160000=0', '--snapshot-at', '15000', '--snapshot-file', cleared).code).toBe(0);
    const moved = plugvisor('restore', cleared, '--build', fixture('trng-1-1.json'));
    expect(moved.code).toBe(0);
    expect(moved.out).toContain('total 108049000');
  });

  it('refuses a corrupted snapshot whole, with the reason', () => {
    const snap = join(dir, 'd.snap');
    plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '15000', '--snapshot-file', snap);
    const bytes = readFileSync(snap);
    bytes[bytes.length - 100]! ^= 0x40;
    const bad = join(dir, 'bad.snap');
    writeFileSync(bad, bytes);
    const r = plugvisor('restore', bad);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/refused: .*(CRC-32|digest)/);
    expect(r.out).toBe('');
  });

  // With Debian's kernel in .cache/linux (scripts/setup.sh), the main job goes on with a Linux
  // guest across processes and builds (about half a minute more).
  it('runs the main job: plugvisor demo', { timeout: 240_000 }, () => {
    const r = plugvisor('demo');
    expect(r.code, r.out.slice(-3000) + r.err.slice(-2000)).toBe(0);
    expect(r.out).toContain('transcripts identical');
    if (!existsSync(fileURLToPath(new URL('../../../.cache/linux/initramfs.cpio', import.meta.url)))) return;
    expect(r.out).toContain('init: hwrng current=smccc_trng');
    expect(r.err).toContain("feature 'trng' is enabled in the VM but the build has no @plugvisor/svc-trng");
    expect(r.out).toContain("Linux: the guest's view did not change across processes and builds unless its operator asked");
  });

  it('keeps the committed demo image in step with its source when the cross compiler is here', () => {
    const cc = spawnSync('aarch64-linux-gnu-gcc', ['--version']);
    if (cc.status !== 0) return; // no cross compiler: the committed image is what runs
    const r = rebuildGuestImages(fileURLToPath(new URL('../guests/build.sh', import.meta.url)), dirname(demo));
    expect(r.built).toEqual(['demo.elf']);
    expect(r.committed).toEqual(['demo.elf']);
    expect(r.differing).toEqual([]);
  });
});
