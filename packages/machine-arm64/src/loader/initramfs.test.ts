import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ImageError } from '@plugvisor/core';
import { S_IFDIR, S_IFREG, buildInitramfs, parseInitramfs } from './initramfs.js';

const LINUX_GUEST_DIR = fileURLToPath(new URL('../../guests/linux/', import.meta.url));
const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;
const haveCpio = spawnSync('cpio', ['--version']).status === 0;
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

describe('buildInitramfs (newc cpio, Linux Documentation/driver-api/early-userspace/buffer-format.rst)', () => {
  it('writes the exact header, padding and trailer of the format', () => {
    const a = buildInitramfs([{ path: '/init', mode: 0o755, data: bytes('abcde') }]);
    // ino 1, mode 0100755, uid 0, gid 0, nlink 1, mtime 0, size 5, dev 0:0, rdev 0:0, namesize 5, check 0
    const head = '070701' + ['1', '81ed', '0', '0', '1', '0', '5', '0', '0', '0', '0', '5', '0'].map((h) => h.padStart(8, '0')).join('');
    expect(text(a.subarray(0, 110))).toBe(head);
    expect(text(a.subarray(110, 116))).toBe('init\0\0'); // 110 + 5 rounded up to 116
    expect(text(a.subarray(116, 124))).toBe('abcde\0\0\0'); // data padded to 4
    expect(text(a.subarray(124 + 6 + 88, 124 + 110))).toBe('0000000b00000000'); // trailer: namesize 11, check 0
    expect(text(a.subarray(124 + 110, 124 + 110 + 11))).toBe('TRAILER!!!\0');
    expect(a.length % 4).toBe(0);
  });

  it('round-trips: directories first (parents before children, implied parents added), then files', () => {
    const init = Uint8Array.from({ length: 4097 }, (_, i) => (i * 7) & 0xff);
    const mod = bytes('xz module');
    const a = buildInitramfs(
      [
        { path: '/init', mode: 0o755, data: init },
        { path: 'lib/modules/arm_smccc_trng.ko.xz', mode: 0o644, data: mod },
        { path: 'empty', mode: 0o600, data: new Uint8Array(0) },
      ],
      ['/sys', '/dev', 'proc'],
    );
    const e = parseInitramfs(a);
    expect(e.map((x) => x.name)).toEqual(['dev', 'lib', 'proc', 'sys', 'lib/modules', 'init', 'lib/modules/arm_smccc_trng.ko.xz', 'empty']);
    expect(e.slice(0, 5).every((x) => x.mode === (S_IFDIR | 0o755) && x.data.length === 0 && x.nlink === 2)).toBe(true);
    expect(e[5]).toMatchObject({ mode: S_IFREG | 0o755, nlink: 1, data: init });
    expect(e[6]).toMatchObject({ mode: S_IFREG | 0o644, data: mod });
    expect(e[7].data.length).toBe(0);
    expect(new Set(e.map((x) => x.ino)).size).toBe(e.length);
    // deterministic
    expect(Buffer.compare(a, buildInitramfs([{ path: '/init', mode: 0o755, data: init }, { path: 'lib/modules/arm_smccc_trng.ko.xz', mode: 0o644, data: mod }, { path: 'empty', mode: 0o600, data: new Uint8Array(0) }], ['sys', 'dev', 'proc']))).toBe(0);
  });

  it.skipIf(!haveCpio)('is read by GNU cpio with the same names, modes and contents', () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugvisor-initramfs-'));
    try {
      const init = Uint8Array.from({ length: 1001 }, (_, i) => (i * 13) & 0xff);
      const a = buildInitramfs([{ path: '/init', mode: 0o755, data: init }, { path: 'a/b.ko.xz', mode: 0o644, data: bytes('module') }], ['dev']);
      const list = execFileSync('cpio', ['-t', '--quiet'], { input: a }).toString().trim().split('\n');
      expect(list).toEqual(['a', 'dev', 'init', 'a/b.ko.xz']);
      execFileSync('cpio', ['-i', '-d', '--quiet', '--no-absolute-filenames'], { input: a, cwd: dir });
      expect(Buffer.compare(readFileSync(join(dir, 'init')), init)).toBe(0);
      expect(statSync(join(dir, 'init')).mode & 0o7777).toBe(0o755);
      expect(readFileSync(join(dir, 'a/b.ko.xz'), 'latin1')).toBe('module');
      expect(statSync(join(dir, 'dev')).isDirectory()).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses paths the kernel would not create, duplicates and non-permission modes', () => {
    const f = (path: string, mode = 0o644) => ({ path, mode, data: new Uint8Array(1) });
    for (const bad of ['', '/', 'a//b', 'a/../b', './init', 'a/', 'x\0y', 'TRAILER!!!']) {
      expect(() => buildInitramfs([f(bad)]), bad).toThrow(ImageError);
    }
    expect(() => buildInitramfs([f('init'), f('/init')])).toThrow(/listed twice/);
    expect(() => buildInitramfs([f('dev')], ['dev'])).toThrow(/listed twice/);
    expect(() => buildInitramfs([f('a'), f('a/b')])).toThrow(/both a file and a directory/);
    expect(() => buildInitramfs([f('init', 0o100755)])).toThrow(/not permission bits/);
  });

  it('parseInitramfs reports malformed archives as ImageError', () => {
    const good = buildInitramfs([{ path: 'init', mode: 0o755, data: bytes('x') }]);
    expect(() => parseInitramfs(good.subarray(0, 50))).toThrow(/truncated header/);
    const badMagic = good.slice();
    badMagic[5] = 0x37; // 070707: the old portable format
    expect(() => parseInitramfs(badMagic)).toThrow(/bad magic/);
    expect(() => parseInitramfs(good.subarray(0, 116))).toThrow(/truncated or unterminated entry at offset 0/); // data cut
    const noTrailer = good.subarray(0, 120);
    expect(() => parseInitramfs(noTrailer)).toThrow(/truncated header at offset 120/);
  });
});

describe('guests/linux/init (the initramfs /init)', () => {
  it('is a static aarch64 executable', () => {
    const init = readFileSync(join(LINUX_GUEST_DIR, 'init'));
    expect(text(init.subarray(0, 4))).toBe('\x7fELF');
    expect(init.readUInt16LE(16)).toBe(2); // ET_EXEC: static, not PIE
    expect(init.readUInt16LE(18)).toBe(183); // EM_AARCH64
  });

  it.skipIf(!haveCross)('rebuilds byte-for-byte from init.c with aarch64-linux-gnu-gcc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugvisor-linux-init-'));
    try {
      execFileSync('bash', [join(LINUX_GUEST_DIR, 'build.sh'), join(dir, 'init')], { stdio: 'pipe' });
      expect(Buffer.compare(readFileSync(join(dir, 'init')), readFileSync(join(LINUX_GUEST_DIR, 'init')))).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
