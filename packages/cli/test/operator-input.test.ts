import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

// Operator input ends in exit 2 and one line naming it — never a stack trace.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const build = fileURLToPath(new URL('../builds/default.json', import.meta.url));
const machineGuest = (name: string) => fileURLToPath(new URL(`../../machine-arm64/guests/bin/${name}.elf`, import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-input-'));

/** Exit 2, one line on stderr containing `naming`, no stack trace, no guest output. */
const refused = (r: { code: number | null; out: string; err: string }, naming: string) => {
  expect(r.code).toBe(2);
  expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  expect(r.err).toContain(naming);
  expect(r.err).not.toMatch(/^ {4}at /m);
  expect(r.out).toBe('');
};

describe('operator input files', () => {
  it('refuses a directory as the image, the snapshot or check --vm (exit 2)', () => {
    refused(plugvisor('run', dir), `image ${dir} is a directory`);
    refused(plugvisor('restore', dir), `snapshot ${dir} is a directory`);
    refused(plugvisor('check', build, build, '--vm', dir), `--vm ${dir} is a directory`);
  });

  it('refuses an empty image and non-regular files (devices, FIFOs) before reading them', () => {
    const empty = join(dir, 'empty.elf');
    writeFileSync(empty, '');
    refused(plugvisor('run', empty), 'image is empty');
    refused(plugvisor('run', '/dev/null'), 'image /dev/null');
    refused(plugvisor('run', '/dev/zero'), 'image /dev/zero is not a regular file');
    const fifo = join(dir, 'fifo');
    if (spawnSync('mkfifo', [fifo]).status === 0) refused(plugvisor('run', fifo), `image ${fifo} is not a regular file`);
  });

  it('refuses ELF program headers that are too small or past the end of the file (exit 2, not a RangeError)', () => {
    const elf = readFileSync(demo);
    const small = Buffer.from(elf);
    small.writeUInt16LE(16, 54); // e_phentsize
    const smallFile = join(dir, 'phentsize.elf');
    writeFileSync(smallFile, small);
    refused(plugvisor('run', smallFile), `image ${smallFile}: ELF program headers`);
    const past = Buffer.from(elf);
    past.writeBigUInt64LE(2n ** 64n - 8n, 32); // e_phoff
    const pastFile = join(dir, 'phoff.elf');
    writeFileSync(pastFile, past);
    refused(plugvisor('run', pastFile), `image ${pastFile}: ELF program headers run past the end of the file`);
  });
});

describe('more operator input files', () => {
  it('names the image and the segment of an ELF segment outside guest RAM (exit 2)', () => {
    const elf = Buffer.from(readFileSync(demo));
    const phoff = Number(elf.readBigUInt64LE(32));
    for (let i = 0; i < elf.readUInt16LE(56); i++) {
      const ph = phoff + i * 56;
      if (elf.readUInt32LE(ph) !== 1) continue; // PT_LOAD
      elf.writeBigUInt64LE(0x1_0000_0000n, ph + 24); // p_paddr: past the 128M of RAM
      break;
    }
    const file = join(dir, 'past-ram.elf');
    writeFileSync(file, elf);
    refused(plugvisor('run', file), `image ${file}: ELF segment 0 [0x100000000, +0x`);
  });

  it('refuses check --vm on a snapshot cut short (exit 2 naming the file and the damage, not exit 1)', () => {
    const snap = join(dir, 'whole.snap');
    if (!unicornAvailable()) return;
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '50', '--snapshot-file', snap).code).toBe(0);
    const whole = readFileSync(snap);
    for (const [n, damage] of [
      [8, 'shorter than its header'],
      [16, 'inside a record header'],
      [40, 'the stream ends first'],
    ] as const) {
      const cut = join(dir, `cut-${n}.snap`);
      writeFileSync(cut, whole.subarray(0, n));
      refused(plugvisor('check', build, build, '--vm', cut), `--vm ${cut} is a damaged snapshot: `);
      expect(plugvisor('check', build, build, '--vm', cut).err).toContain(damage);
    }
  });
});

describe('run options', () => {
  it('refuses --mem beyond what the machine supports, naming the limit', () => {
    for (const mem of ['4G', '3073M', '99999999999999999999']) refused(plugvisor('run', demo, '--mem', mem), `--mem ${mem} is more than the machine supports (at most 3G`);
  });

  it('refuses a --set-reg id or value wider than 64 bits instead of truncating it', () => {
    refused(plugvisor('run', demo, '--set-reg', '0x16030000000160000=0'), "--set-reg id: '0x16030000000160000' is wider than 64 bits");
    refused(plugvisor('run', demo, '--set-reg', '0x6030000000160000=0x1ffffffffffffffff'), "--set-reg value: '0x1ffffffffffffffff' is wider than 64 bits");
  });

  it('refuses an unwritable --snapshot-file or --record before any guest code runs', () => {
    refused(plugvisor('run', demo, '--snapshot-at', '1', '--snapshot-file', dir), `--snapshot-file ${dir} is a directory`);
    refused(plugvisor('run', demo, '--snapshot-at', '1', '--snapshot-file', join(dir, 'no/such/x.snap')), 'is in a directory that does not exist');
    refused(plugvisor('run', demo, '--record', dir), `--record ${dir} is a directory`);
    refused(plugvisor('run', demo, '--record', join(dir, 'no/such/r.json')), `--record ${join(dir, 'no/such/r.json')} is in a directory that does not exist`);
    refused(plugvisor('restore', join(dir, 'missing.snap')), 'does not exist');
  });
});

describe.skipIf(!unicornAvailable())('--snapshot-on-output (arm64 on Unicorn)', () => {
  it('refuses an empty text, and the two triggers together (exit 2, one line)', () => {
    refused(plugvisor('run', machineGuest('hello'), '--snapshot-on-output', ''), '--snapshot-on-output takes the console text to wait for');
    refused(plugvisor('run', machineGuest('hello'), '--snapshot-on-output', 'x', '--snapshot-at', '5'), '--snapshot-at and --snapshot-on-output are two triggers');
    refused(plugvisor('restore', join(dir, 'none.snap'), '--snapshot-on-output', ''), '--snapshot-on-output takes the console text to wait for');
  });

  it("keeps the run's own exit status when the text never comes, and says so", () => {
    const file = join(dir, 'never-printed.snap');
    const r = plugvisor('run', machineGuest('hello'), '--snapshot-on-output', 'no such line', '--snapshot-file', file);
    expect(r.code).toBe(0);
    expect(r.err).toContain('no snapshot was written: the guest never printed "no such line"');
    expect(existsSync(file)).toBe(false);
  });

  it('snapshots a guest at a console line, and the restored guest prints the rest', () => {
    const file = join(dir, 'at-line.snap');
    const whole = plugvisor('run', machineGuest('smp'), '--vcpus', '2');
    const first = plugvisor('run', machineGuest('smp'), '--vcpus', '2', '--snapshot-on-output', 'cpu1 up', '--snapshot-file', file);
    expect(first.code).toBe(0);
    expect(first.err).toContain('snapshot at console output "cpu1 up" written to');
    expect(first.out).toContain('cpu1 up');
    const second = plugvisor('restore', file);
    expect(second.code).toBe(0);
    expect(first.out + second.out).toBe(whole.out);
  });
});

describe.skipIf(!unicornAvailable())('plugvisor demo', () => {
  it('refuses --linux naming a folder without a kernel, and --linux with --no-linux (exit 2)', () => {
    refused(plugvisor('demo', '--linux', dir), `--linux ${dir}: no Image and initramfs.cpio there`);
    refused(plugvisor('demo', '--linux', dir, '--no-linux'), '--linux DIR and --no-linux contradict each other');
  });

  it('--snapshot-at past the demo guest\'s end: exit 2 naming demo, no ENOENT', () => {
    const r = plugvisor('demo', '--snapshot-at', '100000000');
    expect(r.code).toBe(2);
    expect(r.err).toContain('plugvisor demo: no snapshot to restore: the demo guest finished before 100000000 hypercall traps');
    expect(r.err).not.toContain('ENOENT');
    expect(r.err).not.toMatch(/^ {4}at /m);
  });
});

describe.skipIf(!unicornAvailable())('--snapshot-at past the end of the run (arm64 on Unicorn)', () => {
  it("keeps the run's own exit status and says no snapshot was written", () => {
    const file = join(dir, 'never.snap');
    const off = plugvisor('run', machineGuest('hello'), '--snapshot-at', '100000', '--snapshot-file', file);
    expect(off.code).toBe(0);
    expect(off.err).toContain('no snapshot was written: the run ended before 100000 hypercall traps');
    expect(off.err).not.toMatch(/^ {4}at /m);
    expect(existsSync(file)).toBe(false);
    const fault = plugvisor('run', machineGuest('fault'), '--snapshot-at', '100000', '--snapshot-file', file);
    expect(fault.code).toBe(10);
    expect(fault.err).toContain('no snapshot was written');
  });
});
