import { describe, expect, it } from 'vitest';
import { Hypervisor } from '../hypervisor.js';
import { defineService } from '../plugin/service.js';
import { Conduits, type ConduitDefinition } from './conduits.js';
import { ComposeError } from '../errors.js';
import { checkServiceConformance } from '../testing/conformance.js';
import type { RegisterFile } from '../machine/registers.js';
import { MemoryMachine } from '../testing/memory-machine.js';
import type { MachineBackend } from '../machine/backend.js';

/** A conduit the core does not know: a made-up machine's "toy" trap, id in x8, result in x0. */
const TOY: ConduitDefinition = Object.freeze({
  name: 'toy-trap',
  description: 'test machine trap: w8 = function id, result in x0',
  resultRegisters: Object.freeze([0]),
  functionIdWord: 16,
  functionId: (regs) => regs.u32[16]!,
  notSupported(regs) {
    regs.setSigned(0, -1);
  },
});

/** The made-up machine's backend descriptor, declaring its conduit. */
const toyBackend: Pick<MachineBackend, 'arch' | 'conduits'> = { arch: 'toy', conduits: [TOY] };

const toyService = () =>
  defineService({
    name: '@plugvisor/test-svc-toy',
    version: '1.0.0',
    description: 'one call on a conduit only the toy machine has',
    surface: {
      features: [{ name: 'toy', default: 'legacy-opt-out', description: 'the toy call', legacy: 'test fixture: on by default' }],
      calls: [{ name: 'TOY_ADD', conduit: 'toy-trap', id: 7, feature: 'toy', signature: { args: [{ name: 'n', reg: 1, width: 'u64', kind: 'opaque' }] } }],
    },
    handlers: {
      TOY_ADD(v) {
        v.regs.u64[0] = v.regs.u64[1]! + 1n;
      },
    },
  });

/** A smccc-only service, for the build composed without the toy machine. */
const plainService = () =>
  defineService({
    name: '@plugvisor/test-svc-plain',
    version: '1.0.0',
    description: 'one SMCCC call',
    surface: {
      features: [{ name: 'plain', default: 'legacy-opt-out', description: 'the plain call', legacy: 'test fixture: on by default' }],
      calls: [{ name: 'PLAIN', conduit: 'smccc', id: 0xc600_0001, feature: 'plain' }],
    },
    handlers: {
      PLAIN(v) {
        v.regs.u64[0] = 5n;
      },
    },
  });

/** Routes TOY_ADD(41) through `conduit` on a fresh VM of `hv`; returns x0. */
function toyAdd(hv: Hypervisor, conduit: ConduitDefinition, idRegister = 8): bigint {
  const m = new MemoryMachine();
  const vm = hv.createVm();
  vm.attachMachine(m);
  vm.start();
  const v = m.vcpus[0]!;
  v.regs.u64[idRegister] = 7n;
  v.regs.u64[1] = 41n;
  vm.dispatch(conduit, v);
  return v.regs.u64[0]!;
}

describe('conduits come from the machine, at composition', () => {
  it('a build using a conduit unknown to core does not compose without the machine that declares it', () => {
    expect(() => Hypervisor.compose([toyService()])).toThrow(ComposeError);
    expect(() => Hypervisor.compose([toyService()])).toThrow("@plugvisor/test-svc-toy: call TOY_ADD uses unknown conduit 'toy-trap'");
  });

  it('composes and routes when the machine passes its conduits, with no machine package imported', () => {
    const hv = Hypervisor.compose([toyService()], { conduits: toyBackend.conduits });
    const conduit = hv.conduits.get('toy-trap')!;
    expect(conduit).toBe(TOY); // the machine's object, not a copy and not changed
    expect(conduit.functionIdWord).toBe(16);
    expect(hv.conduits.names()).toEqual(['smccc', 'xen', 'toy-trap']);
    expect(hv.conduits.indexOf(TOY)).toBe(2);
    expect(toyAdd(hv, conduit)).toBe(42n);
  });

  it('two builds in one process: the one composed with the machine conduit does not lend it to the other', () => {
    const withToy = Hypervisor.compose([toyService()], { conduits: toyBackend.conduits });
    const without = Hypervisor.compose([plainService()]);
    expect(withToy.conduits.has('toy-trap')).toBe(true);
    expect(without.conduits.has('toy-trap')).toBe(false);
    expect(without.conduits.names()).toEqual(['smccc', 'xen']);
    // Composing the toy build first registered nothing: the toy service still needs its machine.
    expect(() => Hypervisor.compose([toyService(), plainService()])).toThrow(/call TOY_ADD uses unknown conduit 'toy-trap'/);
    // The build without it cannot be handed the conduit at run time either.
    const m = new MemoryMachine();
    const vm = without.createVm();
    vm.attachMachine(m);
    vm.start();
    expect(vm.exposes(TOY, 7)).toBe(false);
    expect(() => vm.dispatch(TOY, m.vcpus[0]!)).toThrow(/conduit 'toy-trap' is not in this build/);
    vm.dispatch(Conduits.smccc, m.vcpus[0]!);
    expect(m.vcpus[0]!.regs.u64[0]).toBe(0xffff_ffff_ffff_ffffn); // PLAIN is 0xc6000001, w0 was 0
    // ...and the toy build still routes, composed before or after.
    expect(toyAdd(withToy, TOY)).toBe(42n);
    expect(Object.isFrozen(TOY) && !('index' in TOY)).toBe(true);
  });

  it('each build indexes its own conduits, and two builds may give one name different conventions', () => {
    const OTHER: ConduitDefinition = Object.freeze({ ...TOY, name: 'other-trap', description: 'another test trap' });
    const TOY_W0: ConduitDefinition = Object.freeze({ ...TOY, functionIdWord: 0, functionId: (regs: RegisterFile) => regs.u32[0]!, description: 'toy trap, id in w0' });
    const a = Hypervisor.compose([toyService()], { conduits: [TOY] });
    const b = Hypervisor.compose([toyService()], { conduits: [OTHER, TOY] });
    const c = Hypervisor.compose([toyService()], { conduits: [TOY_W0] });
    expect([a.conduits.indexOf(TOY), b.conduits.indexOf(TOY), c.conduits.indexOf(TOY_W0)]).toEqual([2, 3, 2]);
    expect(toyAdd(a, TOY)).toBe(42n);
    expect(toyAdd(b, TOY)).toBe(42n);
    expect(toyAdd(c, TOY_W0, 0)).toBe(42n);
    // A conduit object is resolved within the build: a's toy-trap is not c's convention.
    expect(() => toyAdd(c, TOY)).toThrow(/a different calling convention/);
  });

  it('the conformance kit checks a service on a machine conduit when given the machine\'s conduits', () => {
    expect(checkServiceConformance(toyService())).toEqual([expect.stringMatching(/^does not compose: .*call TOY_ADD uses unknown conduit 'toy-trap'/s)]);
    expect(checkServiceConformance(toyService(), { conduits: toyBackend.conduits })).toEqual([]);
  });

  it('the core conduits and a machine passing them again are one; a different convention under a taken name is refused', () => {
    const hv = Hypervisor.compose([plainService()], { conduits: [Conduits.smccc, Conduits.xen] });
    expect(hv.conduits.names()).toEqual(['smccc', 'xen']);
    expect(() => Hypervisor.compose([plainService()], { conduits: [{ ...TOY, name: 'smccc' }] })).toThrow(/conduit 'smccc' is given twice as different calling conventions/);
    expect(() => Hypervisor.compose([toyService()], { conduits: [TOY, { ...TOY, functionIdWord: 0 }] })).toThrow(ComposeError);
  });
});
