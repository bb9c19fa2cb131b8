import { describe, expect, it } from 'vitest';
import { bootTestGuest } from './testing/guests.js';

describe('arm64 machine: self-hosted debug (guests/src/debug.c)', () => {
  // Arming a hardware breakpoint from guest code crashed the whole process inside Unicorn 2.0.1
  // (SIGSEGV); the machine leaves hardware breakpoints, watchpoints and software step unarmed.
  it('survives a guest arming breakpoints, watchpoints and software step, and delivers BRK with its syndrome', () => {
    const { m, console } = bootTestGuest('debug');
    try {
      expect(m.run()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expect(console()).toBe(
        'breakpoint and watchpoint: 0 debug exceptions\n' +
          'software step: 0 debug exceptions\n' +
          // ESR_EL1: EC 0x3c (BRK64), IL, ISS = #0x42; ELR at the BRK itself
          'brk: esr=f2000042 at site=1\n',
      );
    } finally {
      m.dispose();
    }
  });
});
