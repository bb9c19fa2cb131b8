import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, OPTIONAL_RECORD, planRestore, readAbiRecord, readStream, saveSnapshot, SnapshotError, StreamWriter, RecordType, UsageError, verifyStream, type Vm } from '../index.js';
import { createEchoService, ECHO, MemoryMachine, type EchoOptions } from '../testing/index.js';
import { decodeJson, encodeJson } from './stream.js';

const build = (opts: EchoOptions = {}, name = 'b') => Hypervisor.compose([createEchoService(opts)], { name });

/** A VM that has run: counter at 3, some RAM written, two vCPUs with distinct blobs. */
function runningVm(hv: Hypervisor, overrides = {}) {
  const vm = hv.createVm(overrides);
  const m = new MemoryMachine(2, 0x4000_0000n, 64 * 4096);
  vm.attachMachine(m);
  vm.start();
  if (vm.abi.isEnabled('echo-counter')) {
    for (let i = 0; i < 3; i++) {
      m.vcpus[0]!.regs.set(0, BigInt(ECHO.CALL_COUNT));
      vm.dispatch(Conduits.smccc, m.vcpus[0]!);
    }
  }
  m.ram.set([1, 2, 3, 4], 4096 * 5 + 7);
  m.ram[4096 * 63 + 4095] = 0xee;
  return { vm, m };
}

function snapshotOf(vm: Vm, m: MemoryMachine): Uint8Array {
  return saveSnapshot(vm, {
    arch: 'arm64',
    description: { board: 'memory', ram: m.ram.byteLength },
    vcpus: m.vcpus.map((v) => Uint8Array.of(0xc0, v.index, 0xff)),
    memory: m.memory.regions(),
  });
}

/** Restore as a backend would: plan (all checks), then apply; a refusal leaves `target` untouched. */
function restoreInto(bytes: Uint8Array, hv: Hypervisor, target: Uint8Array) {
  const plan = planRestore(bytes, hv, { arch: 'arm64' });
  plan.memory[0]!.restoreInto(target);
  return plan;
}

describe('snapshot round trip', () => {
  it('restores ABI, service state, vCPU blobs and memory exactly, eliding zero pages', () => {
    const hv = build();
    const { vm, m } = runningVm(hv, { features: { 'echo-counter': true }, versions: { echo: '2.0' } });
    const bytes = snapshotOf(vm, m);
    expect(bytes.byteLength).toBeLessThan(4 * 4096); // 64 pages, 2 non-zero
    const target = new Uint8Array(m.ram.byteLength).fill(0x55);
    const plan = restoreInto(bytes, build(), target);
    expect(Buffer.compare(target, m.ram)).toBe(0);
    expect(plan.vcpus.map((b) => [...b])).toEqual([[0xc0, 0, 0xff], [0xc0, 1, 0xff]]);
    expect(plan.started).toBe(true);
    expect(plan.vm.abi.features()).toEqual({ echo: true, 'echo-counter': true });
    expect(plan.vm.abi.version('echo')).toBe('2.0');
    expect(plan.vm.abi.isFrozen).toBe(true);
    expect(plan.vm.stateOf<{ count: number }>('@plugvisor/test-svc-echo').count).toBe(3);
    expect(plan.description).toEqual({ board: 'memory', ram: m.ram.byteLength });
    // the restored VM keeps counting where it left off
    const m2 = new MemoryMachine(2);
    plan.vm.attachMachine(m2);
    m2.vcpus[0]!.regs.set(0, BigInt(ECHO.CALL_COUNT));
    plan.vm.dispatch(Conduits.smccc, m2.vcpus[0]!);
    expect(m2.vcpus[0]!.regs.get(0)).toBe(4n);
  });

  it('reads an older state schema', () => {
    const { vm, m } = runningVm(build({ stateVersion: 1 }), { features: { 'echo-counter': true } });
    const plan = planRestore(snapshotOf(vm, m), build());
    expect(plan.vm.stateOf<{ count: number }>('@plugvisor/test-svc-echo').count).toBe(3);
  });
});

describe('restore refusals name what is at fault', () => {
  const refusal = (bytes: Uint8Array, hv: Hypervisor) => {
    try {
      planRestore(bytes, hv, { arch: 'arm64' });
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      return e as SnapshotError;
    }
    throw new Error('restore was accepted');
  };

  it('a VM using a feature the destination lacks', () => {
    const { vm, m } = runningVm(build(), { features: { 'echo-counter': true } });
    const e = refusal(snapshotOf(vm, m), build({ withoutCounter: true }));
    expect(e.snapshotCode).toBe('INCOMPATIBLE');
    expect(e.message).toContain("feature 'echo-counter' is enabled in the VM but @plugvisor/test-svc-echo@1.0.0 does not offer it");
  });

  it('a VM whose service the destination lacks, unless the VM turned it off', () => {
    const { vm, m } = runningVm(build());
    const empty = Hypervisor.compose([], { name: 'empty' });
    expect(refusal(snapshotOf(vm, m), empty).message).toContain("feature 'echo' is enabled in the VM but the build has no @plugvisor/test-svc-echo");
    const off = runningVm(build(), { features: { echo: false } });
    const plan = planRestore(snapshotOf(off.vm, off.m), empty);
    expect(plan.notes).toEqual(['set aside the state of @plugvisor/test-svc-echo: not in this build, and the VM does not use it']);
  });

  it('a version the destination caps below, a changed call surface, every problem at once, each by what changed', () => {
    const { vm, m } = runningVm(build(), { versions: { echo: '2.0' }, features: { 'echo-counter': true } });
    const e = refusal(snapshotOf(vm, m), build({ maxVersion: '1.1', version: '2.0.0', extraEchoCall: true }));
    expect(e.problems).toEqual(
      expect.arrayContaining([
        'echo version 2.0 (0x20000) is not offered by @plugvisor/test-svc-echo@2.0.0 (offers 1.0, 1.1; maximum 1.1)',
        "feature 'echo' of @plugvisor/test-svc-echo@2.0.0 answers different calls than the VM saw; adds ECHO_EXTRA (smccc:0xc7000004); lacks ECHO_V2 (smccc:0xc7000001)",
      ]),
    );
    // The version numbers decide nothing (abi/versioning.ts): no problem is about 1.0.0 → 2.0.0.
    expect(e.problems).toHaveLength(2);
  });

  it('not a VM whose selected version the capped build offers, with the same calls at that version', () => {
    const { vm, m } = runningVm(build(), { versions: { echo: '1.1' } });
    const capped = build({ maxVersion: '1.1' });
    const plan = planRestore(snapshotOf(vm, m), capped);
    expect(plan.vm.abi.version('echo')).toBe('1.1');
    // and back again: the capped build's VM moves to the full build
    const back = runningVm(capped);
    expect(planRestore(snapshotOf(back.vm, back.m), build()).vm.abi.version('echo')).toBe('1.1');
  });

  it('a state the service cannot read', () => {
    const { vm, m } = runningVm(build(), { features: { 'echo-counter': true } });
    vm.stateOf<{ count: number }>('@plugvisor/test-svc-echo').count = -5;
    expect(refusal(snapshotOf(vm, m), build()).message).toContain('@plugvisor/test-svc-echo: state refused: echo-counter state schema 2 holds an invalid count');
  });

  it('an unknown mandatory record; an unknown optional one is skipped', () => {
    const hv = build();
    const { vm, m } = runningVm(hv);
    const rewrite = (optional: boolean) => {
      const w = new StreamWriter();
      for (const r of readStream(snapshotOf(vm, m))) w.record(r.type, r.payload, r.optional);
      w.record(0x4242, encodeJson({ future: true }), optional);
      return w.finish();
    };
    expect(refusal(rewrite(false), hv).snapshotCode).toBe('UNKNOWN_MANDATORY');
    expect(planRestore(rewrite(true), hv).notes[0]).toMatch(/skipped unknown optional 0x4242/);
  });

  it('a structurally broken stream: duplicate or missing records, wrong arch', () => {
    const hv = build();
    const { vm, m } = runningVm(hv);
    const recs = readStream(snapshotOf(vm, m));
    const rebuild = (list: typeof recs) => {
      const w = new StreamWriter();
      for (const r of list) w.record(r.type, r.payload, r.optional);
      return w.finish();
    };
    expect(refusal(rebuild([...recs, recs[0]!]), hv).message).toContain('second ABI record');
    expect(refusal(rebuild(recs.filter((r) => r.type !== RecordType.VCPU)), hv).problems).toEqual([
      expect.stringMatching(/^MACHINE record at byte \d+: vcpus is 2 but the stream has 0 VCPU records$/),
    ]);
    const vcpu1 = recs.findIndex((r) => r.type === RecordType.VCPU && r.payload[0] === 1);
    const renumbered = recs.map((r, i) => (i === vcpu1 ? { ...r, payload: Uint8Array.from(r.payload, (b, k) => (k === 0 ? 7 : b)) } : r));
    expect(refusal(rebuild(renumbered), hv).problems).toEqual(['no VCPU record for vCPU 1', 'VCPU record for vCPU 7 of a 2-vCPU machine']);
    expect(() => planRestore(snapshotOf(vm, m), hv, { arch: 'x86_64' })).toThrow(/snapshot is of an arm64 machine; this backend runs x86_64/);
  });
});

describe('edited and resealed records: each field validated before anything is built', () => {
  const hv = build();
  const { vm, m } = runningVm(hv, { features: { 'echo-counter': true } });
  const recs = readStream(snapshotOf(vm, m));
  /** The stream with record `type`'s JSON payload edited, CRCs and END digest recomputed (they have no key). */
  const resealed = (type: number, edit: (v: Record<string, unknown>) => void) => {
    const w = new StreamWriter();
    for (const r of recs) {
      if (r.type !== type) { w.record(r.type, r.payload, r.optional); continue; }
      const v = decodeJson(r.payload, 'test') as Record<string, unknown>;
      edit(v);
      w.record(r.type, encodeJson(v), r.optional);
    }
    return w.finish();
  };
  const refusedWith = (bytes: Uint8Array) => {
    try {
      planRestore(bytes, hv, { arch: 'arm64' });
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      return (e as SnapshotError).message;
    }
    throw new Error('accepted');
  };

  it('a vCPU count of 2^53 is refused at once, bounded by the stream (nothing allocated for it)', () => {
    const t = performance.now();
    const before = process.memoryUsage().heapUsed;
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => (v.vcpus = 2 ** 53)))).toMatch(/MACHINE record at byte \d+: vcpus must be an integer in 1\.\.4294967295, got 9007199254740992/);
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => (v.vcpus = 4096)))).toMatch(/vcpus is 4096 but the stream has 2 VCPU records/);
    expect(performance.now() - t).toBeLessThan(1000);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 << 20);
  });

  it('every structural field is named: MACHINE, ABI, SERVICE_STATE', () => {
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => (v.arch = null)))).toMatch(/MACHINE record at byte \d+: arch must be one of arm64, x86_64, got null/);
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => ((v.memory as { size: unknown }[])[0]!.size = 0.5)))).toMatch(/memory\[0\]: size must be an integer/);
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => (v.memory = {})))).toMatch(/memory must be an array/);
    expect(refusedWith(resealed(RecordType.MACHINE, (v) => (v.description = [])))).toMatch(/description must be an object, got \[\]/);
    expect(refusedWith(resealed(RecordType.ABI, (v) => ((v.build as { name: unknown }).name = -1)))).toContain('ABI record: build.name must be a string');
    expect(refusedWith(resealed(RecordType.ABI, (v) => ((v.build as { hash: unknown }).hash = true)))).toContain('ABI record: build.hash must be a lowercase hex string, got true');
    expect(refusedWith(resealed(RecordType.ABI, (v) => (v.started = 0)))).toContain('ABI record: started must be a boolean, got 0');
    // a 65-bit firmware register value is not a register value
    const reg = resealed(RecordType.ABI, (v) => {
      const regs = (v.record as { registers: Record<string, string> }).registers;
      regs['0x6030000000160000'] = '0x1' + '0'.repeat(16);
    });
    expect(refusedWith(reg)).toContain('ABI record: registers.0x6030000000160000 must be a u64 (0x and 1..16 hex digits), got "0x10000000000000000"');
    expect(refusedWith(resealed(RecordType.SERVICE_STATE, (v) => (v.schema = 0.5)))).toMatch(/SERVICE_STATE record at byte \d+: schema must be an integer/);
    expect(refusedWith(resealed(RecordType.SERVICE_STATE, (v) => (v.stateId = {})))).toMatch(/SERVICE_STATE record at byte \d+: stateId must be a state id/);
    // a malformed record is reported once, not also as missing
    expect(refusedWith(resealed(RecordType.ABI, (v) => (v.build = null)))).not.toContain('no ABI record');
  });

  it("a VCPU record's reserved head bytes must be zero", () => {
    const w = new StreamWriter();
    for (const r of recs) w.record(r.type, r.type === RecordType.VCPU ? Uint8Array.from(r.payload, (b, k) => (k === 5 ? 1 : b)) : r.payload, r.optional);
    expect(refusedWith(w.finish())).toMatch(/VCPU record at byte \d+: reserved head bytes 4\.\.7 are 0x100; they must be 0/);
  });
});

describe('a keyed MAC: HMAC-SHA-256 over the stream', () => {
  const hv = build();
  const { vm, m } = runningVm(hv, { features: { 'echo-counter': true } });
  const image = () => ({ arch: 'arm64' as const, description: { board: 'memory' }, vcpus: m.vcpus.map((v) => Uint8Array.of(v.index)), memory: m.memory.regions() });
  const key = new Uint8Array(32).fill(7);
  const other = new Uint8Array(32).fill(8);
  const signed = saveSnapshot(vm, image(), { key });
  const unsigned = saveSnapshot(vm, image());
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (e instanceof SnapshotError) return `${e.snapshotCode}: ${e.message}`;
      throw e;
    }
    return 'accepted';
  };

  it('a signed stream restores with its key, and without one (noted: the MAC was not checked)', () => {
    expect(planRestore(signed, hv, { key }).notes).toEqual([]);
    expect(planRestore(signed, hv).notes).toEqual(['the snapshot is signed (MAC record); no key was given, so its MAC was not checked']);
    expect(verifyStream(signed, { key })).toMatchObject({ signed: true, authenticated: true });
    expect(readAbiRecord(signed, { key }).format).toBe(1);
    // the MAC is one optional record before END: every other record is as an unsigned stream has it
    expect(readStream(signed).map((r) => [r.type, r.payload])).toEqual(readStream(unsigned).map((r) => [r.type, r.payload]));
  });

  it('with a key: an unsigned stream, another key, or an edited and resealed stream is refused by name', () => {
    expect(code(() => planRestore(unsigned, hv, { key }))).toBe('UNSIGNED: snapshot is not signed (no MAC record) and a snapshot key was given');
    expect(code(() => planRestore(signed, hv, { key: other }))).toMatch(/^BAD_MAC: MAC record at byte \d+: HMAC-SHA-256 mismatch/);
    // edit the ABI record and reseal (fresh CRCs and END digest, the old MAC record kept)
    const recs = readStream(signed);
    const abi = decodeJson(recs[0]!.payload, 'test') as { started: boolean };
    abi.started = !abi.started;
    const w = new StreamWriter();
    w.record(recs[0]!.type, encodeJson(abi));
    for (const r of recs.slice(1)) w.record(r.type, r.payload, r.optional);
    const raw = Buffer.from(signed);
    const macAt = raw.length - 56 - 56; // MAC record (20 + 36) then END (20 + 36)
    expect(raw.readUInt32LE(macAt) >>> 0).toBe((RecordType.MAC | OPTIONAL_RECORD) >>> 0);
    const forged = resealWithRecord(w, raw.subarray(macAt + 16, macAt + 52));
    expect(code(() => planRestore(forged, hv))).toBe('accepted'); // no key: integrity only
    expect(code(() => planRestore(forged, hv, { key }))).toMatch(/^BAD_MAC: /);
    // stripping the MAC record and resealing
    const stripped = new StreamWriter();
    for (const r of recs) stripped.record(r.type, r.payload, r.optional);
    expect(code(() => planRestore(stripped.finish(), hv, { key }))).toMatch(/^UNSIGNED: /);
  });

  it('a MAC record must be the last record before END; a short key is refused', () => {
    const w = new StreamWriter();
    const recs = readStream(signed);
    const macPayload = Buffer.from(signed).subarray(signed.byteLength - 112 + 16, signed.byteLength - 112 + 52);
    w.record(RecordType.MAC, macPayload, true);
    for (const r of recs) w.record(r.type, r.payload, r.optional);
    expect(code(() => planRestore(w.finish(), hv))).toMatch(/^BAD_RECORD: MAC record at byte 16 is followed by ABI, not END/);
    expect(() => saveSnapshot(vm, image(), { key: new Uint8Array(15) })).toThrow(/snapshot key is 15 bytes; it must be at least 16 bytes/);
    expect(() => planRestore(signed, hv, { key: new Uint8Array(0) })).toThrow(UsageError);
  });
});

/** Finishes `w` after appending an optional MAC record with `payload` (as a forger would keep an old one). */
function resealWithRecord(w: StreamWriter, payload: Uint8Array): Uint8Array {
  w.record(RecordType.MAC, payload, true);
  return w.finish();
}

describe('property: every corruption of a valid snapshot is refused whole', () => {
  const hv = build();
  const { vm, m } = runningVm(hv, { features: { 'echo-counter': true } });
  const valid = snapshotOf(vm, m);
  const records = readStream(valid);

  /** The outcome of a restore attempt: refused (typed) with the target untouched, or accepted. */
  const attempt = (bytes: Uint8Array) => {
    const target = new Uint8Array(m.ram.byteLength).fill(0x5a);
    try {
      restoreInto(bytes, hv, target);
      return 'accepted';
    } catch (e) {
      if (!(e instanceof SnapshotError)) throw e; // a crash, not a refusal
      expect(target.every((b) => b === 0x5a)).toBe(true); // nothing half-restored
      return e.snapshotCode;
    }
  };

  it('accepts the valid stream', () => {
    expect(attempt(valid)).toBe('accepted');
  });

  it('flipped bits', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: valid.byteLength * 8 - 1 }), { minLength: 1, maxLength: 4 }), (bits) => {
        const bytes = Uint8Array.from(valid);
        for (const b of new Set(bits)) bytes[b >> 3]! ^= 1 << (b & 7);
        if (Buffer.compare(bytes, valid) === 0) return; // flips cancelled out
        expect(attempt(bytes)).not.toBe('accepted');
      }),
      { numRuns: 300 },
    );
  });

  it('truncation', () => {
    fc.assert(
      fc.property(fc.nat({ max: valid.byteLength - 1 }), (len) => {
        expect(attempt(valid.subarray(0, len))).not.toBe('accepted');
      }),
      { numRuns: 200 },
    );
  });

  it('reordered or duplicated records (re-framed with fresh CRCs)', () => {
    const raw = (() => {
      // slice the valid stream into its framed records (header, records, END)
      const out: Uint8Array[] = [];
      let off = 16;
      for (let i = 0; i <= records.length; i++) {
        const len = Number(Buffer.from(valid.buffer, valid.byteOffset).readBigUInt64LE(off + 8));
        out.push(valid.subarray(off, off + 20 + len));
        off += 20 + len;
      }
      return out;
    })();
    const header = valid.subarray(0, 16);
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: raw.length - 1 }), { minLength: 1, maxLength: raw.length + 2 }),
        (order) => {
          const bytes = Buffer.concat([header, ...order.map((i) => raw[i]!)]);
          if (Buffer.compare(bytes, valid) === 0) return;
          expect(attempt(bytes)).not.toBe('accepted');
        },
      ),
      { numRuns: 300 },
    );
    // and with a freshly computed digest, i.e. a well-formed stream with bad structure
    fc.assert(
      fc.property(fc.array(fc.nat({ max: records.length - 1 }), { minLength: 1, maxLength: records.length + 2 }), (order) => {
        const w = new StreamWriter();
        for (const i of order) w.record(records[i]!.type, records[i]!.payload, records[i]!.optional);
        const bytes = w.finish();
        const sameMultiset = order.length === records.length && new Set(order).size === records.length;
        const outcome = attempt(bytes);
        if (!sameMultiset) expect(outcome).not.toBe('accepted');
      }),
      { numRuns: 300 },
    );
  });
});
