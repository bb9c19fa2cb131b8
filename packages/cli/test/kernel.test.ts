import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

// `plugvisor run --kernel Image`: the arm64 Linux boot protocol (Documentation/arch/arm64/booting.rst)
// with the built binary and the test kernel of packages/machine-arm64/guests/src/linux-hello.S,
// which checks x0 holds a device tree, walks it for /chosen's bootargs and powers off through PSCI.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const kernel = fileURLToPath(new URL('../../machine-arm64/guests/bin/linux-hello.Image', import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-kernel-'));
/** A one-line operator error: exit 2, no stack trace, nothing on stdout. */
const refused = (r: { code: number | null; out: string; err: string }) => {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err.trim().split('\n')).toHaveLength(1);
  expect(r.err).not.toMatch(/\n\s+at /);
  return r.err;
};

describe.skipIf(!unicornAvailable())('plugvisor run --kernel (arm64 Linux Image)', () => {
  it('boots the test kernel with x0 = the generated tree; it prints the bootargs and powers off (exit 0)', () => {
    const r = plugvisor('run', '--kernel', kernel, '--append', 'hello');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('linux-hello: Image at 0x0000000040080000, x0 = 0x0000000040200000\n');
    expect(r.out).toMatch(/linux-hello: fdt magic d00dfeed, totalsize 0x0{13}[0-9a-f]{3}\n/);
    expect(r.out).toContain('linux-hello: bootargs "hello"\n');
    expect(r.out).toContain('linux-hello: PSCI SYSTEM_OFF\n');
    expect(r.out).not.toContain('FAIL');
  });

  it('writes the tree it passed with --dtb-out: one cpu per vCPU, the initrd in /chosen', () => {
    const dtb = join(dir, 'board.dtb');
    const initrd = join(dir, 'initrd');
    writeFileSync(initrd, Buffer.alloc(3000, 7));
    const r = plugvisor('run', '--kernel', kernel, '--vcpus', '2', '--initrd', initrd, '--append', 'console=ttyAMA0 quiet', '--dtb-out', dtb);
    expect(r.code).toBe(0);
    expect(r.out).toContain('linux-hello: bootargs "console=ttyAMA0 quiet"\n');
    const blob = readFileSync(dtb);
    expect(blob.readUInt32BE(0)).toBe(0xd00dfeed);
    expect(blob.readUInt32BE(4)).toBe(blob.length);
    expect(r.out).toContain(`totalsize 0x${blob.length.toString(16).padStart(16, '0')}`);
    for (const s of ['cpu@0\0', 'cpu@1\0', 'linux,initrd-start\0', 'console=ttyAMA0 quiet\0']) expect(blob.includes(Buffer.from(s))).toBe(true);
    const dtc = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', dtb], { encoding: 'utf8' });
    if (dtc.status === 0) expect(dtc.stdout).toContain('linux,initrd-end = <0x00 0x40400bb8>;'); // 0x4040_0000 + 3000
  });

  it('refuses a big-endian Image, a bad header, an Image too large for RAM, in one line with exit 2', () => {
    const img = readFileSync(kernel);
    const be = Buffer.from(img);
    be.writeUInt32LE(0xb, 24); // flags bit 0: big-endian
    writeFileSync(join(dir, 'be.Image'), be);
    expect(refused(plugvisor('run', '--kernel', join(dir, 'be.Image')))).toMatch(/kernel .*be\.Image: the Image is a big-endian kernel/);
    const bad = Buffer.from(img);
    bad.write('NOPE', 56, 'latin1');
    writeFileSync(join(dir, 'bad.Image'), bad);
    expect(refused(plugvisor('run', '--kernel', join(dir, 'bad.Image')))).toMatch(/not an arm64 Linux Image: no "ARM\\x64" magic at offset 56/);
    expect(refused(plugvisor('run', '--kernel', kernel, '--mem', '1M'))).toMatch(/does not fit in RAM: needs .* of the 1 MiB RAM \(--mem\)/);
    const big = join(dir, 'big.initrd');
    writeFileSync(big, Buffer.alloc(4 << 20));
    expect(refused(plugvisor('run', '--kernel', kernel, '--mem', '4M', '--initrd', big))).toMatch(/the initrd \(4 MiB\) with the kernel does not fit in RAM/);
  });

  it('refuses --kernel with IMAGE, --raw or x86, and --append/--initrd/--dtb-out without --kernel', () => {
    expect(refused(plugvisor('run', '--kernel', kernel, kernel))).toMatch(/--kernel replaces IMAGE/);
    expect(refused(plugvisor('run', '--kernel', kernel, '--raw', '0x40000000'))).toMatch(/--raw is for raw images/);
    expect(refused(plugvisor('run', '--kernel', kernel, '--arch', 'x86_64'))).toMatch(/--arch must be arm64/);
    expect(refused(plugvisor('run', kernel, '--append', 'x'))).toMatch(/--append goes with --kernel/);
    expect(refused(plugvisor('run', '--kernel', join(dir, 'missing')))).toMatch(/kernel .*missing does not exist/);
    expect(refused(plugvisor('run', '--kernel', kernel, '--dtb-out', join(dir, 'no', 'such', 'f')))).toMatch(/--dtb-out .* is in a directory that does not exist/);
  });
});
