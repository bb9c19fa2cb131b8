/**
 * Migration between builds with real guests: snapshots taken mid-run (core
 * saveSnapshot + machine image), restored with planRestore onto another build and rebuilt with
 * machine-arm64's machineFromPlan; the guest's transcript continues exactly as an
 * uninterrupted run's. A VM that cleared TRNG or PTP moves both ways between builds with and
 * without that service; a VM that uses it is refused by name, as is a PSCI 1.3 VM by a build
 * capped at 1.1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { planRestore, saveSnapshot, SnapshotError, type Hypervisor, type Vm, type VmOverrides } from '@plugvisor/core';
import { checkArm64Snapshot } from '@plugvisor/machine-arm64';
import { setStolenTimeBase } from '@plugvisor/svc-pvtime';
import { Fid, Reg, SMP_TRANSCRIPT } from './abi.js';
import { composeBuild, GuestSession, Mode, NOT_SUPPORTED, SCRATCH_GPA, Script } from './harness.js';

const sessions: GuestSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.dispose();
});

const FULL = composeBuild({ name: 'full' });
const NO_TRNG = composeBuild({ without: ['trng'], name: 'no-trng' });
const NO_PTP = composeBuild({ without: ['ptp'], name: 'no-ptp' });
const PSCI_1_1 = composeBuild({ psci: { maxVersion: '1.1' }, name: 'psci-1.1' });

/**
 * Deterministic calls (no entropy; PTP with `ptpSelector` 0 samples the clock, so only where
 * PTP is off), `rounds` times.
 */
function script(rounds: number, ptpSelector = 0): Script {
  const s = new Script();
  for (let i = 0; i < rounds; i++) {
    s.call(`SMCCC_VERSION ${i}`, Fid.SMCCC_VERSION)
      .call(`PSCI_VERSION ${i}`, Fid.PSCI_VERSION)
      .call(`PSCI_FEATURES(SYSTEM_OFF2) ${i}`, Fid.PSCI_FEATURES, Fid.SYSTEM_OFF2)
      .call(`TRNG_VERSION ${i}`, Fid.TRNG_VERSION)
      .call(`TRNG_RND64(0) ${i}`, Fid.TRNG_RND64, 0)
      .call(`KVM_FEATURES ${i}`, Fid.KVM_FEATURES)
      .call(`KVM_PTP ${i}`, Fid.KVM_PTP, ptpSelector)
      .call(`PV_TIME_ST ${i}`, Fid.PV_TIME_ST);
  }
  return s;
}
const ROUNDS = 4;
const CALLS_PER_ROUND = 8;

function boot(hv: Hypervisor, overrides: VmOverrides, s: Script, vcpus = 1, mode: number = Mode.SCRIPT): GuestSession {
  const g = GuestSession.boot({ hv, overrides, script: s, vcpus, mode, setup: (vm: Vm) => setStolenTimeBase(vm, 0, SCRATCH_GPA) });
  sessions.push(g);
  return g;
}

/** Snapshot `from` at a trap boundary and restore it onto `to` (refusals propagate). */
function move(from: GuestSession, to: Hypervisor, s?: Script): GuestSession {
  const bytes = saveSnapshot(from.vm, from.machine.image());
  const plan = planRestore(bytes, to, { arch: 'arm64', checkMachine: checkArm64Snapshot });
  const g = GuestSession.restore(plan, s);
  sessions.push(g);
  return g;
}

function refusal(from: GuestSession, to: Hypervisor): SnapshotError {
  const bytes = saveSnapshot(from.vm, from.machine.image());
  try {
    planRestore(bytes, to, { arch: 'arm64', checkMachine: checkArm64Snapshot });
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    return e as SnapshotError;
  }
  throw new Error(`restore onto ${to.name} was not refused`);
}

/**
 * Runs `s` on `path[0]` uninterrupted, then again with a move to the next build every `step`
 * traps, and expects the same transcript and the same end.
 */
function expectSameAcrossMoves(path: Hypervisor[], overrides: VmOverrides, s: Script, step: number): string {
  const ref = boot(path[0]!, overrides, s);
  const whole = ref.runToEnd();
  let g = boot(path[0]!, overrides, s);
  let transcript = '';
  for (const next of path.slice(1)) {
    expect(g.run({ pauseAfterTraps: step })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    transcript += g.text();
    g = move(g, next, s);
    expect(g.vm.hv).toBe(next);
  }
  g.runToEnd();
  transcript += g.text();
  expect(transcript).toBe(whole);
  return whole;
}

function resultsOf(text: string, s: Script) {
  const ops = s.ops;
  const out = new Map<string, bigint[]>();
  for (const line of text.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    const op = m && ops[Number(m[1])];
    if (op && 'name' in op) out.set(op.name, m![2]!.split(' ').slice(0, 4).map((w) => BigInt(`0x${w}`)));
  }
  return out;
}

describe('a VM that cleared TRNG (STD_BMAP = 0)', () => {
  const overrides: VmOverrides = { registers: [[Reg.STD_BMAP, 0n]] };

  it('moves full → without svc-trng → full mid-run; TRNG stays −1, the transcript continues identically', () => {
    const s = script(ROUNDS, 2);
    const text = expectSameAcrossMoves([FULL, NO_TRNG, FULL], overrides, s, CALLS_PER_ROUND + 3);
    const r = resultsOf(text, s);
    for (let i = 0; i < ROUNDS; i++) {
      expect(r.get(`TRNG_VERSION ${i}`)).toEqual([NOT_SUPPORTED, 0n, 0n, 0n]);
      expect(r.get(`TRNG_RND64(0) ${i}`)).toEqual([NOT_SUPPORTED, 0n, 0n, 0n]);
      expect(r.get(`PSCI_VERSION ${i}`)).toEqual([0x1_0003n, 0n, 0n, 0n]);
      expect(r.get(`PV_TIME_ST ${i}`), 'the stolen-time base travels in svc-pvtime state').toEqual([SCRATCH_GPA, 0n, 0n, 0n]);
    }
  });

  it('a VM born on the build without svc-trng moves to the full build and still gets −1', () => {
    const s = script(ROUNDS, 2);
    const text = expectSameAcrossMoves([NO_TRNG, FULL, NO_TRNG], {}, s, CALLS_PER_ROUND * 2 - 1);
    const r = resultsOf(text, s);
    for (let i = 0; i < ROUNDS; i++) expect(r.get(`TRNG_VERSION ${i}`)).toEqual([NOT_SUPPORTED, 0n, 0n, 0n]);
  });

  it('a default VM is refused by the build without svc-trng, naming the service', () => {
    const g = boot(FULL, {}, script(ROUNDS));
    g.run({ pauseAfterTraps: 5 });
    const e = refusal(g, NO_TRNG);
    expect(e.message).toContain('@plugvisor/svc-trng');
    expect(e.problems).toEqual([expect.stringMatching(/feature 'trng' is enabled in the VM but the build has no @plugvisor\/svc-trng/)]);
    // the source is untouched and runs on
    g.runToEnd();
  });
});

describe('a VM that cleared PTP (VENDOR_HYP_BMAP bit 1)', () => {
  const overrides: VmOverrides = { registers: [[Reg.VENDOR_HYP_BMAP, 0x1n]] };

  it('moves full → without svc-ptp → full mid-run; KVM_FEATURES stays 0x1 and PTP −1', () => {
    const s = script(ROUNDS);
    const text = expectSameAcrossMoves([FULL, NO_PTP, FULL], overrides, s, CALLS_PER_ROUND + 5);
    const r = resultsOf(text, s);
    for (let i = 0; i < ROUNDS; i++) {
      expect(r.get(`KVM_FEATURES ${i}`)).toEqual([0x1n, 0n, 0n, 0n]);
      expect(r.get(`KVM_PTP ${i}`)).toEqual([NOT_SUPPORTED, 0n, 0n, 0n]);
      expect(r.get(`TRNG_VERSION ${i}`)).toEqual([0x1_0000n, 0n, 0n, 0n]);
    }
  });

  it('a VM born on the build without svc-ptp moves to the full build and back', () => {
    const s = script(ROUNDS);
    const text = expectSameAcrossMoves([NO_PTP, FULL, NO_PTP], {}, s, CALLS_PER_ROUND + 1);
    const r = resultsOf(text, s);
    for (let i = 0; i < ROUNDS; i++) expect(r.get(`KVM_FEATURES ${i}`)).toEqual([0x1n, 0n, 0n, 0n]);
  });

  it('a default VM is refused by the build without svc-ptp, naming the service', () => {
    const g = boot(FULL, {}, script(1));
    g.run({ pauseAfterTraps: 2 });
    const e = refusal(g, NO_PTP);
    expect(e.message).toContain('@plugvisor/svc-ptp');
    expect(e.problems).toEqual([expect.stringMatching(/feature 'kvm-ptp' is enabled in the VM but the build has no @plugvisor\/svc-ptp/)]);
  });
});

describe('PSCI version across builds', () => {
  it('a PSCI 1.3 VM is refused by a build capped at PSCI 1.1, naming the psci version', () => {
    const g = boot(FULL, {}, script(1));
    g.run({ pauseAfterTraps: 2 });
    const e = refusal(g, PSCI_1_1);
    expect(e.message).toMatch(/psci version 1\.3 \(0x10003\) is not offered by @plugvisor\/svc-psci@[^ ]+ \(offers 0\.2, 1\.0, 1\.1; maximum 1\.1\)/);
  });

  // A PSCI 1.1 VM never saw SYSTEM_OFF2: its ABI record lists the calls it sees at 1.1, so a
  // build capped at 1.1 (which declares fewer calls) reproduces it exactly. PTP is on in both
  // builds, so the script asks it with an unknown counter selector (a deterministic −1).
  it('a PSCI 1.1 VM moves to the build capped at 1.1 and back (core: version-gated calls)', () => {
    const s = script(ROUNDS, 7);
    const text = expectSameAcrossMoves([FULL, PSCI_1_1, FULL], { versions: { psci: '1.1' } }, s, CALLS_PER_ROUND);
    expect(resultsOf(text, s).get('PSCI_VERSION 0')).toEqual([0x1_0001n, 0n, 0n, 0n]);
  });
});

describe('multi-vCPU state across a move', () => {
  it('a CPU_ON still pending at the snapshot starts the target with its context after the restore', () => {
    const g = boot(FULL, {}, new Script(), 4, Mode.SMP);
    expect(g.run({ pauseAfterTraps: 3 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    expect(g.machine.powerState(1)).toBe('on-pending');
    const before = g.text();
    const r = move(g, FULL);
    expect(r.machine.powerState(1)).toBe('on-pending');
    expect(r.run()).toEqual({ kind: 'all-off' });
    expect(before + r.text()).toBe(SMP_TRANSCRIPT);
  });
});

