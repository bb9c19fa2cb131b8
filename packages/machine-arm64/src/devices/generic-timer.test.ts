import { describe, expect, it } from 'vitest';
import { GenericTimer, TimerId, timerRegister } from './generic-timer.js';

// The EL1 timers as the Arm ARM defines them (D11.2): CTL ENABLE/IMASK/ISTATUS, CVAL, TVAL as a
// signed 32-bit view of CVAL - counter; the line is ENABLE && !IMASK && counter >= CVAL.
describe('generic timer', () => {
  const make = () => {
    const now = [1000n, 500n]; // [physical, virtual] counters
    return { now, t: new GenericTimer((id) => now[id]!) };
  };
  const V = (reg: 'ctl' | 'cval' | 'tval') => ({ timer: TimerId.Virtual, reg });

  it('decodes CNTP_* (CRm 2) and CNTV_* (CRm 3) and nothing else', () => {
    expect(timerRegister(3, 3, 14, 3, 1)).toEqual({ timer: TimerId.Virtual, reg: 'ctl' });
    expect(timerRegister(3, 3, 14, 2, 0)).toEqual({ timer: TimerId.Physical, reg: 'tval' });
    expect(timerRegister(3, 3, 14, 0, 2)).toBeUndefined(); // CNTVCT_EL0
    expect(timerRegister(3, 3, 14, 3, 3)).toBeUndefined();
    expect(timerRegister(3, 0, 14, 3, 1)).toBeUndefined();
  });

  it('fires when the counter reaches CVAL, only enabled and unmasked; ISTATUS ignores IMASK', () => {
    const { now, t } = make();
    t.write(V('cval'), 600n);
    expect(t.line(TimerId.Virtual)).toBe(false);
    expect(t.ticksToNext()).toBeUndefined(); // not enabled
    t.write(V('ctl'), 1n);
    expect(t.ticksToNext()).toBe(100n);
    expect(t.read(V('ctl'))).toBe(1n);
    now[1] = 600n;
    expect(t.line(TimerId.Virtual)).toBe(true);
    expect(t.read(V('ctl'))).toBe(5n); // ENABLE | ISTATUS
    expect(t.ticksToNext()).toBeUndefined(); // fired: nothing more will happen
    t.write(V('ctl'), 3n); // IMASK
    expect(t.line(TimerId.Virtual)).toBe(false);
    expect(t.read(V('ctl'))).toBe(7n);
    expect(t.armed()).toBe(false);
    expect(t.line(TimerId.Physical)).toBe(false);
  });

  it('TVAL is CVAL - counter as signed 32 bits, and a write sets CVAL from the counter', () => {
    const { now, t } = make();
    t.write(V('tval'), 0xffff_fff0n); // -16
    expect(t.read(V('cval'))).toBe(484n);
    expect(t.read(V('tval'))).toBe(0xffff_ffff_ffff_fff0n);
    now[1] = 1000n;
    t.write(V('tval'), 250n);
    expect(t.read(V('cval'))).toBe(1250n);
    expect(t.read(V('tval'))).toBe(250n);
  });

  it('keeps only ENABLE and IMASK of a CTL write, and round-trips its state', () => {
    const { t } = make();
    t.write(V('ctl'), 0xffn);
    t.write({ timer: TimerId.Physical, reg: 'cval' }, 1n << 63n);
    const s = t.save();
    expect(s).toEqual({ ctl: [0, 3], cval: [1n << 63n, 0n] });
    const u = make().t;
    u.restore(s);
    expect(u.save()).toEqual(s);
  });
});
