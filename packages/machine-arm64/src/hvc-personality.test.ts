/**
 * The HVC personality (traps.ts HvcImmediates): what an HVC with a non-zero immediate does. KVM
 * ignores the immediate and answers SMCCC (Linux arch/arm64/kvm/handle_exit.c,
 * handle_hvc); Xen injects UNDEFINED with ELR_EL1 past the HVC (xen/arch/arm/traps.c,
 * do_trap_hypercall → inject_undef64_exception, ELR_EL1 = regs->pc, the preferred return
 * address of the trapped HVC); 'legacy' is what this machine did before (UNDEFINED, ELR_EL1 at
 * the HVC), kept for VMs restored from snapshots that predate personalities. The guest-visible
 * side of each is pinned with the real guest abi-facts in abi-guest.test.ts; here: which VM gets
 * which, and that a snapshot keeps it.
 */
import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, MachineError, defineService, type MachineImage, type ServicePlugin } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { arm64Backend } from './backend.js';
import { checkArm64Snapshot } from './snapshot.js';
import { personalityOf } from './traps.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';
import { unicornAvailable } from './ffi/unicorn.js';

const service = (name: string, conduits: string[]): ServicePlugin =>
  defineService({
    name,
    version: '1.0.0',
    surface: {
      features: [{ name: `${name}-f`, default: 'legacy-opt-out', description: '' }],
      calls: conduits.map((conduit, i) => ({ name: `${name.toUpperCase()}_${i}`, conduit, id: conduit === 'xen' ? 30 + i : 0xc600_0010 + i, feature: `${name}-f` })),
    },
    handlers: Object.fromEntries(conduits.map((_c, i) => [`${name.toUpperCase()}_${i}`, () => {}])),
  });

const vmOf = (...services: ServicePlugin[]) => Hypervisor.compose(services, { name: 't', conduits: arm64Backend.conduits }).createVm();

describe('the HVC personality of a build', () => {
  it("is 'xen' for Xen calls only, 'kvm' for SMCCC calls only (or none), 'kvm-xen' for both", () => {
    expect(personalityOf(vmOf(service('xenonly', ['xen'])))).toBe('xen');
    expect(personalityOf(vmOf(service('kvmonly', ['smccc'])))).toBe('kvm');
    expect(personalityOf(vmOf(service('xenside', ['xen']), service('kvmside', ['smccc'])))).toBe('kvm-xen');
    expect(personalityOf(vmOf(service('both', ['xen', 'smccc'])))).toBe('kvm-xen');
    expect(personalityOf(vmOf())).toBe('kvm');
    expect(personalityOf(new TestRouter(new Arm64Machine({ memSize: 1 << 20, console: () => {} })))).toBe('kvm-xen'); // names no build
    expect(Conduits.xen.name).toBe('xen'); // the names the rule compares
  });
});

describe.skipIf(!unicornAvailable())('the machine takes it from the VM it is attached to, and snapshots keep it', () => {
  const make = (options: ConstructorParameters<typeof Arm64Machine>[0] = {}) => new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: () => {}, ...options });

  it('a Xen-only build makes a xen machine, a KVM one a kvm machine; an operator choice wins', () => {
    const a = make();
    a.attach(vmOf(service('xenonly', ['xen'])));
    expect(a.hvcImmediates).toBe('xen');
    const b = make();
    b.attach(vmOf(service('kvmonly', ['smccc'])));
    expect(b.hvcImmediates).toBe('kvm');
    const d = make();
    d.attach(vmOf(service('xenside', ['xen']), service('kvmside', ['smccc'])));
    expect(d.hvcImmediates).toBe('kvm-xen');
    d.dispose();
    const c = make({ hvcImmediates: 'xen' });
    c.attach(vmOf(service('kvmonly', ['smccc'])));
    expect(c.hvcImmediates).toBe('xen');
    for (const m of [a, b, c]) m.dispose();
    expect(() => make({ hvcImmediates: 'qemu' as never })).toThrow(MachineError);
    expect(() => make({ hvcImmediates: 'qemu' as never })).toThrow(/hvcImmediates must be one of kvm, kvm-xen, xen, legacy, got qemu/);
  });

  /** Boots abi-facts, images it before it runs, restores the image (description edited by `edit`) and runs it there. */
  function restoredRun(edit: (d: Record<string, unknown>) => void, before: ConstructorParameters<typeof Arm64Machine>[0] = {}): { rule: string; report: string } {
    const a = make(before);
    a.attach(new TestRouter(a));
    a.boot(a.loadImage(guestImage('abi-facts')).entry);
    const image = a.image();
    const description = { ...(image.description as Record<string, unknown>) };
    edit(description);
    const copy: MachineImage = { ...image, description: description as MachineImage['description'], memory: image.memory.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) };
    a.dispose();
    let report = '';
    const b = Arm64Machine.fromImage(copy, { console: (bytes) => (report += Buffer.from(bytes).toString('latin1')) });
    b.attach(new TestRouter(b)); // a router naming no build would make 'kvm-xen': the snapshot's rule wins
    const r = b.run();
    expect(r, report).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    const rule = b.hvcImmediates;
    b.dispose();
    return { rule, report };
  }
  const seen = (report: string) => ['hvc-other-traps', 'hvc-other-x0', 'hvc-other-elr-minus-hvc'].map((k) => new RegExp(`^obs ${k}=(.*)$`, 'm').exec(report)?.[1]);

  it('a snapshot records the rule and a restore keeps it, whatever build it is restored into', () => {
    const mixed = restoredRun(() => {});
    expect(mixed.rule).toBe('kvm-xen');
    expect(seen(mixed.report)).toEqual(['0', '0x10001', '0x0']);
    const kvm = restoredRun(() => {}, { hvcImmediates: 'kvm' });
    expect(kvm.rule).toBe('kvm');
    expect(/^obs hvc-0xea1-x0=(.*)$/m.exec(kvm.report)?.[1]).toBe('0xffffffffffffffff'); // #0xEA1 is SMCCC too: id 1, not answered
    const xen = restoredRun(() => {}, { hvcImmediates: 'xen' });
    expect(xen.rule).toBe('xen');
    expect(seen(xen.report)).toEqual(['1', '0x80000000', '0x4']);
  });

  it('a snapshot taken before personalities (no hvcImmediates) restores with the legacy rule its guest saw', () => {
    const old = restoredRun((d) => delete d.hvcImmediates);
    expect(old.rule).toBe('legacy');
    expect(seen(old.report)).toEqual(['1', '0x80000000', '0x0']);
  });

  it('a description naming another rule is refused by the restore dry run, naming the field', () => {
    const a = make();
    a.attach(new TestRouter(a));
    a.boot(a.loadImage(guestImage('hello')).entry);
    const image = a.image();
    expect(image.description).toMatchObject({ hvcImmediates: 'kvm-xen' });
    const bad = { ...(image.description as Record<string, unknown>), hvcImmediates: 'qemu' };
    const problems = checkArm64Snapshot(bad as never, image.vcpus, []);
    expect(problems.join('\n')).toMatch(/hvcImmediates.*is not one of kvm, kvm-xen, xen, legacy/);
    a.dispose();
  });
});
