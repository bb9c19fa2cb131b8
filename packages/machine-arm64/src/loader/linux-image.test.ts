import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ImageError } from '@plugvisor/core';
import { Arm64Machine } from '../machine.js';
import { unicornAvailable } from '../ffi/unicorn.js';
import { TestRouter } from '../testing/test-router.js';
import { GUEST_BIN_DIR } from '../testing/guests.js';
import { bootLinuxImage, isArm64Image, parseArm64ImageHeader, planLinuxBoot, virtBoard } from './linux-image.js';

const KERNEL = readFileSync(join(GUEST_BIN_DIR, 'linux-hello.Image'));

/** An Image header (Documentation/arch/arm64/booting.rst) followed by `body` zero bytes. */
function image(fields: { textOffset?: bigint; imageSize?: bigint; flags?: bigint; magic?: number } = {}, body = 64): Uint8Array {
  const b = new Uint8Array(64 + body);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x14000010, true); // b +0x40
  dv.setBigUint64(8, fields.textOffset ?? 0n, true);
  dv.setBigUint64(16, fields.imageSize ?? BigInt(b.length), true);
  dv.setBigUint64(24, fields.flags ?? 0xan, true);
  dv.setUint32(56, fields.magic ?? 0x644d5241, true);
  return b;
}
const board = virtBoard(16 << 20, [0n]);

describe('arm64 Linux Image header (booting.rst)', () => {
  it('reads text_offset, image_size and the flags', () => {
    const h = parseArm64ImageHeader(KERNEL);
    expect(isArm64Image(KERNEL)).toBe(true);
    expect(h.textOffset).toBe(0x80000n);
    expect(h.imageSize).toBe(BigInt(KERNEL.length));
    expect(h).toMatchObject({ bigEndian: false, pageSize: 4096, placeAnywhere: true });
    expect(parseArm64ImageHeader(image({ flags: 0b0110n })).pageSize).toBe(65536);
  });

  it('takes text_offset 0x80000 when image_size is 0 (kernels before v3.17)', () => {
    const h = parseArm64ImageHeader(image({ imageSize: 0n, textOffset: 0n }));
    expect(h.textOffset).toBe(0x80000n);
    expect(h.imageSize).toBe(128n);
  });

  it('refuses a big-endian kernel, a bad magic, a short file and a bad header, one line each', () => {
    const refuse = (b: Uint8Array) => {
      try {
        parseArm64ImageHeader(b);
      } catch (e) {
        expect(e).toBeInstanceOf(ImageError);
        expect((e as Error).message).not.toContain('\n');
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refuse(image({ flags: 0b1011n }))).toMatch(/big-endian/);
    expect(refuse(image({ magic: 0x644d5242 }))).toMatch(/no "ARM\\x64" magic at offset 56/);
    expect(refuse(new Uint8Array(10))).toMatch(/shorter than its 64-byte header/);
    expect(refuse(image({ textOffset: 0x123n }))).toMatch(/text_offset 0x123/);
    expect(refuse(image({ textOffset: 0x20_0000n }))).toMatch(/text_offset/);
    expect(refuse(image({ imageSize: 8n }))).toMatch(/image_size 0x8 is smaller than the file/);
    expect(refuse(image({ flags: 0x1an }))).toMatch(/reserved/);
  });
});

describe('placement (booting.rst §2-§4)', () => {
  it('puts the kernel at a 2 MB aligned base + text_offset, the DTB 8-byte aligned in its own 2 MB region above it, then the initrd', () => {
    const p = planLinuxBoot({ kernel: image({ textOffset: 0x80000n, imageSize: 0x30_0000n }), initrd: new Uint8Array(5000), bootargs: 'x', board });
    expect(p.kernel).toBe(0x4008_0000n);
    expect(p.entry).toBe(p.kernel);
    expect(p.kernelEnd).toBe(0x4038_0000n);
    expect(p.dtb).toBe(0x4040_0000n);
    expect(p.x0).toBe(p.dtb);
    expect(p.dtb % 8n).toBe(0n);
    expect(p.initrd).toEqual({ start: 0x4060_0000n, end: 0x4060_0000n + 5000n });
    // The tree names that initrd.
    expect(Buffer.from(p.dtbBytes).includes(Buffer.from('linux,initrd-start'))).toBe(true);
    expect(Buffer.from(p.dtbBytes).readUInt32BE(0)).toBe(0xd00dfeed);
  });

  it('refuses a kernel, an initrd or a tree that does not fit in RAM', () => {
    expect(() => planLinuxBoot({ kernel: image({ imageSize: 32n << 20n }), board })).toThrow(/the kernel \(image_size 32 MiB\) does not fit in RAM: needs 32 MiB of the 16 MiB RAM \(--mem\)/);
    expect(() => planLinuxBoot({ kernel: image({ imageSize: (15n << 20n) + 8n }), board })).toThrow(/with its device tree does not fit/);
    expect(() => planLinuxBoot({ kernel: KERNEL, initrd: new Uint8Array(14 << 20), board })).toThrow(/the initrd \(14 MiB\) with the kernel does not fit in RAM/);
  });
});

describe.skipIf(!unicornAvailable())('booting an Image on the arm64 machine', () => {
  it('enters the test kernel at EL1, MMU off, x0 = the DTB, x1..x3 = 0; it walks the tree to the bootargs and powers off', () => {
    let out = '';
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
    try {
      m.attach(new TestRouter(m));
      const plan = bootLinuxImage(m, { kernel: KERNEL, bootargs: 'console=ttyAMA0 hello' });
      const r = m.run();
      expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expect(out).toBe(
        'linux-hello: Image at 0x0000000040080000, x0 = 0x0000000040200000\n' +
          `linux-hello: fdt magic d00dfeed, totalsize 0x${plan.dtbBytes.length.toString(16).padStart(16, '0')}\n` +
          'linux-hello: bootargs "console=ttyAMA0 hello"\n' +
          'linux-hello: PSCI SYSTEM_OFF\n',
      );
      // The tree in RAM is the one planned.
      const inRam = new Uint8Array(plan.dtbBytes.length);
      m.memory.read(plan.dtb, inRam);
      expect(inRam).toEqual(plan.dtbBytes);
    } finally {
      m.dispose();
    }
  });

  it('the test kernel fails loudly when x0 holds no device tree (its checks are real)', () => {
    let out = '';
    const m = new Arm64Machine({ vcpus: 1, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
    try {
      m.attach(new TestRouter(m));
      m.loadImage(KERNEL, 0x4008_0000n);
      m.boot(0x4008_0000n, 0x4040_0000n); // zeroed RAM, not a tree
      const r = m.run();
      expect(r.kind).not.toBe('system-event');
      expect(out).toContain('FAIL: no FDT magic at x0\n');
    } finally {
      m.dispose();
    }
  });
});

const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;
describe('the committed test kernel', () => {
  it.skipIf(!haveCross)('rebuilds byte-for-byte from guests/src/linux-hello.S', () => {
    const out = mkdtempSync(join(tmpdir(), 'plugvisor-image-'));
    const r = spawnSync('bash', [fileURLToPath(new URL('../../guests/build.sh', import.meta.url)), out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(out, 'linux-hello.Image'))).toEqual(KERNEL);
  });
});
