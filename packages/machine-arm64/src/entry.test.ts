/**
 * A vCPU that cannot execute from its entry point — CPU_ON's, the ELF's, a restored PC — past
 * the end of RAM, at the PL011 UART, at the hypervisor's EL3 trampoline, with bit 63 set, or all
 * ones: every path ends with exit 10 and one line naming the vCPU and the address, quickly.
 * Before, these spun forever (Unicorn 2.0.1 returns success without the invalid-fetch hook),
 * left a zombie vCPU that AFFINITY_INFO reported ON and a run that exited 0, or exited 1 with an
 * engine error. Real guests and the real CLI, each run in a child process with a time limit (a
 * hang cannot be interrupted in-process: the engine runs synchronously).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { readStream, RecordType, StreamWriter, type StreamRecord } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { TestRouter } from './testing/test-router.js';
import { GUEST_BIN_DIR, guestImage } from './testing/guests.js';
import { encodeVcpuBlob, parseVcpuBlob } from './cpu/state.js';

const bin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-entry-'));
/** A run that stops at once takes ~0.3 s (node start-up, loading the build); a hang is killed here. */
const CASE_TIMEOUT_MS = 10_000;
/** The bound the test holds each faulting run to (wall clock of the whole process, start-up included). */
const WITHIN_MS = 3000;

function plugvisor(...args: string[]) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: CASE_TIMEOUT_MS, killSignal: 'SIGKILL' });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr, ms: performance.now() - t0 };
}

/** The default RAM is 128 MiB at 0x4000_0000. */
const BAD: [string, bigint, RegExp][] = [
  ['past-ram', 0x4800_0000n, /outside RAM \(RAM is 0x40000000\.\.0x47ffffff\)/],
  ['uart', 0x0900_0000n, /a device \(PL011 UART\)/],
  ['trampoline', 0x0400_0100n, /the hypervisor's trampoline ROM/],
  ['bit63', 0x8000_0000_4000_0000n, /outside RAM/],
  ['all-ones', 0xffff_ffff_ffff_ffffn, /misaligned/],
];

function expectFault(r: ReturnType<typeof plugvisor>, vcpu: number, pc: bigint, why: RegExp) {
  expect(r.signal, `killed after ${CASE_TIMEOUT_MS} ms: a hang`).toBeNull();
  expect(r.code, r.err).toBe(10);
  const lines = r.err.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(`guest fault on vCPU ${vcpu} at PC 0x${pc.toString(16)}: cannot start there: `);
  expect(lines[0]).toMatch(why);
  expect(r.ms).toBeLessThan(WITHIN_MS);
}

describe('entry points a vCPU cannot run from (CLI, real guests)', () => {
  beforeAll(() => {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: build the workspace first (pnpm build)`);
  });

  for (const [name, pc, why] of BAD) {
    it(`CPU_ON to ${name} (0x${pc.toString(16)}): the target vCPU 1 faults, exit 10`, () => {
      const r = plugvisor('run', `${GUEST_BIN_DIR}cpu-on-${name}.elf`, '--vcpus', '2');
      // As KVM, CPU_ON does not check the address (the call succeeds); the target is on and
      // faults at the next scheduling point, before vCPU 0 gets another slice: no zombie that
      // AFFINITY_INFO reports ON, no run that ends with SYSTEM_OFF.
      expect(r.out).toBe('');
      expectFault(r, 1, pc, why);
    });
  }

  for (const [name, pc, why] of BAD) {
    it(`ELF entry point ${name} (0x${pc.toString(16)}): vCPU 0 faults, exit 10`, () => {
      const elf = Buffer.from(guestImage('hello'));
      elf.writeBigUInt64LE(pc, 24); // e_entry (ELF64 header)
      const file = join(dir, `entry-${name}.elf`);
      writeFileSync(file, elf);
      const r = plugvisor('run', file);
      expect(r.out).toBe('');
      expectFault(r, 0, pc, why);
    });
  }

  describe('a restored PC', () => {
    let records: StreamRecord[];
    beforeAll(() => {
      const snap = join(dir, 'hello.snap');
      const r = plugvisor('run', `${GUEST_BIN_DIR}hello.elf`, '--snapshot-at', '1', '--snapshot-file', snap);
      expect(r.code, r.err).toBe(0);
      records = readStream(readFileSync(snap));
    });

    /** The snapshot with vCPU 0's PC replaced, resealed (the stream's checksums are not keyed). */
    function withPc(pc: bigint): Uint8Array {
      const w = new StreamWriter();
      for (const rec of records) {
        let p = rec.payload;
        if (rec.type === RecordType.VCPU) {
          const s = parseVcpuBlob(p.subarray(8)); // 8-byte head: vCPU index, reserved
          const core = [...s.cpu.core];
          core[31] = pc;
          p = Buffer.concat([p.subarray(0, 8), encodeVcpuBlob({ ...s, cpu: { ...s.cpu, core } })]);
        }
        w.record(rec.type, p, rec.optional);
      }
      return w.finish();
    }

    it('unedited, it restores and runs to SYSTEM_OFF (the edit is what faults)', () => {
      const file = join(dir, 'intact.snap');
      writeFileSync(file, withPc(parseVcpuBlob(records.find((r) => r.type === RecordType.VCPU)!.payload.subarray(8)).cpu.core[31]!));
      const r = plugvisor('restore', file);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain('smccc version 10001');
    });

    for (const [name, pc, why] of BAD) {
      it(`at ${name} (0x${pc.toString(16)}): vCPU 0 faults, exit 10`, () => {
        const file = join(dir, `pc-${name}.snap`);
        writeFileSync(file, withPc(pc));
        expectFault(plugvisor('restore', file), 0, pc, why);
      });
    }
  });
});

describe('a restored vCPU that cannot be entered (in-process)', () => {
  it('is kept as saved, not entered: the run faults and the state saves back unchanged', () => {
    const make = () => {
      const m = new Arm64Machine({ memSize: 16 << 20, console: () => {} });
      m.attach(new TestRouter(m));
      return m;
    };
    const a = make();
    a.boot(a.loadImage(guestImage('hello')).entry);
    const state = a.vcpuState(0);
    a.dispose();
    const core = [...state.core];
    core[31] = '0x9000000'; // PC
    const bad = { ...state, core };
    const b = make();
    b.restoreVcpuState(0, bad);
    expect(b.vcpuState(0)).toEqual(bad);
    const r = b.run();
    expect(r.kind === 'fault' && r.fault.message).toBe(
      'guest fault on vCPU 0 at PC 0x9000000: cannot start there: a device (PL011 UART), not RAM (RAM is 0x40000000..0x40ffffff)',
    );
    b.dispose();
  });
});
