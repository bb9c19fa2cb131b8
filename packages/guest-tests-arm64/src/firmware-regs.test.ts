/**
 * Firmware pseudo-registers through the VMM API (Documentation/virt/kvm/arm/fw-pseudo-registers.rst:
 * list, defaults, values, errno rules)
 * and its effect on guests: each bitmap cleared before the run makes exactly its calls −1
 * while PSCI and SMCCC_VERSION still answer (default-allowed: arch/arm64/kvm/hypercalls.c, kvm_smccc_default_allowed).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AbiError, type Vm } from '@plugvisor/core';
import { setStolenTimeBase } from '@plugvisor/svc-pvtime';
import { DEFAULT_EXPOSURE, Fid, probeScript, Reg, type Exposure } from './abi.js';
import { expectCall, expectProbe } from './expect.js';
import { GuestSession, NOT_SUPPORTED, SCRATCH_GPA, Script } from './harness.js';

let session: GuestSession | undefined;
afterEach(() => {
  session?.dispose();
  session = undefined;
});

function errno(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof AbiError) return e.code;
    throw e;
  }
}

const FW_LIST = [Reg.PSCI_VERSION, Reg.WORKAROUND_1, Reg.WORKAROUND_2, Reg.WORKAROUND_3, Reg.STD_BMAP, Reg.STD_HYP_BMAP, Reg.VENDOR_HYP_BMAP];

describe('firmware registers through the API', () => {
  it('KVM_GET_REG_LIST order and defaults (PSCI 1.3, unaffected host, bitmaps 0x1/0x1/0x3)', () => {
    session = GuestSession.boot({ script: new Script() });
    const abi = session.vm.abi;
    expect(abi.getRegList()).toEqual(FW_LIST);
    expect(FW_LIST.map((id) => abi.getOneReg(id))).toEqual([0x1_0003n, 2n, 3n, 2n, 0x1n, 0x1n, 0x3n]);
  });

  it('before the first run: ENOENT unknown registers, EINVAL unsupported values, the rest accepted', () => {
    session = GuestSession.boot({ script: new Script() });
    const abi = session.vm.abi;
    const cases: Array<[bigint, bigint, string]> = [
      // unknown FW / FEAT_BMAP index → ENOENT (arch/arm64/kvm/hypercalls.c, kvm_arm_get_fw_reg) (BMAP_2 is 6.15+; this build has no vendor function 64+)
      [Reg.FW_REG_4, 0n, 'ENOENT'],
      [Reg.FEAT_BMAP_REG_4, 0n, 'ENOENT'],
      [Reg.VENDOR_HYP_BMAP_2, 0n, 'ENOENT'],
      // bits outside the supported mask → EINVAL (arch/arm64/kvm/hypercalls.c, kvm_arm_set_fw_reg_bmap)
      [Reg.STD_BMAP, 0x2n, 'EINVAL'],
      [Reg.STD_HYP_BMAP, 0x3n, 'EINVAL'],
      [Reg.VENDOR_HYP_BMAP, 0x4n, 'EINVAL'],
      [Reg.VENDOR_HYP_BMAP, 1n << 63n, 'EINVAL'],
      // every vCPU has PSCI_0_2 (arch/arm64/kvm/hypercalls.c, kvm_arm_set_fw_reg), so 0.1 (0x1) and unknown versions are refused
      [Reg.PSCI_VERSION, 0x1n, 'EINVAL'],
      [Reg.PSCI_VERSION, 0x3n, 'EINVAL'],
      [Reg.PSCI_VERSION, 0x1_0004n, 'EINVAL'],
      [Reg.PSCI_VERSION, 0x2n, 'ok'],
      [Reg.PSCI_VERSION, 0x1_0003n, 'ok'],
      // fw-pseudo-registers.rst: an unaffected host accepts any level not better than NOT_REQUIRED, stores nothing
      [Reg.WORKAROUND_1, 0n, 'ok'],
      [Reg.WORKAROUND_1, 1n, 'ok'],
      [Reg.WORKAROUND_1, 2n, 'ok'],
      [Reg.WORKAROUND_1, 3n, 'EINVAL'],
      [Reg.WORKAROUND_1, 0x12n, 'EINVAL'],
      [Reg.WORKAROUND_2, 0n, 'ok'],
      [Reg.WORKAROUND_2, 1n, 'ok'],
      [Reg.WORKAROUND_2, 2n, 'ok'],
      [Reg.WORKAROUND_2, 3n, 'ok'],
      [Reg.WORKAROUND_2, 0x12n, 'ok'], // AVAIL | ENABLED
      [Reg.WORKAROUND_2, 0x10n, 'EINVAL'], // ENABLED without AVAIL
      [Reg.WORKAROUND_2, 0x13n, 'EINVAL'],
      [Reg.WORKAROUND_2, 4n, 'EINVAL'],
      [Reg.WORKAROUND_2, 0x20n, 'EINVAL'],
      [Reg.WORKAROUND_3, 2n, 'ok'],
      [Reg.WORKAROUND_3, 3n, 'EINVAL'],
      [Reg.STD_BMAP, 0n, 'ok'],
      [Reg.STD_BMAP, 1n, 'ok'],
    ];
    for (const [id, value, want] of cases) expect(errno(() => abi.setOneReg(id, value)), `set 0x${id.toString(16)} = 0x${value.toString(16)}`).toBe(want);
    for (const id of [Reg.FW_REG_4, Reg.FEAT_BMAP_REG_4, Reg.VENDOR_HYP_BMAP_2]) expect(errno(() => abi.getOneReg(id))).toBe('ENOENT');
    expect(abi.getOneReg(Reg.WORKAROUND_1)).toBe(2n); // nothing stored
    expect(abi.getOneReg(Reg.WORKAROUND_2)).toBe(3n);
  });

  it('after the run: EBUSY for a change, the same value accepted, EINVAL before EBUSY, ENOENT still; the guest keeps its ABI', () => {
    const s = new Script()
      .call('TRNG before', Fid.TRNG_VERSION)
      .call('PTP before', Fid.KVM_FEATURES)
      .call('CPU_SUSPEND', Fid.CPU_SUSPEND_64, 0, 0, 0) // parks: the run returns 'hang' with the VM started
      .call('TRNG after', Fid.TRNG_VERSION)
      .call('PTP after', Fid.KVM_FEATURES)
      .call('PSCI after', Fid.PSCI_VERSION);
    session = GuestSession.boot({ script: s });
    expect(session.run().kind).toBe('hang');
    const abi = session.vm.abi;
    const writes: Array<[bigint, bigint, string]> = [
      [Reg.STD_BMAP, 0n, 'EBUSY'],
      [Reg.STD_BMAP, 1n, 'ok'],
      [Reg.STD_BMAP, 0x2n, 'EINVAL'],
      [Reg.STD_BMAP, 0x3n, 'EINVAL'],
      [Reg.STD_HYP_BMAP, 0n, 'EBUSY'],
      [Reg.STD_HYP_BMAP, 1n, 'ok'],
      [Reg.VENDOR_HYP_BMAP, 0x1n, 'EBUSY'],
      [Reg.VENDOR_HYP_BMAP, 0x3n, 'ok'],
      [Reg.VENDOR_HYP_BMAP, 0x7n, 'EINVAL'],
      [Reg.VENDOR_HYP_BMAP_2, 0n, 'ENOENT'],
      // KVM lets the PSCI version change after the run; Plugvisor freezes it with the rest
      // (core VmAbi, "one deliberate difference"): a guest's view must not change under it
      [Reg.PSCI_VERSION, 0x1_0001n, 'EBUSY'],
      [Reg.PSCI_VERSION, 0x1_0003n, 'ok'],
      [Reg.PSCI_VERSION, 0x1n, 'EINVAL'],
      [Reg.WORKAROUND_1, 2n, 'ok'],
      [Reg.WORKAROUND_2, 3n, 'ok'],
      [Reg.WORKAROUND_3, 5n, 'EINVAL'],
    ];
    for (const [id, value, want] of writes) expect(errno(() => abi.setOneReg(id, value)), `set 0x${id.toString(16)} = 0x${value.toString(16)} after run`).toBe(want);
    expect(errno(() => abi.setFeature('trng', false))).toBe('EBUSY');
    expect(errno(() => abi.setFeature('trng', true))).toBe('ok');
    expect(FW_LIST.map((id) => abi.getOneReg(id))).toEqual([0x1_0003n, 2n, 3n, 2n, 0x1n, 0x1n, 0x3n]);

    session.machine.setInterrupt(0, 27, true); // wake the suspended vCPU
    expect(session.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    session.machine.setInterrupt(0, 27, false);
    session.runToEnd();
    const r = session.results();
    expectCall(r, 'CPU_SUSPEND', [0n, 0n, 0n, 0n]);
    expectCall(r, 'TRNG after', [0x1_0000n, 0n, 0n, 0n]);
    expectCall(r, 'PTP after', [0x3n, 0n, 0n, 0n]);
    expectCall(r, 'PSCI after', [0x1_0003n, 0n, 0n, 0n]);
  });
});

describe('bitmaps cleared before the run: exactly the gated calls → −1', () => {
  const cases: Array<[string, Array<[bigint, bigint]>, Partial<Exposure>]> = [
    ['STD_BMAP = 0 (TRNG)', [[Reg.STD_BMAP, 0n]], { trng: false }],
    ['STD_HYP_BMAP = 0 (PV time)', [[Reg.STD_HYP_BMAP, 0n]], { pvTime: false }],
    ['VENDOR_HYP_BMAP = 0 (UID, FEATURES, PTP)', [[Reg.VENDOR_HYP_BMAP, 0n]], { funcFeat: false, ptp: false }],
    ['VENDOR_HYP_BMAP = 0x1 (PTP)', [[Reg.VENDOR_HYP_BMAP, 1n]], { ptp: false }],
    ['VENDOR_HYP_BMAP = 0x2 (UID, FEATURES)', [[Reg.VENDOR_HYP_BMAP, 2n]], { funcFeat: false }],
    ['all three bitmaps = 0', [[Reg.STD_BMAP, 0n], [Reg.STD_HYP_BMAP, 0n], [Reg.VENDOR_HYP_BMAP, 0n]], { trng: false, pvTime: false, funcFeat: false, ptp: false }],
  ];
  for (const [title, regs, off] of cases) {
    it(title, () => {
      const e: Exposure = { ...DEFAULT_EXPOSURE, ...off, stolenTimeBase: SCRATCH_GPA };
      const setup = (vm: Vm) => {
        for (const [id, v] of regs) vm.abi.setOneReg(id, v);
        setStolenTimeBase(vm, 0, SCRATCH_GPA);
      };
      session = GuestSession.boot({ script: probeScript(e), setup });
      session.runToEnd();
      const r = session.results();
      expectProbe(r, e);
      // still answered whatever the bitmaps say
      expectCall(r, 'SMCCC_VERSION', [0x1_0001n, 0n, 0n, 0n]);
      expectCall(r, 'PSCI_VERSION', [0x1_0003n, 0n, 0n, 0n]);
      expectCall(r, 'PSCI_FEATURES(SMCCC_VERSION)', [0n, 0n, 0n, 0n]);
      if (!e.trng) expectCall(r, 'TRNG_VERSION', [NOT_SUPPORTED, 0n, 0n, 0n]);
      for (const [id, v] of regs) expect(session.vm.abi.getOneReg(id)).toBe(v);
    });
  }
});
