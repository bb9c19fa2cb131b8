/** PV stolen time (arch/arm64/kvm/pvtime.c) and its ARCH_FEATURES answer (svc-pvtime's hook into svc-smccc-arch). */
import { afterEach, describe, expect, it } from 'vitest';
import { AbiError } from '@plugvisor/core';
import { setStolenTimeBase } from '@plugvisor/svc-pvtime';
import { Fid, JUNK, Reg } from './abi.js';
import { expectCall } from './expect.js';
import { GuestSession, MEM_SIZE, NOT_SUPPORTED, RAM_BASE, SCRATCH_GPA, Script, type BootOptions } from './harness.js';

let session: GuestSession | undefined;
afterEach(() => {
  session?.dispose();
  session = undefined;
});

const ones = 0xffff_ffff_ffff_ffffn;

function script(): Script {
  const s = new Script();
  for (let off = 0n; off < 64n; off += 8n) s.store(SCRATCH_GPA + off, ones);
  s.store(SCRATCH_GPA + 64n, 0x1234n); // just past the 64-byte structure: left alone
  s.call('ARCH_FEATURES(PV_TIME_FEATURES)', Fid.SMCCC_ARCH_FEATURES, Fid.PV_TIME_FEATURES, ...JUNK.slice(1));
  s.call('ARCH_FEATURES(PV_TIME_ST)', Fid.SMCCC_ARCH_FEATURES, Fid.PV_TIME_ST);
  s.call('FEATURES(FEATURES)', Fid.PV_TIME_FEATURES, Fid.PV_TIME_FEATURES, ...JUNK.slice(1));
  s.call('FEATURES(ST)', Fid.PV_TIME_FEATURES, Fid.PV_TIME_ST, ...JUNK.slice(1));
  s.call('FEATURES(1<<32 | ST)', Fid.PV_TIME_FEATURES, (1n << 32n) | BigInt(Fid.PV_TIME_ST));
  s.call('FEATURES(0xC5000022)', Fid.PV_TIME_FEATURES, 0xc500_0022);
  s.call('FEATURES(SMCCC_VERSION)', Fid.PV_TIME_FEATURES, Fid.SMCCC_VERSION);
  s.call('ST', Fid.PV_TIME_ST, ...JUNK);
  for (let off = 0n; off < 64n; off += 8n) s.load(`mem+${off}`, SCRATCH_GPA + off);
  s.load('mem+64', SCRATCH_GPA + 64n);
  s.via('smc', 'smc ST', Fid.PV_TIME_ST);
  return s;
}

function run(setup?: BootOptions['setup'], overrides?: BootOptions['overrides']) {
  session = GuestSession.boot({ script: script(), ...(setup ? { setup } : {}), ...(overrides ? { overrides } : {}) });
  session.runToEnd();
  return session.results();
}

describe('PV stolen time', () => {
  it('with a base: FEATURES 0 for FEATURES/ST (arg u32), ST zeroes the 64-byte structure and returns its IPA', () => {
    const r = run((vm) => setStolenTimeBase(vm, 0, SCRATCH_GPA));
    expectCall(r, 'ARCH_FEATURES(PV_TIME_FEATURES)', [0n, 0n, 0n, 0n]);
    expectCall(r, 'ARCH_FEATURES(PV_TIME_ST)', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectCall(r, 'FEATURES(FEATURES)', [0n, 0n, 0n, 0n]);
    expectCall(r, 'FEATURES(ST)', [0n, 0n, 0n, 0n]);
    expectCall(r, 'FEATURES(1<<32 | ST)', [0n, 0n, 0n, 0n]);
    expectCall(r, 'FEATURES(0xC5000022)', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectCall(r, 'FEATURES(SMCCC_VERSION)', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectCall(r, 'ST', [SCRATCH_GPA, 0n, 0n, 0n]);
    expectCall(r, 'smc ST', [SCRATCH_GPA, 0n, 0n, 0n]);
    for (let off = 0n; off < 64n; off += 8n) expect(r.get(`mem+${off}`)!.value, `structure byte ${off}`).toBe(0n);
    expect(r.get('mem+64')!.value).toBe(0x1234n);
  });

  it('without a base: FEATURES and ST → −1, while ARCH_FEATURES(PV_TIME_FEATURES) still says 0', () => {
    const r = run();
    expectCall(r, 'ARCH_FEATURES(PV_TIME_FEATURES)', [0n, 0n, 0n, 0n]);
    for (const n of ['FEATURES(FEATURES)', 'FEATURES(ST)', 'ST', 'smc ST']) expectCall(r, n, [NOT_SUPPORTED, 0n, 0n, 0n]);
    expect(r.get('mem+0')!.value).toBe(ones);
  });

  it('STD_HYP_BMAP = 0: every PV time call and ARCH_FEATURES(PV_TIME_FEATURES) → −1, even with a base', () => {
    const r = run((vm) => setStolenTimeBase(vm, 0, SCRATCH_GPA), { registers: [[Reg.STD_HYP_BMAP, 0n]] });
    for (const n of ['ARCH_FEATURES(PV_TIME_FEATURES)', 'FEATURES(FEATURES)', 'FEATURES(ST)', 'ST', 'smc ST']) expectCall(r, n, [NOT_SUPPORTED, 0n, 0n, 0n]);
    expect(r.get('mem+0')!.value, 'structure untouched').toBe(ones);
  });

  it('setStolenTimeBase: EINVAL unaligned or outside RAM or no such vCPU, EEXIST the second time', () => {
    session = GuestSession.boot({ script: new Script() });
    const { vm } = session;
    const code = (f: () => void) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(AbiError);
        return (e as AbiError).code;
      }
      return 'ok';
    };
    expect(code(() => setStolenTimeBase(vm, 0, SCRATCH_GPA + 8n))).toBe('EINVAL');
    expect(code(() => setStolenTimeBase(vm, 0, RAM_BASE + BigInt(MEM_SIZE)))).toBe('EINVAL');
    expect(code(() => setStolenTimeBase(vm, 0, RAM_BASE + BigInt(MEM_SIZE) - 32n))).toBe('EINVAL');
    expect(code(() => setStolenTimeBase(vm, 0, 0x1000n))).toBe('EINVAL');
    expect(code(() => setStolenTimeBase(vm, 1, SCRATCH_GPA))).toBe('EINVAL');
    expect(code(() => setStolenTimeBase(vm, 0, SCRATCH_GPA))).toBe('ok');
    expect(code(() => setStolenTimeBase(vm, 0, SCRATCH_GPA + 64n))).toBe('EEXIST');
  });
});
