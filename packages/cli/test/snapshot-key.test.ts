import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

// --snapshot-key: snapshots signed with HMAC-SHA-256 when written; with a key, restore and
// check refuse a file that is unsigned or signed with another key.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const build = fileURLToPath(new URL('../builds/default.json', import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-key-'));
const noStack = (err: string) => expect(err).not.toMatch(/^ {4}at /m);

describe.skipIf(!unicornAvailable())('plugvisor --snapshot-key', () => {
  it('signs snapshots and refuses unsigned, mis-signed and edited ones when given a key', () => {
    const key = join(dir, 'key');
    const other = join(dir, 'other');
    writeFileSync(key, Buffer.alloc(32, 7));
    writeFileSync(other, Buffer.alloc(32, 8));
    const signed = join(dir, 'signed.snap');
    const unsigned = join(dir, 'unsigned.snap');
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '5', '--snapshot-file', signed, '--snapshot-key', key).code).toBe(0);
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '5', '--snapshot-file', unsigned).code).toBe(0);
    const uninterrupted = plugvisor('run', demo, '--vcpus', '2');
    expect(uninterrupted.code).toBe(0);

    // the right key: verified, runs to the end
    const ok = plugvisor('restore', signed, '--snapshot-key', key);
    expect(ok.code).toBe(0);
    expect(uninterrupted.out.endsWith(ok.out)).toBe(true);

    for (const [file, keyFile, why] of [
      [unsigned, key, 'is not signed'],
      [signed, other, 'MAC'],
    ] as const) {
      const r = plugvisor('restore', file, '--snapshot-key', keyFile);
      expect(r.code, r.err).toBe(3);
      expect(r.err).toContain(why);
      expect(r.out).toBe('');
      noStack(r.err);
    }

    // an edited byte: refused before anything runs
    const edited = Buffer.from(readFileSync(signed));
    const at = edited.indexOf('"started"');
    edited[at + 1] ^= 0x20; // "Started"
    writeFileSync(join(dir, 'edited.snap'), edited);
    const e = plugvisor('restore', join(dir, 'edited.snap'), '--snapshot-key', key);
    expect(e.code).toBe(3);
    noStack(e.err);

    // check --vm with a key: the record is believed only if authentic
    expect(plugvisor('check', build, build, '--vm', signed, '--snapshot-key', key).code).toBe(0);
    const c = plugvisor('check', build, build, '--vm', signed, '--snapshot-key', other);
    expect(c.code).toBe(2);
    expect(c.err).toContain(`--vm ${signed} is refused`);

    // without a key a signed snapshot still restores
    expect(plugvisor('restore', signed).code).toBe(0);
  });

  it('refuses a key file that is too short, empty or a directory (exit 2, one line)', () => {
    const short = join(dir, 'short');
    writeFileSync(short, 'abc');
    for (const [file, naming] of [
      [short, 'too short'],
      [dir, 'is a directory'],
    ] as const) {
      const r = plugvisor('run', demo, '--snapshot-key', file);
      expect(r.code).toBe(2);
      expect(r.err).toContain(naming);
      expect(r.err.trimEnd().split('\n')).toHaveLength(1);
      expect(r.out).toBe('');
    }
  });
});
