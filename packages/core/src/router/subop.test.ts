import { describe, expect, it } from 'vitest';
import { callId, ComposeError, Conduits, defineService, Hypervisor, NOT_SUPPORTED_CLASS, probesFor, recordOf, serviceBehaviour, type CallDecl, type ServicePlugin, type Vm } from '../index.js';
import { MemoryMachine } from '../testing/index.js';

/**
 * Sub-ops in the router (CallDecl.subOf): a Xen-style multiplexed hypercall `op(cmd in x0, arg in
 * x1)` with x16 = 32, its commands declared as calls of their own, one of them by a second
 * service under the first one's parent, each gated by its own feature.
 */

const ENOSYS = 0xffff_ffff_ffff_ffdan; // -38
const PARENT = 'MUX_op';
const sub = (value: number) => ({ call: PARENT, selector: 0, value });

/** The parent and two sub-ops; the parent's own handler is the `default:` (-ENOSYS here, as Xen). */
const base = (): ServicePlugin =>
  defineService({
    name: '@x/mux',
    version: '1.0.0',
    surface: {
      features: [{ name: 'mux', default: 'legacy-opt-out', description: '', legacy: 'test' }],
      calls: [
        { name: PARENT, conduit: 'xen', id: 32, feature: 'mux', signature: { args: [{ name: 'cmd', reg: 0, width: 'u32', kind: 'enum', values: [1, 2, 11] }, { name: 'arg', reg: 1, width: 'u64', kind: 'opaque' }], results: [{ reg: 0 }] } },
        { name: 'MUX_one', conduit: 'xen', id: 32, subOf: sub(1), feature: 'mux', signature: { args: [{ name: 'arg', reg: 1, width: 'u64', kind: 'opaque' }], results: [{ reg: 0 }] } },
        { name: 'MUX_two', conduit: 'xen', id: 32, subOf: sub(2), feature: 'mux' },
      ],
    },
    handlers: {
      [PARENT]: (v) => v.regs.setSigned(0, -38),
      MUX_one: (v) => v.regs.set(0, 0x100n + v.regs.get(1)),
      MUX_two: (v) => v.regs.set(0, 0x200n),
    },
  });

/** A second service plugging a sub-op (cmd 11) into @x/mux's parent, behind its own opt-in feature. */
const plugin = (): ServicePlugin =>
  defineService({
    name: '@x/plug',
    version: '1.0.0',
    requires: ['@x/mux'],
    surface: {
      features: [{ name: 'plug', default: 'opt-in', description: '' }],
      calls: [{ name: 'MUX_eleven', conduit: 'xen', id: 32, subOf: sub(11), feature: 'plug', signature: { args: [{ name: 'arg', reg: 1, width: 'u64', kind: 'opaque' }], results: [{ reg: 0 }] } }],
    },
    handlers: { MUX_eleven: (v) => v.regs.set(0, 0xb00n) },
  });

function vmOf(features: Record<string, boolean> = {}, services = [base(), plugin()]): { vm: Vm; m: MemoryMachine } {
  const vm = Hypervisor.compose(services, { name: 'mux' }).createVm({ features });
  const m = new MemoryMachine();
  vm.attachMachine(m);
  vm.start();
  return { vm, m };
}

/** One hypercall: registers x0..x30 set to a background, then x16, x0, x1; returns the registers after. */
function call(vm: Vm, m: MemoryMachine, x16: bigint, x0: bigint, x1 = 0x1234n): bigint[] {
  const r = m.vcpus[0]!.regs;
  for (let i = 0; i < 31; i++) r.set(i, 0x5a00n + BigInt(i));
  r.set(16, x16);
  r.set(0, x0);
  r.set(1, x1);
  vm.dispatch(Conduits.xen, m.vcpus[0]!);
  return Array.from({ length: 31 }, (_, i) => r.get(i));
}

describe('router: sub-ops', () => {
  it('dispatches a sub-op by the selector register with no register rewrite', () => {
    const { vm, m } = vmOf();
    const after = call(vm, m, 32n, 1n, 0x40n);
    expect(after[0]).toBe(0x140n); // MUX_one saw its argument in x1
    expect(after[16]).toBe(32n); // x16 untouched
    expect(after[1]).toBe(0x40n); // the argument register untouched
    for (let i = 2; i < 31; i++) if (i !== 16) expect(after[i], `x${i}`).toBe(0x5a00n + BigInt(i));
    expect(call(vm, m, 32n, 2n)[0]).toBe(0x200n);
    // the selector is an int: its low 32 bits select
    expect(call(vm, m, 32n, 0xa5a5_a5a5_0000_0002n)[0]).toBe(0x200n);
  });

  it('an unknown or unexposed sub-op reaches the parent, whose default answers -ENOSYS', () => {
    const { vm, m } = vmOf(); // `plug` is opt-in: MUX_eleven is not exposed
    expect(call(vm, m, 32n, 11n)[0]).toBe(ENOSYS);
    expect(call(vm, m, 32n, 99n)[0]).toBe(ENOSYS);
    expect(vm.exposesCall('MUX_eleven')).toBe(false);
    expect(vm.exposesCall('MUX_one')).toBe(true);
  });

  it('a sub-op declared by a second service under the first one\'s parent, gated by its own feature', () => {
    const { vm, m } = vmOf({ plug: true });
    expect(call(vm, m, 32n, 11n)[0]).toBe(0xb00n);
    expect(vm.exposesCall('MUX_eleven')).toBe(true);
    // Without its parent exposed, a sub-op is unreachable whatever its own feature says.
    const off = vmOf({ plug: true, mux: false });
    expect(call(off.vm, off.m, 32n, 11n)[0]).toBe(ENOSYS); // the conduit's not supported: no call 32
    expect(off.vm.exposesCall('MUX_eleven')).toBe(false);
  });

  it('sub-op ids are no function ids: anything else in x16 is the conduit\'s not supported', () => {
    const { vm, m } = vmOf({ plug: true });
    for (const x16 of [0x8020_000bn, 0x8020_0001n, (1n << 32n) | 32n]) expect(call(vm, m, x16, 1n)[0]).toBe(ENOSYS);
    expect(vm.exposes(Conduits.xen, 0x8020_000b)).toBe(false);
  });

  it('register transfer: the parent\'s class loads the selector and every exposed sub-op\'s registers', () => {
    const { vm, m } = vmOf({ plug: true });
    const t = vm.transfer(Conduits.xen);
    const r = m.vcpus[0]!.regs;
    r.set(16, 32n);
    const k = t.classOf(r);
    expect(k).not.toBe(NOT_SUPPORTED_CLASS);
    expect(t.readMasks[k]! & 0b11).toBe(0b11); // x0 (selector, result) and x1 (argument)
    expect(t.readMasks[k]! & (1 << 16)).toBe(1 << 16);
    expect(t.writeMasks[k]).toBe(1); // x0
  });

  it('identity, records and probes: `conduit:id/value`, probes set the selector', () => {
    const hv = Hypervisor.compose([base(), plugin()], { name: 'mux' });
    const eleven = hv.catalog.calls.get('MUX_eleven')!.decl;
    expect(callId(eleven)).toBe('xen:0x20/0xb');
    const vm = hv.createVm({ features: { plug: true } });
    expect(recordOf(vm.abi).features.plug!.calls).toEqual(['xen:0x20/0xb']);
    expect(recordOf(vm.abi).features.mux!.calls).toEqual(['xen:0x20', 'xen:0x20/0x1', 'xen:0x20/0x2']);
    const labels = probesFor(eleven, Conduits.xen).map((p) => p.label);
    expect(labels).toContain('x0=0xb x1=0x0');
    expect(labels).toContain('x0=0xa5a5a5a50000000b x1=0x0');
    expect(labels.every((l) => l.startsWith('x0='))).toBe(true);
    const b = serviceBehaviour(hv, plugin());
    expect(b.default).toEqual({}); // opt-in: not exposed by default
    expect(b['plug=on']!.MUX_eleven!['x0=0xb x1=0x0']).toBe('x0=0xb00');
  });

  it('composition refuses a bad sub-op, naming it', () => {
    const bad = (calls: CallDecl[]) => {
      try {
        Hypervisor.compose([base(), defineService({ name: '@x/bad', version: '1.0.0', surface: { features: [{ name: 'bad', default: 'opt-in', description: '' }], calls }, handlers: Object.fromEntries(calls.map((c) => [c.name, () => {}])) })]);
      } catch (e) {
        expect(e).toBeInstanceOf(ComposeError);
        return (e as Error).message;
      }
      throw new Error('composed');
    };
    expect(bad([{ name: 'B', conduit: 'xen', id: 32, subOf: { call: 'NOPE', selector: 0, value: 5 }, feature: 'bad' }])).toContain("names parent call 'NOPE'");
    expect(bad([{ name: 'B', conduit: 'xen', id: 32, subOf: sub(2), feature: 'bad' }])).toContain('sub-op 0x2 of MUX_op is claimed by MUX_two and B');
    expect(bad([{ name: 'B', conduit: 'xen', id: 33, subOf: sub(5), feature: 'bad' }])).toContain("must carry its parent's id 0x20");
    expect(bad([{ name: 'B', conduit: 'smccc', id: 32, subOf: sub(5), feature: 'bad' }])).toContain("is on conduit 'smccc'");
    expect(bad([{ name: 'B', conduit: 'xen', id: 32, subOf: { call: PARENT, selector: 1, value: 5 }, feature: 'bad' }])).toContain('disagree on the selector register');
    expect(bad([{ name: 'B', conduit: 'xen', id: 32, subOf: { call: 'MUX_one', selector: 0, value: 5 }, feature: 'bad' }])).toContain('itself a sub-op');
    expect(bad([{ name: 'B', conduit: 'xen', id: 32, subOf: { call: PARENT, selector: 16, value: 5 }, feature: 'bad' }])).toContain('cannot be a selector register');
  });
});
