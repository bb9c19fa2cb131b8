import { describe, expect, it } from 'vitest';
import { checkPersistence } from '@plugvisor/core/testing';
import { MachineRuntime, StateError, YIELD, decodeJson, encodeJson } from '@plugvisor/core';
import { X86Machine } from './machine.js';
import { kvmUnavailable } from './host.js';
import { guestImage } from './testing/guests.js';
import { validateX86VcpuState, x86VcpuCodec, x86VcpuStateValue, type X86VcpuStateValue } from './cpu/state.js';
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
    ['cpuid', { cpuid: {} }],
    ['cpuid', { cpuid: Array(257).fill({ function: 0, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 }) }],
    ['cpuid[0].eax', { cpuid: [{ function: 0, index: 0, flags: 0, eax: -1, ebx: 0, ecx: 0, edx: 0 }] }],
    ['cpuid[0].function', { cpuid: [{ function: 2 ** 32, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 }] }],
    ['cpuid[1]', { cpuid: [{ function: 0, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 }, null] }],
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

const noKvm = kvmUnavailable();
const withKvm = noKvm ? describe.skip : describe;

withKvm('x86 vCPU state and run state follow the persistence contract (/dev/kvm)', () => {
  // vCPU 0 booted at the hello guest's entry; vCPU 1 off; vCPU 1 of a second machine CPU_ON-pending.
  const sampled = () => {
    const m = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: () => {} });
    try {
      m.boot(m.loadImage(guestImage('hello')).entry);
      const off = m.vcpuState(1);
      m.powerOn(1, 0x100000n, 0x1234n);
      return [m.vcpuState(0), off, m.vcpuState(1)];
    } finally {
      m.dispose();
    }
  };
  const bigintJson = { encode: (v: unknown) => encodeJson(v), decode: (b: Uint8Array) => decodeJson(b, 'state') };
  const blob = { encode: (v: unknown) => x86VcpuCodec.encode(v as X86VcpuStateValue), decode: x86VcpuCodec.decode };
  // The vCPU's from_state (validateX86VcpuState) is checked without KVM_SET_*: KVM moves IA32_TSC
  // and kvmclock between a restore and the next save, so a KVM round trip is not an identity.
  const make = () => {
    let s: unknown;
    return { save: () => s, restore: (v: unknown) => void (s = { ...x86VcpuStateValue(validateX86VcpuState(v)), run: (v as X86VcpuStateValue).run }) };
  };

  it('vCPU state: a plain value through the core codec and through the blob; corruptions refused by name', () => {
    const samples = sampled();
    expect(samples[2]!.run).toEqual({ power: 'on-pending', parked: false, pendingOn: { entry: '0x100000', context: '0x1234' } });
    for (const codec of [bigintJson, blob]) {
      const problems = checkPersistence({
        make,
        samples,
        codec,
        corruptions: [
          { path: 'run.power', value: 'sideways' },
          { path: 'regs.rip', value: -1n },
          { path: 'sregs.cs.selector', value: 0x10000 },
          { path: 'sregs.cr3', value: '0x1000' },
          { path: 'msrs', value: [[0x10, 'x']] },
          { path: 'events', value: 'abc' },
          { path: 'xsave', value: { format: 9 } },
          { path: 'mpState', value: 99 },
          // combinations KVM_SET_SREGS / KVM_SET_XCRS refuse (EINVAL), refused by name before the ioctl
          { path: 'sregs.cr0', value: 0x8000_0000n }, // PG without PE
          { path: 'sregs.cr0', value: 0x1_0000_0011n }, // bits 63:32
          { path: 'sregs.cr4', value: 0n }, // long mode without PAE
          { path: 'sregs.efer', value: 0x400n }, // LMA without LME
          { path: 'sregs.cr3', value: 1n << 60n },
          { path: 'sregs.apicBase', value: 0xfee0_0001n },
          { path: 'xcrs.xcrs', value: [] }, // nrXcrs says 1
          { path: 'xcrs.xcrs', value: [{ xcr: 0, value: 0x6n }] }, // XCR0 without x87
        ],
      });
      expect(problems).toEqual([]);
    }
  });

  it('refuses a corrupted vCPU state naming the vCPU, the component and the field; the machine restores a good one', () => {
    const m = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: () => {} });
    try {
      m.boot(m.loadImage(guestImage('hello')).entry);
      const good = m.vcpuState(0);
      let err: unknown;
      try {
        m.restoreVcpuState(0, { ...good, sregs: { ...good.sregs, efer: 'long mode' } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).component).toBe('vCPU 0 state sregs');
      expect((err as StateError).field).toBe('efer');
      m.restoreVcpuState(0, good);
      expect(m.vcpuState(0).regs).toEqual(good.regs);
    } finally {
      m.dispose();
    }
  });

  it('restores vCPU records in the formats written before: format 2 (run state inside) and format 1 (power only)', () => {
    const m = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: () => {} });
    try {
      m.boot(m.loadImage(guestImage('hello')).entry);
      m.powerOn(1, 0x100000n, 0x1234n);
      // The format-2 blob as the machine wrote it before this change: "PVX86VCP", u32 2, encodeJson of
      // { run, regs, sregs, xsave, xcrs, msrs, lapic, events, debugregs, mpState }.
      const old = (format: number, body: object) => {
        const head = Buffer.alloc(12);
        head.write('PVX86VCP', 0, 'latin1');
        head.writeUInt32LE(format, 8);
        return Buffer.concat([head, encodeJson(body)]);
      };
      const { run, regs, sregs, xsave, xcrs, msrs, lapic, events, debugregs, mpState } = m.vcpuState(1);
      const rest = { regs, sregs, xsave, xcrs, msrs, lapic, events, debugregs, mpState };
      const b = new X86Machine({ vcpus: 2, memSize: 4 << 20, console: () => {} });
      try {
        b.restoreVcpu(1, old(2, { run, ...rest }));
        expect(b.powerState(1)).toBe('on-pending');
        expect(b.vcpuState(1).run).toEqual(run);
        b.restoreVcpu(0, old(1, { power: 'on', ...rest }));
        expect(b.vcpuState(0).run).toEqual({ power: 'on', parked: false, pendingOn: null });
        expect(() => b.restoreVcpu(0, old(1, { power: 'on-pending', ...rest }))).toThrow(/power must be on or off/);
      } finally {
        b.dispose();
      }
    } finally {
      m.dispose();
    }
  });
});

describe('x86 run state and description follow the persistence contract', () => {
  it('run state (the runtime part of every vCPU): saves plain values, refuses corruptions by name', () => {
    const make = () => {
      const rt = new MachineRuntime({ reset: () => {}, interruptPending: () => false, runSlice: () => YIELD, stop: () => {} }, 2);
      return { save: () => rt.saveVcpu(1), restore: (s: unknown) => rt.restoreVcpu(1, s) };
    };
    const samples = [
      { power: 'on-pending', parked: false, pendingOn: { entry: '0x100000', context: '0x0' } },
      { power: 'on', parked: true, pendingOn: null },
    ] as const;
    expect(checkPersistence({ make, samples, corruptions: [{ path: 'pendingOn.context', value: 5 }, { path: 'power', value: 'halted' }] })).toEqual([]);
  });

  it('machine description: validated on restore (bigint clock through the core codec), refused by name', () => {
    const sample = { board: 'plugvisor-pc', schema: 1, ramSize: 4 << 20, vcpus: 2, irqchip: true, serial: new Serial(() => {}).save(), nextVcpu: 1, xsave: { xcr0: '0x3', xss: '0x0', features: [] }, cpuid: [], vm: { clock: 5n, irqchip: null } };
    const make = () => {
      let d: unknown;
      return { save: () => d, restore: (s: unknown) => void (d = validateX86Description(s, 2)) };
    };
    const codec = { encode: (v: unknown) => encodeJson(v), decode: (b: Uint8Array) => decodeJson(b, 'description') };
    expect(checkPersistence({ make, samples: [sample], codec, corruptions: [{ path: 'vm.clock', value: -1n }, { path: 'serial.lcr', value: 256 }, { path: 'irqchip', value: 'yes' }] })).toEqual([]);
  });
});
