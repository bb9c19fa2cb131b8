/**
 * PSCI as KVM serves it (arch/arm64/kvm/psci.c) on the real guest: version selection, PSCI_FEATURES, every
 * system event's exit with the registers KVM leaves, SMC32 truncation of the arguments,
 * CPU_SUSPEND as WFI, and CPU_ON / CPU_OFF / AFFINITY_INFO across four vCPUs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SystemEvent, VmOverrides } from '@plugvisor/core';
import { DEFAULT_EXPOSURE, Fid, HIGH, JUNK, probeScript, PSCI_VERSION_VALUE, SMP_TRANSCRIPT } from './abi.js';
import { expectCall, expectProbe, hex } from './expect.js';
import { GuestSession, Mode, neg, NOT_SUPPORTED, Script } from './harness.js';

let session: GuestSession | undefined;
afterEach(() => {
  session?.dispose();
  session = undefined;
});

const INVALID_PARAMS = neg(2);
const INTERNAL_FAILURE = neg(6);
const VERSIONS = ['0.2', '1.0', '1.1', '1.2', '1.3'] as const;
const minorOf = (v: string) => (v === '0.2' ? -1 : Number(v.split('.')[1]));

/** psci.c's PSCI_FEATURES, written out: what PSCI_FEATURES(id) returns for a PSCI 1.x VM. */
function psciFeatures(id: bigint, minor: number, suspend: boolean): bigint {
  const u32 = Number(id & 0xffff_ffffn);
  const zero = [0x8400_0000, 0x8400_0001, 0xc400_0001, 0x8400_0002, 0x8400_0003, 0xc400_0003, 0x8400_0004, 0xc400_0004, 0x8400_0006, 0x8400_0008, 0x8400_0009, 0x8400_000a, 0x8000_0000];
  if (zero.includes(u32)) return 0n;
  if (u32 === 0x8400_000e || u32 === 0xc400_000e) return suspend ? 0n : NOT_SUPPORTED;
  if (u32 === 0x8400_0012 || u32 === 0xc400_0012) return minor >= 1 ? 0n : NOT_SUPPORTED;
  if (u32 === 0x8400_0015 || u32 === 0xc400_0015) return minor >= 3 ? 1n : NOT_SUPPORTED;
  return NOT_SUPPORTED;
}

const FEATURE_QUERIES: bigint[] = [
  ...Array.from({ length: 22 }, (_, n) => BigInt(0x8400_0000 + n)),
  ...[0x01, 0x03, 0x04, 0x05, 0x07, 0x0c, 0x0d, 0x0e, 0x10, 0x11, 0x12, 0x14, 0x15, 0x00, 0x02, 0x06].map((n) => BigInt(0xc400_0000 + n)),
  0x8000_0000n, // SMCCC_VERSION: 0, how guests find SMCCC ≥ 1.1 (drivers/firmware/psci/psci.c)
  0x8000_0001n,
  0x8000_8000n,
  0x8400_0050n,
  0x8600_0001n,
  0x95c1_ba60n,
  (1n << 32n) | 0x8400_0000n, // x1 read as u32
  0xffff_ffff_8400_0015n,
];

describe('PSCI version selection and PSCI_FEATURES', () => {
  for (const version of VERSIONS) {
    for (const suspend of version === '1.0' || version === '1.3' ? [false, true] : [false]) {
      it(`PSCI ${version}${suspend ? ' with psci-system-suspend' : ''}: PSCI_VERSION, which calls exist, PSCI_FEATURES table`, () => {
        const overrides: VmOverrides = { versions: { psci: version }, features: { 'psci-system-suspend': suspend } };
        const e = { ...DEFAULT_EXPOSURE, psci: version, suspend };
        const s = probeScript(e);
        for (const id of FEATURE_QUERIES) s.call(`F(${hex(id)})`, Fid.PSCI_FEATURES, id, ...JUNK.slice(1));
        // SYSTEM_SUSPEND answered without an exit when it is not there
        if (!suspend || version === '0.2') s.call('SYSTEM_SUSPEND_64', Fid.SYSTEM_SUSPEND_64, 0x4000_0000, 0x55, JUNK[2]);
        session = GuestSession.boot({ script: s, overrides });
        expect(session.vm.abi.getOneReg(0x6030_0000_0014_0000n)).toBe(PSCI_VERSION_VALUE[version]);
        session.runToEnd();
        const r = session.results();
        expectProbe(r, e);
        const minor = minorOf(version);
        for (const id of FEATURE_QUERIES) {
          // PSCI 0.2 has no PSCI_FEATURES at all
          const want = minor < 0 ? NOT_SUPPORTED : psciFeatures(id, minor, suspend);
          expectCall(r, `F(${hex(id)})`, [want, 0n, 0n, 0n]);
        }
        if (!suspend || version === '0.2') expectCall(r, 'SYSTEM_SUSPEND_64', [NOT_SUPPORTED, 0n, 0n, 0n]);
      });
    }
  }

  it('the version can be chosen through KVM_REG_ARM_PSCI_VERSION before the run', () => {
    session = GuestSession.boot({
      script: new Script().call('PSCI_VERSION', Fid.PSCI_VERSION),
      setup: (vm) => vm.abi.setOneReg(0x6030_0000_0014_0000n, 0x1_0001n),
    });
    session.runToEnd();
    expectCall(session.results(), 'PSCI_VERSION', [0x1_0001n, 0n, 0n, 0n]);
  });
});

interface EventCase {
  readonly title: string;
  readonly overrides?: VmOverrides;
  /** Calls before the exit, with their expected x0..x3. */
  readonly before?: ReadonlyArray<readonly [string, readonly bigint[], readonly bigint[]]>;
  readonly via?: 'hvc' | 'smc';
  /** x0..x3 of the exiting call. */
  readonly call: readonly bigint[];
  readonly event: SystemEvent;
  /** x0..x3 as KVM leaves them (seen by a VMM, or the guest if it were resumed). */
  readonly regs: readonly bigint[];
}

const C = 0x1234_5678_9abc_def0n;
const J = JUNK[2];
const on = { features: { 'psci-system-suspend': true } };
const EVENTS: EventCase[] = [
  { title: 'SYSTEM_OFF → shutdown; x0 = −6, x1..x3 = 0', call: [BigInt(Fid.SYSTEM_OFF), ...JUNK], event: { kind: 'off', vcpu: 0, data: [] }, regs: [INTERNAL_FAILURE, 0n, 0n, 0n] },
  { title: 'SYSTEM_OFF via SMC', via: 'smc', call: [HIGH | BigInt(Fid.SYSTEM_OFF), ...JUNK], event: { kind: 'off', vcpu: 0, data: [] }, regs: [INTERNAL_FAILURE, 0n, 0n, 0n] },
  { title: 'SYSTEM_RESET → reset (no flag); x0 = −6, x1..x3 = 0', call: [BigInt(Fid.SYSTEM_RESET), ...JUNK], event: { kind: 'reset', vcpu: 0, data: [] }, regs: [INTERNAL_FAILURE, 0n, 0n, 0n] },
  {
    title: 'SYSTEM_RESET2 warm (type 0) → reset with PSCI_RESET2, type and cookie; only x0 written',
    before: [
      ['type 1', [BigInt(Fid.SYSTEM_RESET2_64), 1n, C, J], [INVALID_PARAMS, 0n, 0n, 0n]],
      ['type 0x7fffffff', [BigInt(Fid.SYSTEM_RESET2_64), 0x7fff_ffffn, C, J], [INVALID_PARAMS, 0n, 0n, 0n]],
      ['type 1<<32 | 1 (u32)', [BigInt(Fid.SYSTEM_RESET2_64), (1n << 32n) | 1n, 0n, J], [INVALID_PARAMS, 0n, 0n, 0n]],
    ],
    call: [BigInt(Fid.SYSTEM_RESET2_64), 0n, C, J],
    event: { kind: 'reset', vcpu: 0, data: [1n, 0n, C] },
    regs: [INTERNAL_FAILURE, 0n, C, J],
  },
  {
    title: 'SYSTEM_RESET2 vendor type (≥ 0x80000000)',
    call: [BigInt(Fid.SYSTEM_RESET2_64), 0x8000_0001n, C, J],
    event: { kind: 'reset', vcpu: 0, data: [1n, 0x8000_0001n, C] },
    regs: [INTERNAL_FAILURE, 0x8000_0001n, C, J],
  },
  {
    title: 'SYSTEM_RESET2 SMC32: upper halves of x1..x3 zeroed in place first',
    call: [BigInt(Fid.SYSTEM_RESET2), 0xffff_ffff_0000_0000n, C, J],
    event: { kind: 'reset', vcpu: 0, data: [1n, 0n, C & 0xffff_ffffn] },
    regs: [INTERNAL_FAILURE, 0n, C & 0xffff_ffffn, J & 0xffff_ffffn],
  },
  {
    title: 'SYSTEM_OFF2 HIBERNATE_OFF → shutdown with PSCI_OFF2; bad type or cookie → −2',
    before: [
      ['type 2', [BigInt(Fid.SYSTEM_OFF2_64), 2n, 0n, J], [INVALID_PARAMS, 0n, 0n, 0n]],
      ['cookie 1', [BigInt(Fid.SYSTEM_OFF2_64), 1n, 1n, J], [INVALID_PARAMS, 0n, 0n, 0n]],
      ['cookie 1<<32 (64-bit)', [BigInt(Fid.SYSTEM_OFF2_64), 1n, 1n << 32n, J], [INVALID_PARAMS, 0n, 0n, 0n]],
      ['SMC32 type 1<<32 | 2', [BigInt(Fid.SYSTEM_OFF2), (1n << 32n) | 2n, 0n, J], [INVALID_PARAMS, 0n, 0n, 0n]],
    ],
    call: [BigInt(Fid.SYSTEM_OFF2_64), 1n, 0n, J],
    event: { kind: 'hibernate-off', vcpu: 0, data: [1n] },
    regs: [INTERNAL_FAILURE, 0n, 0n, 0n],
  },
  {
    title: 'SYSTEM_OFF2 type 0 is accepted as HIBERNATE_OFF\'s alias',
    call: [BigInt(Fid.SYSTEM_OFF2_64), 0n, 0n, J],
    event: { kind: 'hibernate-off', vcpu: 0, data: [1n] },
    regs: [INTERNAL_FAILURE, 0n, 0n, 0n],
  },
  {
    title: 'SYSTEM_OFF2 SMC32: type and cookie read after truncation (1<<32 | 1, 1<<32 → 1, 0)',
    call: [BigInt(Fid.SYSTEM_OFF2), (1n << 32n) | 1n, 1n << 32n, J],
    event: { kind: 'hibernate-off', vcpu: 0, data: [1n] },
    regs: [INTERNAL_FAILURE, 0n, 0n, 0n],
  },
  {
    title: 'SYSTEM_SUSPEND with psci-system-suspend → suspend exit, no register modified',
    overrides: on,
    call: [BigInt(Fid.SYSTEM_SUSPEND_64), 0x4000_1000n, C, J],
    event: { kind: 'suspend', vcpu: 0, data: [0x4000_1000n, C] },
    regs: [BigInt(Fid.SYSTEM_SUSPEND_64), 0x4000_1000n, C, J],
  },
  {
    title: 'SYSTEM_SUSPEND SMC32 with psci-system-suspend: only the upper halves of x1..x3 cleared',
    overrides: on,
    call: [HIGH | BigInt(Fid.SYSTEM_SUSPEND), HIGH | 0x4000_1000n, C, J],
    event: { kind: 'suspend', vcpu: 0, data: [0x4000_1000n, C & 0xffff_ffffn] },
    regs: [HIGH | BigInt(Fid.SYSTEM_SUSPEND), 0x4000_1000n, C & 0xffff_ffffn, J & 0xffff_ffffn],
  },
];

describe('system events: exit kind and data, registers left as KVM leaves them', () => {
  for (const c of EVENTS) {
    it(c.title, () => {
      const s = new Script();
      for (const [name, x] of c.before ?? []) s.call(name, x[0]!, ...x.slice(1));
      s.flush(); // the guest collects its output; the exiting call never returns to print it
      s.via(c.via ?? 'hvc', 'event', c.call[0]!, ...c.call.slice(1));
      session = GuestSession.boot({ script: s, ...(c.overrides ? { overrides: c.overrides } : {}) });
      const r = session.run();
      expect(r).toEqual({ kind: 'system-event', event: c.event });
      const results = session.results();
      for (const [name, , want] of c.before ?? []) expectCall(results, name, want);
      expect(results.has('event'), 'the exiting call does not return to the guest').toBe(false);
      expect(session.xregs(0).slice(0, 4).map(hex)).toEqual(c.regs.map(hex));
      expect(session.machine.run(), 'the VM stays stopped').toEqual(r);
    });
  }
});

describe('CPU_SUSPEND behaves as WFI', () => {
  it('parks until an interrupt is pending (even masked), then returns 0 to the next instruction', () => {
    const s = new Script()
      .call('CPU_SUSPEND_64 power-down', Fid.CPU_SUSPEND_64, 0x1_0000, 0x4000_0000, 0x55)
      .call('CPU_SUSPEND SMC32 with the line still high', HIGH | BigInt(Fid.CPU_SUSPEND), HIGH, HIGH, HIGH)
      .call('after', Fid.PSCI_VERSION);
    session = GuestSession.boot({ script: s });
    expect(session.run()).toEqual({ kind: 'hang', message: 'all 1 powered-on vCPU(s) wait for an interrupt and none is pending' });
    expect(session.results().size).toBe(0);
    session.machine.setInterrupt(0, 27, true);
    // two more traps (the second CPU_SUSPEND returns at once: the line is still high), then
    // lower the line so the rest runs without a masked interrupt pending
    expect(session.run({ pauseAfterTraps: 2 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    session.machine.setInterrupt(0, 27, false);
    session.runToEnd();
    const r = session.results();
    expectCall(r, 'CPU_SUSPEND_64 power-down', [0n, 0n, 0n, 0n]); // state kept: returns here, not to the entry point
    expectCall(r, 'CPU_SUSPEND SMC32 with the line still high', [0n, 0n, 0n, 0n]);
    expectCall(r, 'after', [0x1_0003n, 0n, 0n, 0n]);
  });
});


describe('CPU_ON, CPU_OFF, AFFINITY_INFO on four vCPUs', () => {
  it('starts, stops and reports vCPUs as KVM does; the last CPU_OFF leaves nothing running', () => {
    session = GuestSession.boot({ vcpus: 4, mode: Mode.SMP });
    const r = session.run();
    expect(session.text()).toBe(SMP_TRANSCRIPT);
    expect(r).toEqual({ kind: 'all-off' });
    for (let i = 0; i < 4; i++) expect(session.machine.powerState(i)).toBe('off');
    expect(session.xregs(0)[0], 'CPU_OFF wrote x0 = 0').toBe(0n);
  });

  it('a CPU_ON the VMM has not yet applied is on-pending, with entry and context recorded', () => {
    session = GuestSession.boot({ vcpus: 4, mode: Mode.SMP });
    expect(session.run({ pauseAfterTraps: 3 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    expect(session.text(), 'the guest prints only once it runs alone again').toBe('');
    expect(session.machine.powerState(1)).toBe('on-pending');
    expect(session.machine.powerState(2)).toBe('off');
    expect(session.run()).toEqual({ kind: 'all-off' });
    expect(session.text()).toBe(SMP_TRANSCRIPT);
  });
});
