import { describe, expect, it } from 'vitest';
import { checkPersistence } from '@plugvisor/core/testing';
import { readFileSync } from 'node:fs';
import { MachineRuntime, StateError, YIELD } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';
import { arm64VcpuCodec, parseVcpuBlob, type Arm64VcpuStateValue } from './cpu/state.js';
import { Pl011 } from './devices/pl011.js';
import { validateArm64Description } from './description.js';
import { GicCpuInterface } from './devices/gicc.js';

describe('arm64 machine components follow the persistence contract', () => {
  it('PL011 UART: saves plain registers, refuses corrupted fields by name', () => {
    const driven = new Pl011(() => {});
    driven.write(0x24, 26); // IBRD
    driven.write(0x28, 3); // FBRD
    driven.write(0x2c, 0x70); // LCR_H
    driven.write(0x38, 0x50); // IMSC
    const problems = checkPersistence({
      make: () => new Pl011(() => {}),
      samples: [driven.save(), new Pl011(() => {}).save()],
      corruptions: [
        { path: 'ibrd', value: 0x10000 },
        { path: 'fbrd', value: -1 },
        { path: 'cr', value: '0x300' },
        { path: 'dmacr', value: 8 },
        { path: 'imsc', value: 1.5 },
      ],
    });
    expect(problems).toEqual([]);
  });

  it('GIC CPU interface: saves plain state, refuses corrupted fields by name', () => {
    const driven = new GicCpuInterface();
    driven.write(0x0, 1); // GICC_CTLR
    driven.write(0x4, 0xf0); // GICC_PMR
    driven.setLine(27, true);
    driven.setLine(31, true);
    driven.configure(40, 'edge');
    const problems = checkPersistence({
      make: () => new GicCpuInterface(),
      samples: [driven.save(), new GicCpuInterface().save()],
      corruptions: [
        { path: 'ctlr', value: 2 },
        { path: 'pmr', value: 256 },
        { path: 'lines', value: [[2000, 1]] },
        { path: 'edge', value: ['31'] },
      ],
    });
    expect(problems).toEqual([]);
  });
});

describe('arm64 machine description: one validating function for restore checks and fromImage', () => {
  const good = { board: 'plugvisor-virt', schema: 1, ramBase: '0x40000000', ramSize: 16 << 20, vcpus: 2, uart: new Pl011(() => {}).save(), nextVcpu: 0 };
  it('accepts a good description', () => {
    expect(validateArm64Description(good, 2).ramSize).toBe(16 << 20);
  });
  it.each([
    ['vcpus', { vcpus: 1 }],
    ['ramSize', { ramSize: 0x10001 }],
    ['ramBase', { ramBase: '0x0' }],
    ['nextVcpu', { nextVcpu: -1 }],
    ['ibrd', { uart: { ...good.uart, ibrd: 0x10000 } }],
    ['board', { schema: 2 }],
  ])('refuses a bad %s by name', (field, patch) => {
    let err: unknown;
    try {
      validateArm64Description({ ...good, ...patch }, 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).field).toBe(field);
  });
});

describe('arm64 vCPU state and run state follow the persistence contract', () => {
  // A 2-vCPU machine paused after the smp guest's first trap: vCPU 0 on, vCPU 1 on-pending (CPU_ON).
  const driven = () => {
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: () => {} });
    m.attach(new TestRouter(m));
    m.boot(m.loadImage(guestImage('smp')).entry);
    expect(m.run({ pauseAfterTraps: 1 }).kind).toBe('paused');
    return m;
  };

  it('vCPU state: a plain value; restore(save()) into a fresh machine saves it again; the blob codec round-trips it; corruptions refused by name', () => {
    const src = driven();
    const samples = [src.vcpuState(0), src.vcpuState(1)];
    src.dispose();
    expect(samples[1]!.run.power).toBe('on-pending');
    for (const codec of [undefined, { encode: (v: unknown) => arm64VcpuCodec.encode(v as Arm64VcpuStateValue), decode: arm64VcpuCodec.decode }]) {
      const problems = checkPersistence({
        make: () => {
          const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: () => {} });
          return { m, save: () => m.vcpuState(1), restore: (s: unknown) => m.restoreVcpuState(1, s) };
        },
        dispose: (made) => made.forEach((c) => (c as unknown as { m: Arm64Machine }).m.dispose()),
        samples,
        ...(codec ? { codec } : {}),
        corruptions: [
          { path: 'run.power', value: 'sideways' },
          { path: 'run.parked', value: 'yes' },
          { path: 'core', value: ['0x1'] },
          { path: 'vregs', value: Array(32).fill('zz') },
          { path: 'sysregs', value: Array(500).fill('0x0') },
          { path: 'gicc.pmr', value: 256 },
        ],
      });
      expect(problems).toEqual([]);
    }
  });

  it('refuses a corrupted vCPU state naming the vCPU, the component and the field', () => {
    const m = driven();
    try {
      const good = m.vcpuState(1);
      let err: unknown;
      try {
        m.restoreVcpuState(0, { ...good, run: { ...good.run, pendingOn: null } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).component).toBe('vCPU 0 state run');
      expect((err as StateError).field).toBe('pendingOn');
      expect(m.vcpuState(0).run.power).toBe('on'); // nothing applied
    } finally {
      m.dispose();
    }
  });

  it('PSTATE: only the AArch64 EL0t/EL1t/EL1h modes a guest runs in, no RES0 bits — refused by name as plain value and as blob', () => {
    const m = driven();
    try {
      const good = m.vcpuState(0);
      const withPstate = (p: bigint) => ({ ...good, core: good.core.map((v, i) => (i === 32 ? `0x${p.toString(16)}` : v)) });
      const refused: Record<string, RegExp> = {
        '0x10': /pstate\) 0x10 is an AArch32 mode/, // AArch32 User
        '0xffffffff': /pstate\) 0xffffffff is an AArch32 mode/,
        '0x3c9': /pstate\) 0x3c9 has mode M\[3:0\] = 0b1001/, // EL2h: the hypervisor's
        '0x3cd': /pstate\) 0x3cd has mode M\[3:0\] = 0b1101/, // EL3h: the trampoline's
        '0x3c1': /pstate\) 0x3c1 has mode M\[3:0\] = 0b0001/, // EL0 with SP_ELx: illegal
        '0x20003c5': /pstate\) 0x20003c5 sets reserved \(RES0\) bits 0x2000000/, // TCO: no MTE on this CPU
        '0x3e5': /pstate\) 0x3e5 sets reserved \(RES0\) bits 0x20/,
        '0x1003c5': /pstate\) 0x100000003c5 is wider than 32 bits/,
      };
      for (const [hex, why] of Object.entries(refused)) {
        const p = hex === '0x1003c5' ? 0x1_0000_0003c5n : BigInt(hex);
        expect(() => m.restoreVcpuState(0, withPstate(p)), hex).toThrow(why);
        expect(() => m.restoreVcpuState(0, withPstate(p)), hex).toThrow(StateError);
        // the blob path (a snapshot's VCPU record) refuses the same value, as VcpuStateError
        const blob = Buffer.from(arm64VcpuCodec.encode(good));
        blob.writeBigUInt64LE(p, 16 + 32 * 8);
        expect(() => parseVcpuBlob(blob), hex).toThrow(why);
      }
      expect(m.vcpuState(0)).toEqual(good); // nothing applied
      for (const p of [0x0n, 0x3c4n, 0x3c5n, 0xf04003c5n, 0x3c0n]) {
        m.restoreVcpuState(0, withPstate(p)); // EL0t, EL1t, EL1h with NZCV, PAN, DAIF
        expect(BigInt(m.vcpuState(0).core[32]!) & 0xfn).toBe(p & 0xfn);
      }
    } finally {
      m.dispose();
    }
  });

  it('run state (the runtime part of every vCPU): saves plain values, refuses corruptions by name', () => {
    const make = () => {
      const rt = new MachineRuntime({ reset: () => {}, interruptPending: () => false, runSlice: () => YIELD, stop: () => {} }, 2);
      return { save: () => rt.saveVcpu(1), restore: (s: unknown) => rt.restoreVcpu(1, s) };
    };
    const samples = [
      { power: 'on-pending', parked: false, pendingOn: { entry: '0x40080000', context: '0x1234' } },
      { power: 'on', parked: true, pendingOn: null },
      { power: 'off', parked: false, pendingOn: null },
    ] as const;
    const problems = checkPersistence({ make, samples, corruptions: [{ path: 'pendingOn.entry', value: '40080000' }, { path: 'power', value: 'standby' }, { path: 'parked', value: 1 }] });
    expect(problems).toEqual([]);
  });

  it('machine description: validated on restore, refused by name', () => {
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: () => {} });
    const sample = m.describe();
    m.dispose();
    const make = () => {
      let d: unknown;
      return { save: () => d, restore: (s: unknown) => void (d = validateArm64Description(s, 2)) };
    };
    const problems = checkPersistence({ make, samples: [sample], corruptions: [{ path: 'ramSize', value: 12345 }, { path: 'uart.cr', value: -1 }, { path: 'nextVcpu', value: 2 }] });
    expect(problems).toEqual([]);
  });
});

describe('arm64 vCPU records written before the plain-value state still restore', () => {
  // testing/vcpu-blobs-v1.json: blobs written by the machine before this change (the smp guest
  // paused after trap 1: vCPU 0 on, vCPU 1 on-pending), format 1 of cpu/state.ts.
  const fixture = JSON.parse(readFileSync(new URL('./testing/vcpu-blobs-v1.json', import.meta.url), 'utf8')) as { vcpus: string[] };
  it('restores each blob, keeps the pending CPU_ON, and writes the same bytes back', () => {
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: () => {} });
    try {
      fixture.vcpus.forEach((hex, i) => m.restoreVcpu(i, Buffer.from(hex, 'hex')));
      expect(m.powerState(0)).toBe('on');
      expect(m.powerState(1)).toBe('on-pending');
      expect(m.vcpuState(1).run.pendingOn).not.toBeNull();
      fixture.vcpus.forEach((hex, i) => expect(Buffer.from(m.saveVcpu(i)).toString('hex')).toBe(hex));
    } finally {
      m.dispose();
    }
  });
});
