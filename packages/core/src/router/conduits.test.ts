import { describe, expect, it } from 'vitest';
import { Hypervisor } from '../hypervisor.js';
import { defineService } from '../plugin/service.js';
import { Conduits, type ConduitDefinition } from './conduits.js';
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
      calls: [{ name: 'TOY_ADD', conduit: 'toy-trap', id: 7, feature: 'toy' }],
    },
    handlers: {
      TOY_ADD(v) {
        v.regs.u64[0] = v.regs.u64[1]! + 1n;
      },
    },
  });

describe('conduits come from the machine, at composition', () => {
  it('a build using a conduit unknown to core does not compose without the machine that declares it', () => {
    expect(Conduits.get('toy-trap')).toBeUndefined();
    expect(() => Hypervisor.compose([toyService()])).toThrow(/unknown conduit 'toy-trap'/);
  });

  it('composes and routes when the machine passes its conduits, with no machine package imported', () => {
    const hv = Hypervisor.compose([toyService()], { conduits: toyBackend.conduits });
    const conduit = Conduits.get('toy-trap')!;
    expect(conduit.functionIdWord).toBe(16);
    const m = new MemoryMachine();
    const vm = hv.createVm();
    vm.attachMachine(m);
    vm.start();
    const v = m.vcpus[0]!;
    v.regs.u64[8] = 7n;
    v.regs.u64[1] = 41n;
    vm.dispatch(conduit, v);
    expect(v.regs.u64[0]).toBe(42n);
  });

  it('a second definition of a name must be the same calling convention', () => {
    expect(Conduits.define(TOY)).toBe(Conduits.get('toy-trap'));
    expect(() => Conduits.define({ ...TOY, functionIdWord: 0 })).toThrow(/already defined as a different calling convention/);
  });
});
