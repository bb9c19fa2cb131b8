import { describe, expect, it } from 'vitest';
import { continueCall, defineService, Hypervisor, planRestore, saveSnapshot } from '@plugvisor/core';
import { X86Machine } from './machine.js';
import { kvmUnavailable } from './host.js';
import { checkX86Snapshot, machineFromPlan } from './snapshot.js';
import { guestImage, PARAMS } from './testing/guests.js';
import { x86Backend } from './backend.js';
import { R } from './cpu/structs.js';

/**
 * A preempted hypercall on x86 (core continueCall): the `out dx, eax` of guests/src/outloop.S
 * (one iteration: rdi = 1, id 0x102) runs again after each leg with the rewritten rdi, until
 * the call finishes; the guest adds the final rax into rbx and powers off. Legs are counted in
 * rdi[63:32] (the declared continuation field).
 */
const noKvm = kvmUnavailable();
const d = noKvm ? describe.skip : describe;
if (noKvm) describe('x86 continuations', () => it.skip(`needs /dev/kvm: ${noKvm}`, () => {}));

const LEGS = 4;

function build(seen: bigint[]) {
  const svc = defineService({
    name: '@x/legs',
    version: '1.0.0',
    surface: {
      features: [{ name: 'legs', default: 'opt-in', description: '' }],
      calls: [{ name: 'LEGS', conduit: 'x86-port', id: 0x102, feature: 'legs', signature: { args: [{ name: 'i', reg: R.RDI, width: 'u64', kind: 'opaque' }], results: [{ reg: R.RAX }] } }],
      continuations: [{ call: 'LEGS', description: 'legs done', encoding: [{ name: 'legs done', reg: R.RDI, shift: 32, width: 32 }] }],
    },
    handlers: {
      LEGS(vcpu) {
        const rdi = vcpu.regs.get(R.RDI);
        if (vcpu.machine instanceof X86Machine) seen.push(rdi); // not the behaviour probes restore replays
        const done = rdi >> 32n;
        if (done < BigInt(LEGS - 1)) return continueCall(vcpu, { [`x${R.RDI}`]: ((done + 1n) << 32n) | (rdi & 0xffff_ffffn) });
        vcpu.regs.set(R.RAX, 0x1000n + (rdi & 0xffff_ffffn));
      },
    },
  });
  return Hypervisor.compose([svc], { name: 'legs', conduits: x86Backend.conduits });
}

function start(seen: bigint[]) {
  const hv = build(seen);
  const vm = hv.createVm({ features: { legs: true } });
  const m = new X86Machine({ memSize: 4 << 20 });
  m.boot(m.loadImage(guestImage('outloop')).entry);
  m.memory.writeU64(PARAMS, 1n);
  vm.attachMachine(m);
  m.attach(vm);
  return { hv, vm, m };
}

const rbxOf = (m: X86Machine) => BigInt((m.vcpuState(0) as unknown as { regs: { rbx: string } }).regs.rbx);

d('x86: a preempted hypercall re-executes the OUT', () => {
  it('runs in legs with rdi rewritten, and the guest sees one finished call', () => {
    const seen: bigint[] = [];
    const { m } = start(seen);
    expect(m.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(seen).toEqual([1n, (1n << 32n) | 1n, (2n << 32n) | 1n, (3n << 32n) | 1n]);
    expect(rbxOf(m)).toBe(0x1001n);
    m.dispose();
  });

  it('a snapshot between legs restores into a fresh machine and the call completes there', () => {
    const seen: bigint[] = [];
    const { m, vm } = start(seen);
    expect(m.run({ pauseAfterTraps: 2 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    const bytes = saveSnapshot(vm, m.image());
    m.dispose();
    const after: bigint[] = [];
    const b = machineFromPlan(planRestore(bytes, build(after), { arch: 'x86_64', checkMachine: checkX86Snapshot }));
    expect(b.run()).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect([...seen, ...after]).toEqual([1n, (1n << 32n) | 1n, (2n << 32n) | 1n, (3n << 32n) | 1n]);
    expect(rbxOf(b)).toBe(0x1001n);
    b.dispose();
  });
});
