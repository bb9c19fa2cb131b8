import { describe, expect, it } from 'vitest';
import { callInFlight, ComposeError, Conduits, defineService, Hypervisor, hypercallHeartbeat, planRestore, saveSnapshot, ServiceFailure, SnapshotError, StateError, type CallHandler } from '../index.js';
import { MemoryMachine } from '../testing/index.js';

/**
 * The service boundary: whatever a handler, a lifecycle tap or a state handler throws becomes a
 * ServiceFailure naming service, version, call, vCPU (the CLI's guest tests run the same through
 * a real arm64 guest: packages/cli/test/service-failure.test.ts).
 */
const ID = 0xc600_0010;

function build(handler: CallHandler<{ n: number }>, taps: { save?: () => void; restore?: () => void; create?: () => void; saveState?: () => unknown; load?: () => void } = {}) {
  return Hypervisor.compose([
    defineService<{ n: number }>({
      name: '@x/faulty',
      version: '2.3.4',
      surface: {
        features: [{ name: 'f', default: 'legacy-opt-out', description: '', legacy: 'test' }],
        calls: [{ name: 'FAULTY', conduit: 'smccc', id: ID, feature: 'f' }],
        state: { id: 'faulty', version: 1 },
      },
      state: {
        create: () => (taps.create?.(), { n: 0 }),
        save: (s) => (taps.saveState ? (taps.saveState() as number) : s.n),
        load: (d) => (taps.load?.(), { n: d as number }),
      },
      handlers: { FAULTY: handler },
      apply: (hv, self) => {
        if (taps.save) hv.hooks.snapshotSave.tap(self.name, taps.save);
        if (taps.restore) hv.hooks.snapshotRestore.tap(self.name, taps.restore);
      },
    }),
  ]);
}

function call(handler: CallHandler<{ n: number }>): unknown {
  const vm = build(handler).createVm();
  const m = new MemoryMachine(2);
  vm.attachMachine(m);
  vm.start();
  m.vcpus[1]!.regs.setU32(0, ID);
  try {
    vm.dispatch(Conduits.smccc, m.vcpus[1]!);
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('service containment', () => {
  it('wraps anything a handler throws, naming service, version, call and vCPU', () => {
    const cases: Array<[() => void, string]> = [
      [() => void (undefined as unknown as { x: number }).x, 'TypeError: Cannot read properties of undefined'],
      [() => { throw 'boom'; }, 'threw the string "boom"'],
      [() => { throw undefined; }, 'threw undefined'],
      [() => { throw { code: 7 }; }, 'threw {"code":7}'],
    ];
    for (const [fn, what] of cases) {
      const e = call(fn);
      expect(e).toBeInstanceOf(ServiceFailure);
      const f = e as ServiceFailure;
      expect(f.code).toBe('SERVICE_FAILURE');
      expect(f.site).toMatchObject({ service: '@x/faulty', version: '2.3.4', phase: 'call', call: { id: ID, name: 'FAULTY' }, vcpu: 1 });
      expect(f.message).toContain(`service @x/faulty@2.3.4 failed in call 0xc6000010 FAULTY on vCPU 1: ${what}`);
      expect(f.locate(0x4000_1000n).message).toContain('on vCPU 1 at PC 0x40001000: ');
    }
    expect(hypercallHeartbeat()[1]).toBe(-1); // no call in flight after a throw
  });

  it('keeps a heartbeat: busy with the call in flight while a handler runs', () => {
    let seen: ServiceFailure | undefined;
    const before = hypercallHeartbeat()[0]!;
    expect(call(() => void (seen = callInFlight(10, 1)))).toBeUndefined();
    expect(seen?.message).toBe('service @x/faulty@2.3.4 failed in call 0xc6000010 FAULTY on vCPU 1: HypercallTimeout: the handler did not return within 10 s (hypercall watchdog)');
    expect(hypercallHeartbeat()[0]).not.toBe(before); // bumped by the dispatch (and the VM's creation)
    expect(callInFlight(10, 1)).toBeUndefined();
  });

  it('shows a lifecycle tap or state handler in flight too (a watchdog stops one that never returns)', () => {
    let seen: ServiceFailure | undefined;
    build(() => {}, { create: () => void (seen = callInFlight(10, 0)) }).createVm();
    expect(seen?.message).toBe('service @x/faulty@2.3.4 failed in its state create handler: HypercallTimeout: the handler did not return within 10 s (hypercall watchdog)');
    const vm = build(() => {}, { save: () => void (seen = callInFlight(10, 0)) }).createVm();
    vm.saveServiceStates();
    expect(seen?.site.phase).toBe('snapshotSave');
    expect(callInFlight(10, 0)).toBeUndefined();
  });

  it('wraps lifecycle taps and state handlers', () => {
    const ok = () => {};
    expect(() => build(ok, { create: () => { throw new Error('no pool'); } }).createVm()).toThrow('service @x/faulty@2.3.4 failed in its state create handler: Error: no pool');
    const vm = build(ok, { save: () => { throw 'save tap'; } }).createVm();
    expect(() => vm.saveServiceStates()).toThrow('failed in its snapshotSave hook: threw the string "save tap"');
    const vm2 = build(ok, { saveState: () => { throw new RangeError('bad'); } }).createVm();
    expect(() => vm2.saveServiceStates()).toThrow('failed in its state save handler: RangeError: bad');
    const vm3 = build(ok, { restore: () => { throw undefined; } }).createVm();
    expect(() => vm3.adoptStates(new Map(), false)).toThrow('failed in its snapshotRestore hook: threw undefined');
  });

  it('tells a state load that refuses its input (a PlugvisorError: snapshot refused) from one that fails (service failure)', () => {
    const ok = () => {};
    const vm = build(ok).createVm();
    const m = new MemoryMachine(1);
    vm.attachMachine(m);
    vm.start();
    const bytes = saveSnapshot(vm, { arch: 'arm64', description: {}, vcpus: [Uint8Array.of(0)], memory: m.memory.regions() });
    const refuse = build(ok, { load: () => { throw new StateError('faulty', 'n', 'is out of range'); } });
    expect(() => planRestore(bytes, refuse, { arch: 'arm64' })).toThrow(SnapshotError);
    expect(() => planRestore(bytes, refuse, { arch: 'arm64' })).toThrow('SERVICE_STATE record of @x/faulty: state refused');
    const fail = build(ok, { load: () => { throw 'bad load'; } });
    expect(() => planRestore(bytes, fail, { arch: 'arm64' })).toThrow(ServiceFailure);
    expect(() => planRestore(bytes, fail, { arch: 'arm64' })).toThrow('service @x/faulty@2.3.4 failed in its state load handler: threw the string "bad load"');
  });

  it('turns an apply() that throws into a ComposeError naming the service', () => {
    const bad = { ...defineService({ name: '@x/bad', version: '1.0.0', surface: { features: [], calls: [] }, handlers: {} }), apply: () => { throw new TypeError('oops'); } };
    expect(() => Hypervisor.compose([bad])).toThrow(ComposeError);
    expect(() => Hypervisor.compose([bad])).toThrow('@x/bad@1.0.0: apply() failed: TypeError: oops');
  });
});
