/**
 * PSCI CPU_ON carries the caller's data endianness to the target, as KVM does: kvm_psci_vcpu_on
 * records `reset_state.be = kvm_vcpu_is_be(source_vcpu)` (Linux arch/arm64/kvm/psci.c) and
 * kvm_reset_vcpu sets SCTLR_EL1.EE on the target when it is set (kvm_vcpu_set_be,
 * arch/arm64/kvm/reset.c). The real guest guests/src/cpu-on-endian.c first proves the engine
 * honours SCTLR_EL1.EE for data at EL1 (a store made with EE = 1 is big-endian in RAM), then
 * starts vCPU 1 from a big-endian caller and vCPU 2 from a little-endian one; each target
 * reports SCTLR_EL1 at its first instruction and a store it made with it.
 */
import { describe, expect, it } from 'vitest';
import type { MachineImage } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { checkArm64Snapshot } from './snapshot.js';
import { TestRouter } from './testing/test-router.js';
import { bootTestGuest } from './testing/guests.js';
import { unicornAvailable } from './ffi/unicorn.js';

const obs = (report: string) => Object.fromEntries([...report.matchAll(/^obs ([^=]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));

/** What the guest reports when each target gets `ee1`/`ee2` (the same reset value otherwise). */
function expectTargets(o: Record<string, string>, ee1: 0 | 1, ee2: 0 | 1): void {
  expect(o['engine-be-byte0'], 'the engine stores big-endian with SCTLR_EL1.EE = 1').toBe('0x11');
  expect([o['be-caller-rc'], o['le-caller-rc']]).toEqual(['0', '0']);
  expect([o['cpu1-sctlr-ee'], o['cpu1-byte0']]).toEqual([String(ee1), ee1 ? '0x11' : '0x44']);
  expect([o['cpu2-sctlr-ee'], o['cpu2-byte0']]).toEqual([String(ee2), ee2 ? '0x11' : '0x44']);
  expect(o['cpu1-sctlr-rest']).toBe(o['cpu2-sctlr-rest']);
  expect(o.done).toBe('1');
}

describe.skipIf(!unicornAvailable())('CPU_ON and the caller\'s endianness (guests/src/cpu-on-endian.c)', () => {
  it("a big-endian caller's target starts with SCTLR_EL1.EE set, a little-endian caller's without", () => {
    const { m, console } = bootTestGuest('cpu-on-endian', { vcpus: 3 });
    try {
      expect(m.run(), console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expectTargets(obs(console()), 1, 0);
    } finally {
      m.dispose();
    }
  });

  it("the 'little' rule (snapshots from before it) starts every target little-endian", () => {
    const { m, console } = bootTestGuest('cpu-on-endian', { vcpus: 3, cpuOnEndianness: 'little' });
    try {
      expect(m.run(), console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expectTargets(obs(console()), 0, 0);
    } finally {
      m.dispose();
    }
  });

  /** Runs to the first trap (the big-endian CPU_ON: vCPU 1 pending), images, edits, restores, runs to the end. */
  function snapshotAtPendingCpuOn(edit: (d: Record<string, unknown>) => void): { report: string; description: Record<string, unknown> } {
    const { m, console } = bootTestGuest('cpu-on-endian', { vcpus: 3 });
    expect(m.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    expect(m.powerState(1)).toBe('on-pending');
    const image = m.image();
    const description = { ...(image.description as Record<string, unknown>) };
    edit(description);
    const copy: MachineImage = { ...image, description: description as MachineImage['description'], memory: image.memory.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) };
    let report = console();
    m.dispose();
    const b = Arm64Machine.fromImage(copy, { console: (bytes) => (report += Buffer.from(bytes).toString('latin1')) });
    try {
      b.attach(new TestRouter(b));
      expect(b.run(), report).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    } finally {
      b.dispose();
    }
    return { report, description };
  }

  it('a CPU_ON pending in a snapshot keeps its big-endian target across the restore', () => {
    const { report, description } = snapshotAtPendingCpuOn(() => {});
    expect(description).toMatchObject({ cpuOnEndianness: 'caller', bigEndianCpuOn: [1] });
    expectTargets(obs(report), 1, 0);
  });

  it('a snapshot from before the rule (no cpuOnEndianness) restores with targets started little-endian', () => {
    const { report } = snapshotAtPendingCpuOn((d) => {
      delete d.cpuOnEndianness;
      delete d.bigEndianCpuOn;
    });
    expectTargets(obs(report), 0, 0);
  });

  it('a damaged description is refused naming the field', () => {
    const { m } = bootTestGuest('hello');
    try {
      const image = m.image();
      const d = image.description as Record<string, unknown>;
      const problems = (edit: Record<string, unknown>) => checkArm64Snapshot({ ...d, ...edit } as never, image.vcpus, []).join('\n');
      expect(problems({ cpuOnEndianness: 'big' })).toMatch(/cpuOnEndianness.*is not one of caller, little/);
      expect(problems({ bigEndianCpuOn: [1] })).toMatch(/bigEndianCpuOn.*vCPU indexes below 1/);
      expect(problems({ bigEndianCpuOn: [0], cpuOnEndianness: 'little' })).toMatch(/bigEndianCpuOn.*cpuOnEndianness is not 'caller'/);
      expect(problems({})).not.toMatch(/cpuOnEndianness|bigEndianCpuOn/); // (no memory records here)
    } finally {
      m.dispose();
    }
  });
});
