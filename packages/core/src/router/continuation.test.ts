import { describe, expect, it } from 'vitest';
import {
  checkRecordDetailed,
  classifyAbiChange,
  ComposeError,
  Conduits,
  continueCall,
  defineService,
  Hypervisor,
  planRestore,
  recordOf,
  saveSnapshot,
  serviceBehaviour,
  serviceManifest,
  ServiceFailure,
  type Vm,
} from '../index.js';
import { checkServiceConformance, createPreemptService, MemoryMachine, PREEMPT } from '../testing/index.js';

/**
 * Continuations (router/continuation.ts) with the test-only preemptible service: legs, the
 * rewind the dispatcher returns, the selector's continuation field, a snapshot between legs, and
 * the encoding as ABI (manifest, transcript, record, restore check, classifier).
 */

const EINVAL = -22n;
const ENOSYS = -38n;
const RAM = 0x4000_0000n;
const BUF = RAM + 0x1000n;
const u64 = (v: bigint) => BigInt.asUintN(64, v);

function vmOn(services = [createPreemptService()], features: Record<string, boolean> = { preempt: true }): { vm: Vm; m: MemoryMachine; hv: Hypervisor } {
  const hv = Hypervisor.compose(services, { name: 'preempt' });
  const vm = hv.createVm({ features });
  const m = new MemoryMachine();
  vm.attachMachine(m);
  vm.start();
  return { vm, m, hv };
}

/** Issues the hypercall as a guest would: x16, x0 = cmd, x1, x2; returns the dispatcher's rewind. */
function leg(vm: Vm, m: MemoryMachine): number {
  return vm.dispatch(Conduits.xen, m.vcpus[0]!);
}
function load(m: MemoryMachine, cmd: bigint, x1 = BUF, x2 = 0n): void {
  const r = m.vcpus[0]!.regs;
  r.set(16, BigInt(PREEMPT.XEN_OP));
  r.set(0, cmd);
  r.set(1, x1);
  r.set(2, x2);
}
const units = (m: MemoryMachine, n: number) => [...m.ram.subarray(0x1000, 0x1000 + n)];

describe('continuations: legs', () => {
  it('a preempted call rewinds by the trap length with its start unit rewritten, and completes with every unit done once', () => {
    const { vm, m } = vmOn();
    load(m, 1n, BUF, 10n);
    const starts: bigint[] = [];
    let legs = 0;
    for (;;) {
      legs++;
      const back = leg(vm, m);
      if (back === 0) break;
      expect(back).toBe(4); // MemoryMachine's trapLength: the HVC
      starts.push(m.vcpus[0]!.regs.get(0) >> 6n);
      expect(m.vcpus[0]!.regs.get(0) & 63n).toBe(1n); // the command is kept below the field
    }
    expect(legs).toBe(4); // budget 3: 3+3+3+1
    expect(starts).toEqual([3n, 6n, 9n]);
    expect(m.vcpus[0]!.regs.get(0)).toBe(10n);
    expect(units(m, 11)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  });

  it('a pending interrupt (the machine\'s interrupt-pending capability) ends a leg after one unit, as Xen\'s hypercall_preempt_check', () => {
    const { vm, m } = vmOn();
    let pending = false;
    (m as unknown as { capability: (n: string) => unknown }).capability = (n) => (n === 'interrupt-pending' ? { pending: (i: number) => i === 0 && pending } : undefined);
    load(m, 1n, BUF, 10n);
    pending = true;
    expect(leg(vm, m)).toBe(4);
    expect(m.vcpus[0]!.regs.get(0)).toBe(1n | (1n << 6n));
    pending = false;
    while (leg(vm, m) !== 0);
    expect(units(m, 11)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  });

  it('the selector is matched below the field; a sub-op without a continuation refuses a non-zero field with its declared answer, an unknown command reaches the parent', () => {
    const { vm, m } = vmOn();
    load(m, 2n);
    expect(leg(vm, m)).toBe(0);
    expect(m.vcpus[0]!.regs.get(0)).toBe(42n);
    load(m, 2n | (1n << 6n));
    expect(leg(vm, m)).toBe(0);
    expect(m.vcpus[0]!.regs.get(0)).toBe(u64(EINVAL));
    load(m, 2n | (1n << 40n)); // the field's upper word
    leg(vm, m);
    expect(m.vcpus[0]!.regs.get(0)).toBe(u64(EINVAL));
    load(m, 5n | (1n << 6n));
    leg(vm, m);
    expect(m.vcpus[0]!.regs.get(0)).toBe(u64(ENOSYS));
    // A start past the end is answered (Xen: `return start_extent`), not preempted.
    load(m, 1n | (7n << 6n), BUF, 4n);
    expect(leg(vm, m)).toBe(0);
    expect(m.vcpus[0]!.regs.get(0)).toBe(7n);
  });

  it('preempting a call that declares no continuation is a named service failure, and so is rewriting a register the call does not read', () => {
    const svc = (regs: Record<string, bigint>) =>
      defineService({
        name: '@x/rogue',
        version: '1.0.0',
        surface: { features: [{ name: 'rogue', default: 'opt-in', description: '' }], calls: [{ name: 'ROGUE', conduit: 'smccc', id: 0xc700_0777, feature: 'rogue' }] },
        handlers: { ROGUE: (v) => continueCall(v, regs) },
      });
    const { vm, m } = vmOn([svc({ x1: 5n })], { rogue: true });
    m.vcpus[0]!.regs.set(0, 0xc700_0777n);
    const e = (() => {
      try {
        vm.dispatch(Conduits.smccc, m.vcpus[0]!);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(ServiceFailure);
    expect(String((e as Error).message)).toMatch(/@x\/rogue@1\.0\.0.*ROGUE.*no continuation/s);
    // The flag does not leak into the next call.
    const { vm: ok, m: m2 } = vmOn();
    load(m2, 2n);
    expect(leg(ok, m2)).toBe(0);

    const stray = defineService({
      name: '@x/stray',
      version: '1.0.0',
      surface: {
        features: [{ name: 'stray', default: 'opt-in', description: '' }],
        calls: [{ name: 'STRAY', conduit: 'smccc', id: 0xc700_0778, feature: 'stray', signature: { args: [{ name: 'a', reg: 1, width: 'u64', kind: 'opaque' }] } }],
        continuations: [{ call: 'STRAY', description: '', encoding: [{ name: 'next', reg: 1, shift: 0, width: 64 }] }],
      },
      handlers: { STRAY: (v) => continueCall(v, { x1: 1n, x9: 2n }) },
    });
    const s = vmOn([stray], { stray: true });
    s.m.vcpus[0]!.regs.set(0, 0xc700_0778n);
    expect(() => s.vm.dispatch(Conduits.smccc, s.m.vcpus[0]!)).toThrow(/STRAY.*rewrites x9, which the call does not read/s);
  });

  it('composition refuses a continuation of an unknown call, overlapping fields, and a field over a selector value', () => {
    const bad = (k: object) => () => Hypervisor.compose([createPreemptService({ continuation: k as never })], { name: 'bad' });
    expect(bad({ call: 'NOPE', description: '', encoding: [{ name: 'a', reg: 0, shift: 6, width: 58 }] })).toThrow(ComposeError);
    expect(bad({ call: 'PREEMPT_MARK', description: '', encoding: [{ name: 'a', reg: 0, shift: 6, width: 58 }, { name: 'b', reg: 0, shift: 8, width: 2 }] })).toThrow(/overlaps another field/);
    expect(bad({ call: 'PREEMPT_MARK', description: '', encoding: [{ name: 'a', reg: 0, shift: 0, width: 64 }] })).toThrow(/overlaps the selector value/);
  });
});

describe('continuations: snapshots between legs', () => {
  it('a snapshot after a preempted leg carries the rewritten registers and the work done; restored in a fresh VM the call completes with each unit done exactly once', () => {
    const { vm, m, hv } = vmOn();
    load(m, 1n, BUF, 8n);
    expect(leg(vm, m)).toBe(4);
    // What a backend's vCPU record holds: the registers after the leg (the PC at the HVC).
    const regs = Uint8Array.from(Buffer.from(m.vcpus[0]!.regs.u64.buffer.slice(0)));
    const bytes = saveSnapshot(vm, { arch: 'arm64', description: { board: 'memory' }, vcpus: [regs], memory: m.memory.regions() });
    const plan = planRestore(bytes, Hypervisor.compose([createPreemptService()], { name: 'preempt' }), { arch: 'arm64' });
    const m2 = new MemoryMachine();
    plan.memory[0]!.restoreInto(m2.ram);
    plan.vm.attachMachine(m2);
    m2.vcpus[0]!.regs.u64.set(new BigUint64Array(Uint8Array.from(plan.vcpus[0]!).buffer));
    plan.vm.start();
    let legs = 0;
    while (plan.vm.dispatch(Conduits.xen, m2.vcpus[0]!) !== 0) legs++;
    expect(legs).toBe(1); // units 3..5, then 6..7
    expect(m2.vcpus[0]!.regs.get(0)).toBe(8n);
    expect([...m2.ram.subarray(0x1000, 0x1009)]).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0]);
    expect(units(m, 8)).toEqual([1, 1, 1, 0, 0, 0, 0, 0]); // the source stopped after its leg
    void hv;
  });
});

describe('continuations are ABI', () => {
  const other = { call: 'PREEMPT_MARK', description: 'start unit above bit 8', encoding: [{ name: 'start unit', reg: 0, shift: 8, width: 56 }], otherSubOps: { reg: 0, value: -22 } };

  it('the conformance kit passes the preemptible service (probes see legs, registers as declared)', () => {
    expect(checkServiceConformance(createPreemptService())).toEqual([]);
  });

  it('the manifest carries the structured encoding; the transcript records the continuation a probe produced', () => {
    const hv = Hypervisor.compose([createPreemptService()], { name: 'p' });
    const svc = hv.services[0]!;
    expect(serviceManifest(svc).surface).toMatchObject({ continuations: [{ call: 'PREEMPT_MARK', encoding: [{ name: 'start unit', reg: 0, shift: 6, width: 58 }] }] });
    const b = JSON.stringify(serviceBehaviour(hv, svc));
    expect(b).toMatch(/continue\(x0=0x(c1|181)\)/); // first leg of 64 units: x0 = 1 | 3 << 6 (0xc1)
    const moved = Hypervisor.compose([createPreemptService({ continuation: other, budget: 3 })], { name: 'q' });
    expect(JSON.stringify(serviceBehaviour(moved, moved.services[0]!))).not.toBe(b);
  });

  it('the record names each preemptible call of an enabled feature; restore refuses a changed encoding and a build where the call is not preemptible, naming the call and both encodings', () => {
    const { vm } = vmOn();
    const record = vm.record();
    expect(record.continuations).toEqual({
      'xen:0x31/0x1': { call: 'PREEMPT_MARK', feature: 'preempt', encoding: [{ name: 'start unit', reg: 0, shift: 6, width: 58 }], otherSubOps: { reg: 0, value: -22 } },
    });
    const same = Hypervisor.compose([createPreemptService()], { name: 'same' });
    expect(checkRecordDetailed(record, same.catalog)).toEqual([]);
    const changed = Hypervisor.compose([createPreemptService({ continuation: other })], { name: 'changed' });
    const p1 = checkRecordDetailed(record, changed.catalog).map((p) => p.message);
    expect(p1).toEqual([
      'call PREEMPT_MARK (xen:0x31/0x1) of @plugvisor/test-preempt@1.0.0 continues differently than the VM\'s: x0[63:6] start unit; other sub-ops answer -22 in x0 → x0[63:8] start unit; other sub-ops answer -22 in x0',
    ]);
    const none = Hypervisor.compose([createPreemptService({ continuation: null, neverPreempt: true })], { name: 'none' });
    expect(checkRecordDetailed(record, none.catalog).map((p) => p.message)).toEqual([
      'call PREEMPT_MARK (xen:0x31/0x1) of @plugvisor/test-preempt@1.0.0 continues differently than the VM\'s: x0[63:6] start unit; other sub-ops answer -22 in x0 → not preemptible',
    ]);
    // The other way (an upgrade that makes the call preemptible) holds no continuation: not refused here.
    const plain = Hypervisor.compose([createPreemptService({ continuation: null, neverPreempt: true })], { name: 'plain' }).createVm({ features: { preempt: true } });
    expect(checkRecordDetailed(plain.record(), same.catalog)).toEqual([]);
    // A VM with the feature off holds no continuation; an old record (no field) compares none.
    const off = Hypervisor.compose([createPreemptService()], { name: 'off' }).createVm({}).record();
    expect(off.continuations).toEqual({});
    expect(checkRecordDetailed(off, changed.catalog)).toEqual([]);
    const { continuations: _drop, ...old } = record;
    expect(checkRecordDetailed(old, changed.catalog)).toEqual([]);
  });

  it('restore refuses the snapshot of such a VM on a build with another encoding, with no vCPU mid-call', () => {
    const { vm, m } = vmOn();
    const bytes = saveSnapshot(vm, { arch: 'arm64', description: { board: 'memory' }, vcpus: [new Uint8Array(8)], memory: m.memory.regions() });
    expect(() => planRestore(bytes, Hypervisor.compose([createPreemptService({ continuation: other })], { name: 'changed' }), { arch: 'arm64' })).toThrow(
      /PREEMPT_MARK \(xen:0x31\/0x1\).*x0\[63:6\] start unit.*→ x0\[63:8\] start unit/s,
    );
  });

  it('the classifier names the call and both encodings: major for a call VMs had, minor for a new one', () => {
    const m = (k?: object, extraCall = false) => {
      const s = createPreemptService({ continuation: (k ?? null) as never });
      return JSON.parse(JSON.stringify(serviceManifest(extraCall ? s : s)));
    };
    const base = m({ ...createPreemptService().surface.continuations![0]! });
    const moved = m(other);
    const c = classifyAbiChange(base, moved);
    expect(c.changes.filter((x) => x.subject === 'continuation PREEMPT_MARK')).toEqual([
      expect.objectContaining({ bump: 'major', message: 'continuation of PREEMPT_MARK: x0[63:6] start unit; other sub-ops answer -22 in x0 → x0[63:8] start unit; other sub-ops answer -22 in x0' }),
    ]);
    const gone = classifyAbiChange(base, m(undefined));
    expect(gone.changes.find((x) => x.subject === 'continuation PREEMPT_MARK')).toMatchObject({ bump: 'major', kind: 'removed' });
    // A continuation for a call the old manifest did not have is minor.
    const withoutCall = JSON.parse(JSON.stringify(base));
    withoutCall.surface.calls = withoutCall.surface.calls.filter((x: { name: string }) => x.name !== 'PREEMPT_MARK');
    delete withoutCall.surface.continuations;
    expect(classifyAbiChange(withoutCall, base).changes.find((x) => x.subject === 'continuation PREEMPT_MARK')).toMatchObject({ bump: 'minor', kind: 'added' });
    // Giving a sibling sub-op a continuation in bits it refused before (otherSubOps) is minor;
    // in bits it never refused, major.
    const plus = (field: object) => {
      const x = JSON.parse(JSON.stringify(base));
      x.surface.continuations.push({ call: 'PREEMPT_PLAIN', description: '', encoding: [field] });
      return x;
    };
    expect(classifyAbiChange(base, plus({ name: 'start', reg: 0, shift: 6, width: 58 })).changes.find((x) => x.subject === 'continuation PREEMPT_PLAIN')).toMatchObject({
      bump: 'minor',
      message: 'continuation of PREEMPT_PLAIN: not preemptible → x0[63:6] start (its field was refused before)',
    });
    expect(classifyAbiChange(base, plus({ name: 'start', reg: 1, shift: 0, width: 8 })).changes.find((x) => x.subject === 'continuation PREEMPT_PLAIN')).toMatchObject({ bump: 'major' });
  });
});
