import { describe, expect, it } from 'vitest';
import { checkPersistence } from '@plugvisor/core/testing';
import { StateError } from '@plugvisor/core';
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
