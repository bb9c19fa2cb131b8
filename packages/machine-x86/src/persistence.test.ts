import { describe, expect, it } from 'vitest';
import { checkPersistence } from '@plugvisor/core/testing';
import { StateError } from '@plugvisor/core';
import { Serial } from './devices/serial.js';
import { validateX86Description } from './description.js';

describe('x86 machine components follow the persistence contract (no /dev/kvm needed)', () => {
  it('COM1 serial: saves plain registers, refuses corrupted fields by name', () => {
    const driven = new Serial(() => {});
    driven.write(3, 0x80); // DLAB
    driven.write(0, 0x01); // DLL
    driven.write(3, 0x03);
    driven.write(1, 0x05); // IER
    driven.write(7, 0xaa); // SCR
    const problems = checkPersistence({
      make: () => new Serial(() => {}),
      samples: [driven.save(), new Serial(() => {}).save()],
      corruptions: [
        { path: 'ier', value: 0x10 },
        { path: 'lcr', value: 256 },
        { path: 'mcr', value: null },
        { path: 'dll', value: '1' },
      ],
    });
    expect(problems).toEqual([]);
  });
});

describe('x86 machine description: one validating function for restore checks and fromImage', () => {
  const good = {
    board: 'plugvisor-pc',
    schema: 1,
    ramSize: 4 << 20,
    vcpus: 2,
    irqchip: true,
    serial: new Serial(() => {}).save(),
    nextVcpu: 1,
    xsave: { xcr0: '0x3', xss: '0x0', features: [] },
    cpuid: [],
    vm: { clock: 5n, irqchip: null },
  };
  it('accepts a good description', () => {
    expect(validateX86Description(good, 2).nextVcpu).toBe(1);
  });
  it.each([
    ['vcpus', { vcpus: 3 }],
    ['ramSize', { ramSize: 4097 }],
    ['nextVcpu', { nextVcpu: 2 }],
    ['ier', { serial: { ...good.serial, ier: 0x40 } }],
    ['clock', { vm: { clock: -1n, irqchip: null } }],
    ['board', { board: 'plugvisor-virt' }],
  ])('refuses a bad %s by name', (field, patch) => {
    let err: unknown;
    try {
      validateX86Description({ ...good, ...patch }, 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).field).toBe(field);
  });
});
