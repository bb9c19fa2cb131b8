import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeJson, encodeJson, planRestore, readStream, RecordType, SnapshotError, StreamWriter, type Hypervisor, type StreamRecord } from '@plugvisor/core';
import { checkArm64Snapshot, unicornAvailable } from '@plugvisor/machine-arm64';
import { loadBuild } from '../src/build-file.js';

/**
 * Edited-and-resealed snapshots. The stream's CRCs and END digest have no key, so anyone can
 * edit a field of a real snapshot and recompute them: integrity checks pass, and only the
 * components' validating restores stand between the edit and the machine. For any field of any
 * record set to a hostile value, restore must either refuse it (SnapshotError, exit 3) naming
 * the field, or — when the edit is still a valid state — run the VM to one of the guest-run exit
 * statuses, within a time bound: never a stack trace, exit 1 or a hang.
 *
 * Every case is checked in-process through the core's restore API (planRestore with the arm64
 * backend's check: fast); the cases it accepts, and a sample of the refused ones, also go
 * through `plugvisor restore` in a child process with a time limit (a hang cannot be
 * interrupted in-process: the engine runs synchronously).
 */
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-reseal-'));
const GUEST_RUN_EXITS = [0, 10, 11, 12, 20, 21, 22, 23];
/** Cases, seed and accepted cases run by the CLI (fixed in CI; PLUGVISOR_RESEAL_RUNS / _SEED / _CLI explore further). */
const RUNS = Number(process.env.PLUGVISOR_RESEAL_RUNS ?? 600);
const SEED = Number(process.env.PLUGVISOR_RESEAL_SEED ?? 12);
const CLI_ACCEPTED = Number(process.env.PLUGVISOR_RESEAL_CLI ?? 8);
/** Wall-clock bound of one CLI restore (an intact one takes ~0.4 s). */
const CASE_TIMEOUT_MS = 8000;

const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: CASE_TIMEOUT_MS, killSignal: 'SIGKILL' });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
};

// ---- the edits ----------------------------------------------------------------------------

type Json = unknown;
/** Hostile JSON values: wrong types, out of range, non-integers, 2^53, huge, empty containers. */
const JSON_VALUES: readonly Json[] = [-1, 0.5, 2 ** 53, 1e308, 2 ** 32, null, {}, [], '', 'x', '0x' + 'f'.repeat(17), 'y'.repeat(300), true];

/** A field of a record, the token a refusal must name, and how to write an edited value. */
interface Field {
  readonly record: number;
  readonly label: string;
  /** Any of these in the refusal names the field. */
  readonly names: readonly string[];
  readonly kind: 'json' | 'bits';
  /** json: the path; bits: byte offset and width in the payload. */
  readonly path?: readonly (string | number)[];
  readonly offset?: number;
  readonly width?: number;
}

/** Names a refusal may use for a path element (the component that owns it). */
const ALIASES: Record<string, string[]> = {
  gicc: ['GIC CPU interface'],
  description: ['machine description'],
  uart: ['uart'],
  data: ['state refused'],
  // an ABI edit that is well-formed but changes what the guest sees is refused by the
  // compatibility check, naming the feature whose calls or answers differ
  features: ["feature '"],
  behaviour: ["feature '"],
  versions: ['version', "feature '"],
};

function jsonPaths(v: Json, path: (string | number)[] = []): (string | number)[][] {
  const out = [path];
  if (v && typeof v === 'object' && typeof v !== 'bigint') {
    for (const [k, x] of Object.entries(v)) out.push(...jsonPaths(x, [...path, Array.isArray(v) ? Number(k) : k]));
  }
  return out;
}

function namesOf(recordLabel: string, path: readonly (string | number)[]): string[] {
  const keys = path.filter((k): k is string => typeof k === 'string');
  const names = keys.flatMap((k) => [k, ...(ALIASES[k] ?? [])]);
  return names.length ? names : [recordLabel];
}

const U32 = 4;
const U64 = 8;
/** arm64 vCPU blob layout (machine-arm64 cpu/state.ts), after the VCPU record's 8-byte head. */
const BLOB = 8;
const CORE = BLOB + 16;
const CORE_NAMES = [...Array.from({ length: 31 }, (_, i) => `x${i}`), 'pc', 'pstate', 'sp_el0', 'sp_el1', 'fpcr', 'fpsr'];

function fieldsOf(records: readonly StreamRecord[]): Field[] {
  const fields: Field[] = [];
  records.forEach((rec, record) => {
    const p = Buffer.from(rec.payload);
    if (rec.type === RecordType.ABI || rec.type === RecordType.MACHINE || rec.type === RecordType.SERVICE_STATE) {
      const label = rec.type === RecordType.ABI ? 'ABI' : rec.type === RecordType.MACHINE ? 'MACHINE' : 'SERVICE_STATE';
      for (const path of jsonPaths(decodeJson(p, label))) {
        fields.push({ record, label: `${label}[${record}] ${path.join('.') || '(whole)'}`, names: namesOf(label, path), kind: 'json', path });
      }
    } else if (rec.type === RecordType.VCPU) {
      const bits = (offset: number, width: number, label: string, names: string[]) => fields.push({ record, label: `VCPU[${record}] ${label}`, names, kind: 'bits', offset, width });
      bits(0, U32, 'index', ['vCPU', 'VCPU']);
      bits(4, U32, 'head reserved', ['reserved']);
      bits(BLOB, U64, 'blob magic', ['vCPU state blob']);
      bits(BLOB + 8, U32, 'blob version', ['version']);
      bits(BLOB + 12, U32, 'sysreg count', ['system registers', 'length', 'truncated']);
      // Any bit of the PC too: outside RAM, in a device or misaligned, the run loop's entry
      // check makes it a guest fault naming the vCPU and the address (exit 10).
      CORE_NAMES.forEach((name, i) => bits(CORE + i * U64, U64, name, [name, `entry ${i}`]));
      const nSys = p.readUInt32LE(BLOB + 12);
      const vregs = CORE + 37 * U64;
      for (let i = 0; i < 32; i++) bits(vregs + i * 16, 16, `v${i}`, [`v${i}`]);
      const sys = vregs + 32 * 16;
      // System registers (SCTLR, TCR, TTBRs, VBAR, ELR, SPSR, ESR, FAR, ...): an edit is a
      // different but architecturally valid EL1 state; the guest runs (or faults) with it.
      for (let i = 0; i < nSys; i++) bits(sys + i * U64, U64, `sysreg ${i}`, [`sysreg ${i}`]);
      const jsonAt = sys + nSys * U64;
      bits(jsonAt, U32, 'json length', ['length', 'JSON']);
      const tail = JSON.parse(p.subarray(jsonAt + U32).toString('utf8')) as Json;
      for (const path of jsonPaths(tail)) {
        fields.push({ record, label: `VCPU[${record}] ${path.join('.') || '(run state)'}`, names: namesOf('run state', path).concat(path.length ? [] : ['state', 'JSON']), kind: 'json', path, offset: jsonAt });
      }
    } else if (rec.type === RecordType.MEMORY) {
      // The header; page contents are guest data, any value of which is a valid state.
      const bits = (offset: number, width: number, label: string, names: string[]) => fields.push({ record, label: `MEMORY[${record}] ${label}`, names, kind: 'bits', offset, width });
      bits(0, U64, 'gpa', ['MEMORY']);
      bits(8, U64, 'size', ['MEMORY']);
      bits(16, U32, 'page size', ['page size']);
      bits(20, U32, 'stored pages', ['MEMORY']);
      bits(24, 1, 'bitmap[0]', ['MEMORY']);
    }
  });
  return fields;
}

function setPath(root: Json, path: readonly (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  const copy = structuredClone(root) as Record<string | number, Json>;
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, Json>;
  o[path[path.length - 1]!] = value;
  return copy;
}

/** The payload of `rec` with the edit applied. */
function edited(rec: StreamRecord, field: Field, edit: Json | number): Uint8Array {
  const p = Buffer.from(rec.payload);
  if (field.kind === 'bits') {
    const bit = edit as number;
    p[field.offset! + (bit >> 3)]! ^= 1 << (bit & 7);
    return p;
  }
  if (rec.type === RecordType.VCPU) {
    const at = field.offset!;
    const tail = JSON.parse(p.subarray(at + U32).toString('utf8')) as Json;
    const json = Buffer.from(JSON.stringify(setPath(tail, field.path!, edit)) ?? 'null');
    const len = Buffer.alloc(U32);
    len.writeUInt32LE(json.length, 0);
    return Buffer.concat([p.subarray(0, at), len, json]);
  }
  return encodeJson(setPath(decodeJson(p, 'edit'), field.path!, edit));
}

/** Re-writes the stream with one record's payload replaced: fresh CRCs and END digest. */
function reseal(records: readonly StreamRecord[], index: number, payload: Uint8Array): Uint8Array {
  const w = new StreamWriter();
  records.forEach((r, i) => w.record(r.type, i === index ? payload : r.payload, r.optional));
  return w.finish();
}

// ---- the property ---------------------------------------------------------------------------

describe.skipIf(!unicornAvailable())('edited and resealed snapshots (arm64, the demo guest)', () => {
  let records: StreamRecord[];
  let fields: Field[];
  let hv: Hypervisor;

  beforeAll(async () => {
    const snap = join(dir, 'demo.snap');
    const r = plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '2000', '--snapshot-file', snap);
    expect(r.code, r.err).toBe(0);
    records = readStream(readFileSync(snap));
    fields = fieldsOf(records);
    hv = (await loadBuild()).hv;
  });

  it('the intact resealed snapshot restores and runs to the guest powering off', () => {
    const file = join(dir, 'intact.snap');
    writeFileSync(file, reseal(records, 0, records[0]!.payload));
    const r = plugvisor('restore', file);
    expect(r.err).not.toMatch(/^\s+at /m);
    expect(r.code).toBe(0);
    expect(r.out).toContain('total 108049000');
  });

  it('any field of any record edited and resealed: refused naming the field (exit 3), or a run that follows it', () => {
    const accepted = new Map<string, Uint8Array>();
    const refused: { label: string; bytes: Uint8Array; names: readonly string[] }[] = [];
    // A record first (each as likely: the ABI record alone has hundreds of fields), then one of its fields.
    const byRecord = records.map((_, i) => fields.filter((f) => f.record === i)).filter((l) => l.length > 0);
    const edit = fc
      .integer({ min: 0, max: byRecord.length - 1 })
      .chain((r) => fc.constantFrom(...byRecord[r]!))
      .chain((f) => {
        const value: fc.Arbitrary<Json | number> =
          f.kind === 'json' ? fc.constantFrom(...JSON_VALUES) : fc.integer({ min: 0, max: f.width! * 8 - 1 });
        return fc.tuple(fc.constant(f), value);
      });
    fc.assert(
      fc.property(edit, ([field, value]) => {
        const label = `${field.label} = ${field.kind === 'bits' ? `bit ${String(value)} flipped` : JSON.stringify(value).slice(0, 24)}`;
        const bytes = reseal(records, field.record, edited(records[field.record]!, field, value));
        try {
          planRestore(bytes, hv, { arch: 'arm64', checkMachine: checkArm64Snapshot });
        } catch (e) {
          if (!(e instanceof SnapshotError)) throw new Error(`${label}: ${(e as Error).name} instead of a SnapshotError: ${(e as Error).message}`);
          if (!field.names.some((n) => e.message.includes(n))) throw new Error(`${label}: the refusal names none of ${field.names.join(', ')}: ${e.message}`);
          refused.push({ label, bytes, names: field.names });
          return;
        }
        accepted.set(label, bytes); // still a valid state: it must run (below)
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );

    // Through the CLI: every accepted edit runs to a guest-run exit status within the bound,
    // and a sample of refusals is exit 3 naming the field — never a stack trace or exit 1.
    const problems: string[] = [];
    let n = 0;
    const cli = (label: string, bytes: Uint8Array) => {
      const file = join(dir, `case${n++}.snap`);
      writeFileSync(file, bytes);
      return { label, ...plugvisor('restore', file, '--snapshot-at', '100', '--snapshot-file', join(dir, 'next.snap')) };
    };
    // (about 1 s each: a sample, spread over the run)
    const sample = <T,>(list: readonly T[], k: number) => list.filter((_, i) => i % Math.max(1, Math.ceil(list.length / k)) === 0);
    for (const [label, bytes] of sample([...accepted], CLI_ACCEPTED)) {
      const r = cli(label, bytes);
      if (r.signal) problems.push(`${label}: no exit within ${CASE_TIMEOUT_MS} ms (killed)`);
      else if (/^\s+at /m.test(r.err) || !GUEST_RUN_EXITS.includes(r.code!)) problems.push(`${label}: exit ${r.code}: ${r.err.trim().split('\n')[0]}`);
    }
    for (const { label, bytes, names } of sample(refused, 3)) {
      const r = cli(label, bytes);
      if (r.code !== 3 || /^\s+at /m.test(r.err) || !names.some((x) => r.err.includes(x))) problems.push(`${label}: expected exit 3 naming the field, got ${r.code}: ${r.err.trim().split('\n')[0]}`);
    }
    expect(problems).toEqual([]);
    expect(accepted.size + refused.length).toBeGreaterThan(0);
  }, 60_000 + (CLI_ACCEPTED + 3) * CASE_TIMEOUT_MS);
});
