import { describe, expect, it } from 'vitest';
import { planRestore, saveSnapshot, SnapshotError, type MachineImage } from '@plugvisor/core';
import { INTEL_SKYLAKE_SP, parseHostDump, xsaveAbiOf, MASK, decodeXsave, encodeXsave, type XsaveState } from '@plugvisor/xsave';
import { X86Machine, type X86MachineDescription } from './machine.js';
import { kvmHost, kvmUnavailable } from './host.js';
import { checkX86Snapshot, machineFromPlan } from './snapshot.js';
import { guestImage, PARAMS } from './testing/guests.js';
import { x86TestBuild } from './testing/build.js';
import { decodeVcpuState } from './cpu/state.js';

const noKvm = kvmUnavailable();
const d = noKvm ? describe.skip : describe;
if (noKvm) describe('x86 snapshots', () => it.skip(`needs /dev/kvm: ${noKvm}`, () => {}));

const LOOP = [200n, 40n];

function start(hv = x86TestBuild(), out: string[] = []) {
  const vm = hv.createVm();
  const m = new X86Machine({ memSize: 4 << 20, console: (b) => out.push(Buffer.from(b).toString('latin1')) });
  m.boot(m.loadImage(guestImage('loop')).entry);
  LOOP.forEach((p, i) => m.memory.writeU64(PARAMS + BigInt(8 * i), p));
  vm.attachMachine(m);
  m.attach(vm);
  return { hv, vm, m, out };
}

d('x86 snapshots through the core stream', () => {
  const reference = (() => {
    if (noKvm) return '';
    const { m, out } = start();
    const r = m.run();
    m.dispose();
    if (r.kind !== 'system-event') throw new Error(`reference run ended with ${r.kind}`);
    return out.join('');
  })();

  for (const at of [1, 57, 199]) {
    it(`the integer loop snapshotted after hypercall ${at} finishes in a new VM with the uninterrupted result`, () => {
      const a = start();
      const first = a.m.run({ pauseAfterTraps: at });
      expect(first).toEqual({ kind: 'paused', reason: 'trap budget reached' });
      const bytes = saveSnapshot(a.vm, a.m.image());
      a.m.dispose();

      const plan = planRestore(bytes, a.hv, { arch: 'x86_64', checkMachine: checkX86Snapshot });
      const out: string[] = [];
      const b = machineFromPlan(plan, { console: (x) => out.push(Buffer.from(x).toString('latin1')) });
      try {
        const r = b.run();
        expect(r.kind).toBe('system-event');
        expect(a.out.join('') + out.join('')).toBe(reference);
        expect(reference).toMatch(/^loop: start\nresult [0-9a-f]{16}\n$/);
      } finally {
        b.dispose();
      }
    });
  }

  it('carries KVM_SET_XSAVE state of one vCPU into another VM, reading back identical', () => {
    const a = start();
    const host = a.m.host.xsave;
    const v = a.m.kvmVcpu(0);
    // Every user component the VM has, filled with a pattern, set through KVM_SET_XSAVE.
    const mask = BigInt(a.m.xsaveAbi.xcr0);
    const state = patterned(decodeXsave(v.kvm.getXsave(host.uabiSize, true), host), mask, host);
    const buf = encodeXsave(state, host, new Uint8Array(Math.max(4096, host.uabiSize)));
    v.kvm.setXsave(buf);
    const readBack = decodeXsave(v.kvm.getXsave(host.uabiSize, true), host);
    expect(readBack).toEqual(state);

    const bytes = saveSnapshot(a.vm, a.m.image());
    a.m.dispose();
    const plan = planRestore(bytes, a.hv, { arch: 'x86_64', checkMachine: checkX86Snapshot });
    expect(decodeVcpuState(plan.vcpus[0]!).xsave).toEqual(state); // host-independent record
    const b = machineFromPlan(plan, { console: () => {} });
    try {
      const again = decodeXsave(b.kvmVcpu(0).kvm.getXsave(host.uabiSize, true), host);
      expect(again).toEqual(state);
      expect(b.xsaveAbi).toEqual(a.m.xsaveAbi);
    } finally {
      b.dispose();
    }
  });

  it('refuses, before anything is built, a snapshot whose xfeatures this host lacks, naming each', () => {
    const a = start();
    const image = a.m.image();
    // The same VM as if created on a Skylake-SP host with MPX and PKRU (offsets as Intel's).
    const sky = parseHostDump(INTEL_SKYLAKE_SP);
    const foreign = xsaveAbiOf({ xcr0: sky.kvmXcr0 }, sky);
    const desc = { ...(image.description as unknown as X86MachineDescription), xsave: foreign };
    const bytes = saveSnapshot(a.vm, { ...image, description: desc as unknown as MachineImage['description'] });
    a.m.dispose();
    const host = kvmHost().xsave;
    const lacking = ['bndregs', 'bndcsr', 'pkru'].filter((n) => !(host.kvmXcr0 & (1n << BigInt({ bndregs: 3, bndcsr: 4, pkru: 9 }[n]!))));
    let err: SnapshotError | undefined;
    try {
      planRestore(bytes, a.hv, { arch: 'x86_64', checkMachine: checkX86Snapshot });
    } catch (e) {
      err = e as SnapshotError;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect(err!.code).toBe('SNAPSHOT_INCOMPATIBLE');
    for (const n of lacking) expect(err!.message).toContain(`xfeature ${n}`);
    expect(lacking.length).toBeGreaterThan(0);
  });

  it('carries VM-level state: kvmclock and the PIC/IOAPIC registers', () => {
    const a = start();
    a.m.run({ pauseAfterTraps: 2 });
    const image = a.m.image();
    const d = image.description as unknown as X86MachineDescription;
    expect(d.vm!.irqchip!.length).toBe(a.m.irqchip ? 3 : 0);
    const bytes = saveSnapshot(a.vm, image);
    a.m.dispose();
    const plan = planRestore(bytes, a.hv, { arch: 'x86_64', checkMachine: checkX86Snapshot });
    const b = machineFromPlan(plan, { console: () => {} });
    try {
      const again = b.describe();
      expect(again.vm!.irqchip).toEqual(d.vm!.irqchip);
      expect(again.vm!.clock).toBeGreaterThanOrEqual(d.vm!.clock);
      expect(b.run().kind).toBe('system-event');
    } finally {
      b.dispose();
    }
  });

  it('refuses a damaged vCPU record by name', () => {
    const a = start();
    const image = a.m.image();
    const blob = Buffer.from(image.vcpus[0]!);
    const bad = Buffer.from(blob.toString('latin1').replace('"rip"', '"rop"'), 'latin1');
    const bytes = saveSnapshot(a.vm, { ...image, vcpus: [bad] });
    a.m.dispose();
    expect(() => planRestore(bytes, a.hv, { arch: 'x86_64', checkMachine: checkX86Snapshot })).toThrow(/vCPU 0: x86 vCPU state regs: rip must be a u64/);
  });
});

/** `s` with every component of `mask` present and filled with a recognisable pattern. */
function patterned(s: XsaveState, mask: bigint, host: ReturnType<typeof kvmHost>['xsave']): XsaveState {
  const fill = (n: number, len: number) => Uint8Array.from({ length: len }, (_, i) => (n * 31 + i * 7 + 1) & 0xff);
  const vecs = (count: number, len: number, seed: number) => Array.from({ length: count }, (_, i) => fill(seed + i, len));
  const c: XsaveState['components'] = {
    x87: { fcw: 0x37f, fsw: 0x3800, ftw: 0x80, fop: 0x123, fip: 0x1122334455n, fdp: 0x66778899aan, st: vecs(8, 10, 1) },
    sse: { xmm: vecs(16, 16, 20) },
  };
  if (mask & MASK.YMM) c.avx = { ymmHi: vecs(16, 16, 40) };
  if (mask & (1n << 5n)) c.opmask = { k: Array.from({ length: 8 }, (_, i) => 0x0101010101010101n * BigInt(i + 1)) };
  if (mask & (1n << 6n)) c.zmmHi256 = { zmmHi: vecs(16, 32, 60) };
  if (mask & (1n << 7n)) c.hi16Zmm = { zmm: vecs(16, 64, 80) };
  const bv = (MASK.FPSSE | (mask & (MASK.YMM | MASK.AVX512))) & host.kvmXcr0;
  return { ...s, xstateBv: bv | MASK.FPSSE, mxcsr: 0x1fa0, components: c };
}
