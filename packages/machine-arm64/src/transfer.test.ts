import { describe, expect, it } from 'vitest';
import { Conduits, defineService, Hypervisor, NOT_SUPPORTED_CLASS, RegisterFile } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { Layout } from './board/layout.js';
import { maskRegisters } from './cpu/transfer.js';

/**
 * Register transfer driven by call signatures: the core's per-VM transfer classes, and what a
 * real aarch64 guest sees through the machine with either transport (register window, batches).
 */

const CALL_SIG = 0xc600_0010; // args x1 (u64), x5 (u32); results x0, x1
const CALL_DEFAULT = 0xc600_0011; // no signature: results x0..x3; writes only x0
const CALL_NONE = 0xc600_0012; // results: [] (writes nothing)
const RANGE_FIRST = 0xc600_0100; // range, args x2; result x0 = id + x2
const RANGE_LAST = 0xc600_01ff;
const UNEXPOSED = 0xc600_0020;
const SYSTEM_OFF = 0x8400_0008;
const XEN_OP = 0x22; // args x0..x2, result x0
const XEN_UNKNOWN = 0x23;

/** What each handler saw in ctx.regs: registers outside the call's transfer must read 0. */
const seen: Array<{ call: string; regs: bigint[] }> = [];
const snapshot = (call: string, regs: RegisterFile) => seen.push({ call, regs: Array.from(regs.u64.subarray(0, 31)) });

const service = defineService({
  name: '@plugvisor/transfer-test',
  version: '0.0.0',
  surface: {
    features: [{ name: 'transfer-test', default: 'legacy-opt-out', legacy: 'test only', description: 'transfer test calls' }],
    calls: [
      {
        name: 'T_SIG',
        conduit: 'smccc',
        id: CALL_SIG,
        feature: 'transfer-test',
        signature: {
          args: [
            { name: 'a', reg: 1, width: 'u64', kind: 'opaque' },
            { name: 'b', reg: 5, width: 'u32', kind: 'opaque' },
          ],
          results: [{ reg: 0 }, { reg: 1 }],
        },
      },
      { name: 'T_DEFAULT', conduit: 'smccc', id: CALL_DEFAULT, feature: 'transfer-test' },
      { name: 'T_NONE', conduit: 'smccc', id: CALL_NONE, feature: 'transfer-test', signature: { results: [] } },
      {
        name: 'T_RANGE',
        conduit: 'smccc',
        id: RANGE_FIRST,
        last: RANGE_LAST,
        feature: 'transfer-test',
        signature: { args: [{ name: 'k', reg: 2, width: 'u64', kind: 'opaque' }], results: [{ reg: 0 }] },
      },
      { name: 'T_OFF', conduit: 'smccc', id: SYSTEM_OFF, feature: 'transfer-test' },
      {
        name: 'T_XEN',
        conduit: 'xen',
        id: XEN_OP,
        feature: 'transfer-test',
        signature: {
          args: [0, 1, 2].map((reg) => ({ name: `a${reg}`, reg, width: 'u64' as const, kind: 'opaque' as const })),
          results: [{ reg: 0 }],
        },
      },
    ],
  },
  handlers: {
    T_SIG: (v) => {
      snapshot('T_SIG', v.regs);
      v.regs.set(0, v.regs.get(1) + BigInt(v.regs.lo(5)));
      v.regs.set(1, 0x1111n);
    },
    T_DEFAULT: (v) => {
      snapshot('T_DEFAULT', v.regs);
      v.regs.set(0, 42n); // x1..x3 declared (by default) but left alone: the guest keeps its values
    },
    T_NONE: (v) => snapshot('T_NONE', v.regs),
    T_RANGE: (v) => {
      snapshot('T_RANGE', v.regs);
      v.regs.set(0, BigInt(v.regs.lo(0)) + v.regs.get(2));
    },
    T_OFF: (v) => v.machine.systemEvent({ kind: 'off', vcpu: v.index, data: [] }),
    T_XEN: (v) => {
      snapshot('T_XEN', v.regs);
      v.regs.set(0, v.regs.get(0) ^ v.regs.get(1) ^ v.regs.get(2) ^ BigInt(v.regs.lo(16)));
    },
  },
});

const build = Hypervisor.compose([service], { name: 'transfer-test' });
const bit = (...regs: number[]) => regs.reduce((m, r) => m | (1 << r), 0) >>> 0;

describe('core: register transfer classes from call signatures', () => {
  const vm = build.createVm();
  vm.attachMachine(new Arm64Machine({ memSize: 1 << 20, console: () => {} }));
  vm.start();
  const smccc = vm.transfer(Conduits.smccc);
  const xen = vm.transfer(Conduits.xen);
  const classOf = (t: typeof smccc, id: number, high = 0) => {
    const regs = new RegisterFile(32);
    regs.u32[t.idRegister * 2] = id >>> 0;
    regs.u32[t.idRegister * 2 + 1] = high;
    return t.classOf(regs);
  };
  const masks = (t: typeof smccc, id: number, high = 0) => {
    const k = classOf(t, id, high);
    return { read: t.readMasks[k], write: t.writeMasks[k] };
  };

  it('reads the id, the declared arguments and results; writes the declared results', () => {
    expect(smccc.idRegister).toBe(0);
    expect(xen.idRegister).toBe(16);
    expect(masks(smccc, CALL_SIG)).toEqual({ read: bit(0, 1, 5), write: bit(0, 1) });
    expect(masks(smccc, CALL_DEFAULT)).toEqual({ read: bit(0, 1, 2, 3), write: bit(0, 1, 2, 3) });
    expect(masks(smccc, CALL_NONE)).toEqual({ read: bit(0), write: 0 });
    expect(masks(smccc, RANGE_FIRST)).toEqual({ read: bit(0, 2), write: bit(0) });
    expect(masks(smccc, RANGE_LAST)).toEqual(masks(smccc, RANGE_FIRST));
    expect(masks(xen, XEN_OP)).toEqual({ read: bit(0, 1, 2, 16), write: bit(0) });
  });

  it("gives unexposed ids the conduit's not-supported registers, as the dispatcher answers them", () => {
    expect(classOf(smccc, UNEXPOSED)).toBe(NOT_SUPPORTED_CLASS);
    expect(classOf(smccc, RANGE_LAST + 1)).toBe(NOT_SUPPORTED_CLASS);
    expect(masks(smccc, UNEXPOSED)).toEqual({ read: bit(0), write: bit(0, 1, 2, 3) });
    expect(masks(xen, XEN_UNKNOWN)).toEqual({ read: bit(16), write: bit(0) });
    // Xen compares all of x16: an op with high bits is no hypercall.
    expect(classOf(xen, XEN_OP, 1)).toBe(NOT_SUPPORTED_CLASS);
  });

  it('shares a class between calls with the same masks, and stays small', () => {
    expect(classOf(smccc, SYSTEM_OFF)).toBe(classOf(smccc, CALL_DEFAULT));
    expect(smccc.readMasks.length).toBe(new Set(smccc.readMasks.map((r, k) => `${r}:${smccc.writeMasks[k]}`)).size);
    expect(smccc.readMasks.length).toBe(5); // not supported, SIG, DEFAULT (= OFF), NONE, RANGE
  });

  it('is fixed at start: asking before it is refused', () => {
    expect(() => build.createVm().transfer(Conduits.smccc)).toThrow(/not frozen/);
  });
});

// ---- a hand-assembled guest ----------------------------------------------------------------

const movz = (rd: number, imm: number, hw: number) => 0xd280_0000 | (hw << 21) | ((imm & 0xffff) << 5) | rd;
const movk = (rd: number, imm: number, hw: number) => (0xf280_0000 | (hw << 21) | ((imm & 0xffff) << 5) | rd) >>> 0;
const mov64 = (rd: number, v: bigint) => [0, 1, 2, 3].map((hw) => (hw === 0 ? movz : movk)(rd, Number((v >> BigInt(16 * hw)) & 0xffffn), hw) >>> 0);
const str = (rt: number, rn: number, slot: number) => (0xf900_0000 | (slot << 10) | (rn << 5) | rt) >>> 0;
const hvc = (imm: number) => (0xd400_0002 | (imm << 5)) >>> 0;
const smc = (imm: number) => (0xd400_0003 | (imm << 5)) >>> 0;
const OUT = Layout.RAM_BASE + 0x1_0000n;
/** The guest's value for xn before call `c`: every bit pattern distinct, high halves set. */
const input = (c: number, n: number) => 0xa000_0000_0000_0000n | (BigInt(c) << 40n) | (BigInt(n) << 32n) | BigInt(0x1000 * c + n);

interface Call {
  readonly via: 'hvc0' | 'smc0' | 'xen' | 'smc1';
  readonly regs: ReadonlyMap<number, bigint>;
}

/** For each call: x0..x17 loaded (x0..x17 = input, overridden by `regs`), trap, x0..x17 stored. */
function program(calls: readonly Call[]): Uint8Array {
  const words: number[] = [...mov64(30, OUT)];
  calls.forEach((call, c) => {
    for (let n = 0; n < 18; n++) words.push(...mov64(n, call.regs.get(n) ?? input(c, n)));
    words.push(call.via === 'hvc0' ? hvc(0) : call.via === 'xen' ? hvc(0xea1) : smc(call.via === 'smc1' ? 1 : 0));
    for (let n = 0; n < 18; n++) words.push(str(n, 30, c * 18 + n));
  });
  words.push(...mov64(0, BigInt(SYSTEM_OFF)), smc(0), 0x1400_0000 /* b . */);
  return new Uint8Array(Uint32Array.from(words).buffer);
}

const calls: Call[] = [
  { via: 'hvc0', regs: new Map([[0, BigInt(CALL_SIG)], [5, 0xffff_ffff_0000_0007n]]) },
  { via: 'hvc0', regs: new Map([[0, BigInt(CALL_DEFAULT)]]) },
  { via: 'smc0', regs: new Map([[0, BigInt(CALL_DEFAULT) | 0xdead_0000_0000_0000n]]) }, // SMCCC: w0 only
  { via: 'hvc0', regs: new Map([[0, BigInt(CALL_NONE)]]) },
  { via: 'hvc0', regs: new Map([[0, BigInt(RANGE_FIRST + 5)]]) },
  { via: 'hvc0', regs: new Map([[0, BigInt(UNEXPOSED)]]) },
  { via: 'xen', regs: new Map([[16, BigInt(XEN_OP)]]) },
  { via: 'xen', regs: new Map([[16, BigInt(XEN_UNKNOWN)]]) },
  { via: 'xen', regs: new Map([[16, (1n << 32n) | BigInt(XEN_OP)]]) },
  { via: 'smc1', regs: new Map([[0, BigInt(CALL_SIG)]]) },
  { via: 'hvc0', regs: new Map([[0, BigInt(CALL_SIG)], [5, 3n]]) }, // the same class again
];

/** The registers the guest must see after each call: its own, except the answer's. */
function expected(c: number): bigint[] {
  const before = Array.from({ length: 18 }, (_, n) => calls[c]!.regs.get(n) ?? input(c, n));
  const out = [...before];
  const m64 = (v: bigint) => BigInt.asUintN(64, v);
  switch (c) {
    case 0:
    case 10:
      out[0] = m64(before[1]! + (before[5]! & 0xffff_ffffn));
      out[1] = 0x1111n;
      break;
    case 1:
    case 2:
      out[0] = 42n;
      break;
    case 3:
      break;
    case 4:
      out[0] = m64(BigInt(RANGE_FIRST + 5) + before[2]!);
      break;
    case 5: // SMCCC NOT_SUPPORTED: x0 = -1, x1..x3 = 0
      out[0] = m64(-1n);
      out[1] = out[2] = out[3] = 0n;
      break;
    case 6:
      out[0] = before[0]! ^ before[1]! ^ before[2]! ^ BigInt(XEN_OP);
      break;
    case 7:
    case 8: // -ENOSYS
      out[0] = m64(-38n);
      break;
    case 9: // SMC #1: x0 = -1 only
      out[0] = m64(-1n);
      break;
  }
  return out;
}

/** Registers each handler may see non-zero: the id register and the call's arguments and results. */
const visible: Record<string, number[]> = { T_SIG: [0, 1, 5], T_DEFAULT: [0, 1, 2, 3], T_NONE: [0], T_RANGE: [0, 2], T_XEN: [0, 1, 2, 16] };

const probe = new Arm64Machine({ memSize: 1 << 20, console: () => {} });
const windowHere = probe.registerTransport === 'window';
probe.dispose();

describe('arm64 machine: a real guest sees exactly the declared results', () => {
  for (const transport of ['window', 'batches'] as const) {
    it.skipIf(transport === 'window' && !windowHere)(`through ${transport}`, () => {
      seen.length = 0;
      const m = new Arm64Machine({ memSize: 1 << 20, console: () => {}, registerWindow: transport === 'window' });
      try {
        expect(m.registerTransport).toBe(transport);
        const vm = build.createVm();
        vm.attachMachine(m);
        m.attach(vm);
        m.loadImage(program(calls));
        m.boot(Layout.RAM_BASE);
        expect(m.run()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
        calls.forEach((_, c) => {
          const got = Array.from({ length: 18 }, (_, n) => m.memory.readU64(OUT + BigInt(8 * (c * 18 + n))));
          expect(got.map((v) => v.toString(16)), `call ${c}`).toEqual(expected(c).map((v) => v.toString(16)));
        });
        // Handlers saw their arguments, and zero in every register their call does not move.
        expect(seen.map((s) => s.call)).toEqual(['T_SIG', 'T_DEFAULT', 'T_DEFAULT', 'T_NONE', 'T_RANGE', 'T_XEN', 'T_SIG']);
        for (const s of seen) {
          const stray = s.regs.map((v, n) => [n, v] as const).filter(([n, v]) => v !== 0n && !visible[s.call]!.includes(n));
          expect(stray, s.call).toEqual([]);
        }
        expect(seen[0]!.regs[5]).toBe(0xffff_ffff_0000_0007n);
        expect(seen[5]!.regs.slice(0, 3)).toEqual([0, 1, 2].map((n) => input(6, n)));
      } finally {
        m.dispose();
      }
    });
  }

  it('maskRegisters lists a mask ascending', () => {
    expect(maskRegisters(bit(0, 1, 16, 30))).toEqual([0, 1, 16, 30]);
    expect(maskRegisters(0)).toEqual([]);
  });
});
