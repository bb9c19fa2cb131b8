/**
 * KVM's SMCCC dispatch (arch/arm64/kvm/hypercalls.c, handle_exit.c, hyp/hyp-entry.S) and its
 * SMCCC_VERSION, ARCH_FEATURES and WORKAROUND calls, on the real guest: the function id is w0
 * only, every handled call rewrites x0..x3, the WORKAROUND calls answer via HVC but not via SMC,
 * and an SMC with a non-zero immediate only sets x0 = −1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { setStolenTimeBase } from '@plugvisor/svc-pvtime';
import { DEFAULT_EXPOSURE, Fid, HIGH, JUNK, probeScript } from './abi.js';
import { expectCall, expectProbe } from './expect.js';
import { GuestSession, NOT_SUPPORTED, SCRATCH_GPA, Script, type BootOptions } from './harness.js';

let session: GuestSession | undefined;
afterEach(() => {
  session?.dispose();
  session = undefined;
});

function run(script: Script, setup?: BootOptions['setup']) {
  session = GuestSession.boot({ script, ...(setup ? { setup } : {}) });
  session.runToEnd();
  return session.results();
}

const withStolenTime = (vm: Parameters<typeof setStolenTimeBase>[0]) => setStolenTimeBase(vm, 0, SCRATCH_GPA);
const exposure = { ...DEFAULT_EXPOSURE, stolenTimeBase: SCRATCH_GPA };

describe('SMCCC dispatch on a default VM', () => {
  it('answers every call through HVC #0 as KVM does: values, NOT_SUPPORTED with x1..x3 = 0, w0 only, x4..x17 kept', () => {
    const results = run(probeScript(exposure, 'hvc'), withStolenTime);
    expectProbe(results, exposure);
  });

  it('answers the same through SMC #0, except the WORKAROUND calls (−1 via SMC: no EL2 fast path)', () => {
    const results = run(probeScript(exposure, 'smc'), withStolenTime);
    expectProbe(results, exposure, { viaSmc: true });
  });

  it('SMC with a non-zero immediate: x0 = −1 and nothing else, for any id (no dispatch, no exit)', () => {
    const s = new Script()
      .via('smc1', 'SMCCC_VERSION', Fid.SMCCC_VERSION, ...JUNK)
      .via('smc1', 'PSCI_VERSION', Fid.PSCI_VERSION, ...JUNK)
      .via('smc1', 'SYSTEM_OFF', Fid.SYSTEM_OFF, ...JUNK) // would end the run if it were dispatched
      .via('smc1', 'TRNG_RND64', Fid.TRNG_RND64, 192, ...JUNK.slice(1))
      .call('after', Fid.SMCCC_VERSION);
    const results = run(s);
    for (const name of ['SMCCC_VERSION', 'PSCI_VERSION', 'SYSTEM_OFF', 'TRNG_RND64']) {
      const r = expectCall(results, name, (r) => expect(r.x[0]).toBe(NOT_SUPPORTED));
      expect(r.changed, `${name}: only x0 changes`).toBe(1);
    }
    expect(results.get('TRNG_RND64')!.x.slice(1)).toEqual([192n, JUNK[1], JUNK[2]]);
    expectCall(results, 'after', [0x1_0001n, 0n, 0n, 0n]);
  });

  it('takes the function id from w0 only: x0[63:32] is ignored on both conduits', () => {
    const s = new Script();
    for (const high of [HIGH, 0xffff_ffff_0000_0000n, 1n << 32n]) {
      s.call(`hvc ${high}`, high | BigInt(Fid.SMCCC_VERSION), ...JUNK);
      s.via('smc', `smc ${high}`, high | BigInt(Fid.PSCI_VERSION), ...JUNK);
      s.call(`hvc wa ${high}`, high | BigInt(Fid.ARCH_WORKAROUND_1), ...JUNK);
    }
    const results = run(s);
    for (const high of [HIGH, 0xffff_ffff_0000_0000n, 1n << 32n]) {
      expectCall(results, `hvc ${high}`, [0x1_0001n, 0n, 0n, 0n]);
      expectCall(results, `smc ${high}`, [0x1_0003n, 0n, 0n, 0n]);
      expectCall(results, `hvc wa ${high}`, [0n, 0n, JUNK[1], JUNK[2]]);
    }
  });

  // KVM ignores the HVC immediate (arch/arm64/kvm/handle_exit.c, handle_hvc): in an SMCCC build
  // (machine-arm64's 'kvm' HVC personality, README "Traps") an HVC with any immediate other than
  // 0xEA1 is an SMCCC call — tested with a real guest in hvc-immediate.test.ts.
});
