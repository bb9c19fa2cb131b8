/**
 * KVM/arm64's guest ABI as the tests expect it, written out independently of the services
 * (numbers from Linux's include/linux/arm-smccc.h, include/uapi/linux/psci.h and
 * arch/arm64/include/uapi/asm/kvm.h; comments name the file that defines the behaviour).
 */
import { neg, NOT_SUPPORTED, Script, type CallResult } from './harness.js';

export const Fid = Object.freeze({
  // arch calls (include/linux/arm-smccc.h)
  SMCCC_VERSION: 0x8000_0000,
  SMCCC_ARCH_FEATURES: 0x8000_0001,
  SMCCC_ARCH_SOC_ID: 0x8000_0002,
  ARCH_WORKAROUND_1: 0x8000_8000,
  ARCH_WORKAROUND_2: 0x8000_7fff,
  ARCH_WORKAROUND_3: 0x8000_3fff,
  // PSCI (include/uapi/linux/psci.h)
  PSCI_VERSION: 0x8400_0000,
  CPU_SUSPEND: 0x8400_0001,
  CPU_SUSPEND_64: 0xc400_0001,
  CPU_OFF: 0x8400_0002,
  CPU_ON: 0x8400_0003,
  CPU_ON_64: 0xc400_0003,
  AFFINITY_INFO: 0x8400_0004,
  AFFINITY_INFO_64: 0xc400_0004,
  MIGRATE: 0x8400_0005,
  MIGRATE_64: 0xc400_0005,
  MIGRATE_INFO_TYPE: 0x8400_0006,
  MIGRATE_INFO_UP_CPU: 0x8400_0007,
  SYSTEM_OFF: 0x8400_0008,
  SYSTEM_RESET: 0x8400_0009,
  PSCI_FEATURES: 0x8400_000a,
  CPU_FREEZE: 0x8400_000b,
  CPU_DEFAULT_SUSPEND: 0x8400_000c,
  NODE_HW_STATE: 0x8400_000d,
  SYSTEM_SUSPEND: 0x8400_000e,
  SYSTEM_SUSPEND_64: 0xc400_000e,
  SET_SUSPEND_MODE: 0x8400_000f,
  STAT_RESIDENCY: 0x8400_0010,
  STAT_COUNT: 0x8400_0011,
  SYSTEM_RESET2: 0x8400_0012,
  SYSTEM_RESET2_64: 0xc400_0012,
  MEM_PROTECT: 0x8400_0013,
  MEM_PROTECT_CHECK_RANGE: 0x8400_0014,
  SYSTEM_OFF2: 0x8400_0015,
  SYSTEM_OFF2_64: 0xc400_0015,
  PSCI_0_1_CPU_SUSPEND: 0x95c1_ba5e,
  PSCI_0_1_CPU_OFF: 0x95c1_ba5f,
  PSCI_0_1_CPU_ON: 0x95c1_ba60,
  PSCI_0_1_MIGRATE: 0x95c1_ba61,
  // TRNG (include/linux/arm-smccc.h, Arm DEN0098)
  TRNG_VERSION: 0x8400_0050,
  TRNG_FEATURES: 0x8400_0051,
  TRNG_GET_UUID: 0x8400_0052,
  TRNG_RND32: 0x8400_0053,
  TRNG_RND64: 0xc400_0053,
  // PV time (include/linux/arm-smccc.h)
  PV_TIME_FEATURES: 0xc500_0020,
  PV_TIME_ST: 0xc500_0021,
  // vendor hypervisor services (include/linux/arm-smccc.h)
  VENDOR_CALL_UID: 0x8600_ff01,
  KVM_FEATURES: 0x8600_0000,
  KVM_PTP: 0x8600_0001,
  KVM_DISCOVER_IMPL_VER: 0xc600_0040,
  KVM_DISCOVER_IMPL_CPUS: 0xc600_0041,
  PKVM_HYP_MEMINFO: 0xc600_0002,
});

// firmware registers (arch/arm64/include/uapi/asm/kvm.h)
export const Reg = Object.freeze({
  PSCI_VERSION: 0x6030_0000_0014_0000n,
  WORKAROUND_1: 0x6030_0000_0014_0001n,
  WORKAROUND_2: 0x6030_0000_0014_0002n,
  WORKAROUND_3: 0x6030_0000_0014_0003n,
  FW_REG_4: 0x6030_0000_0014_0004n,
  STD_BMAP: 0x6030_0000_0016_0000n,
  STD_HYP_BMAP: 0x6030_0000_0016_0001n,
  VENDOR_HYP_BMAP: 0x6030_0000_0016_0002n,
  VENDOR_HYP_BMAP_2: 0x6030_0000_0016_0003n,
  FEAT_BMAP_REG_4: 0x6030_0000_0016_0004n,
});

export const TRNG_UUID = [0x00e0_210dn, 0xeb11_8443n, 0x4452_7080n, 0x4c5a_4e55n]; // arch/arm64/kvm/trng.c
export const KVM_UID = [0xb66f_b428n, 0xe911_c52en, 0x564b_caa9n, 0x743a_004dn]; // include/linux/arm-smccc.h ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_*
export const PSCI_VERSION_VALUE: Record<string, bigint> = { '0.2': 0x2n, '1.0': 0x1_0000n, '1.1': 0x1_0001n, '1.2': 0x1_0002n, '1.3': 0x1_0003n };

/** Garbage for argument registers a call ignores (it must still rewrite x1..x3). */
export const JUNK = [0x1111_1111_1111_1111n, 0x2222_2222_2222_2222n, 0x3333_3333_3333_3333n] as const;
/** Upper-half garbage for x0: the function id is w0 only (include/kvm/arm_hypercalls.h, smccc_get_function). */
export const HIGH = 0xdead_beef_0000_0000n;

/** What a VM has enabled (firmware bitmap bits, PSCI version, a stolen-time base). */
export interface Exposure {
  readonly trng: boolean;
  readonly pvTime: boolean;
  readonly funcFeat: boolean;
  readonly ptp: boolean;
  readonly psci: string;
  readonly suspend: boolean;
  /** vCPU 0's stolen-time structure, if the VMM set one. */
  readonly stolenTimeBase?: bigint;
}

export const DEFAULT_EXPOSURE: Exposure = { trng: true, pvTime: true, funcFeat: true, ptp: true, psci: '1.3', suspend: false };

export type Expect = readonly bigint[] | ((r: CallResult) => void);

const ns = NOT_SUPPORTED;
const unsupported = [ns, 0n, 0n, 0n] as const;
const value = (x0: bigint) => [x0, 0n, 0n, 0n] as const;

/**
 * One call of every kind the build might answer, with arguments that show truncation and
 * rewritten registers, and the answer KVM gives with `e` enabled. Calls that end the run
 * (SYSTEM_OFF etc.) and calls needing a second vCPU are elsewhere.
 */
export function probe(e: Exposure): Array<{ name: string; x: bigint[]; expect: Expect }> {
  const minor = e.psci === '0.2' ? -1 : Number(e.psci.split('.')[1]);
  const psci1 = minor >= 0; // PSCI 1.x
  const list: Array<{ name: string; x: Array<bigint | number>; expect: Expect }> = [
    // always answered (default-allowed: arch/arm64/kvm/hypercalls.c, kvm_smccc_default_allowed)
    { name: 'SMCCC_VERSION', x: [HIGH | BigInt(Fid.SMCCC_VERSION), ...JUNK], expect: value(0x1_0001n) },
    { name: 'ARCH_FEATURES(WA1)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.ARCH_WORKAROUND_1, ...JUNK.slice(1)], expect: value(1n) },
    { name: 'ARCH_FEATURES(WA2)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.ARCH_WORKAROUND_2], expect: value(neg(2)) },
    { name: 'ARCH_FEATURES(WA3)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.ARCH_WORKAROUND_3], expect: value(1n) },
    // x1 read as u32 (arch/arm64/kvm/hypercalls.c, ARM_SMCCC_ARCH_FEATURES_FUNC_ID)
    { name: 'ARCH_FEATURES(WA1 | 1<<32)', x: [Fid.SMCCC_ARCH_FEATURES, (1n << 32n) | BigInt(Fid.ARCH_WORKAROUND_1)], expect: value(1n) },
    { name: 'ARCH_FEATURES(PV_TIME_FEATURES)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.PV_TIME_FEATURES], expect: value(e.pvTime ? 0n : ns) },
    { name: 'ARCH_FEATURES(SMCCC_VERSION)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.SMCCC_VERSION], expect: unsupported },
    { name: 'ARCH_FEATURES(ARCH_FEATURES)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.SMCCC_ARCH_FEATURES], expect: unsupported },
    { name: 'ARCH_FEATURES(TRNG_VERSION)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.TRNG_VERSION], expect: unsupported },
    { name: 'ARCH_FEATURES(PSCI_VERSION)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.PSCI_VERSION], expect: unsupported },
    { name: 'ARCH_FEATURES(KVM_PTP)', x: [Fid.SMCCC_ARCH_FEATURES, Fid.KVM_PTP], expect: unsupported },
    { name: 'SMCCC_ARCH_SOC_ID', x: [Fid.SMCCC_ARCH_SOC_ID, 0, ...JUNK.slice(1)], expect: unsupported },
    // the WORKAROUND calls via HVC: x0 = 0, x1 = 0, x2/x3 untouched (arch/arm64/kvm/hyp/hyp-entry.S)
    { name: 'ARCH_WORKAROUND_1', x: [Fid.ARCH_WORKAROUND_1, ...JUNK], expect: [0n, 0n, JUNK[1], JUNK[2]] },
    { name: 'ARCH_WORKAROUND_2', x: [Fid.ARCH_WORKAROUND_2, 1, ...JUNK.slice(1)], expect: [0n, 0n, JUNK[1], JUNK[2]] },
    { name: 'ARCH_WORKAROUND_3', x: [Fid.ARCH_WORKAROUND_3, ...JUNK], expect: [0n, 0n, JUNK[1], JUNK[2]] },
    // PSCI, default-allowed whatever the bitmaps say (arch/arm64/kvm/hypercalls.c)
    { name: 'PSCI_VERSION', x: [HIGH | BigInt(Fid.PSCI_VERSION), ...JUNK], expect: value(PSCI_VERSION_VALUE[e.psci]!) },
    { name: 'MIGRATE_INFO_TYPE', x: [Fid.MIGRATE_INFO_TYPE, ...JUNK], expect: value(2n) },
    { name: 'PSCI_FEATURES(SMCCC_VERSION)', x: [Fid.PSCI_FEATURES, Fid.SMCCC_VERSION, ...JUNK.slice(1)], expect: psci1 ? value(0n) : unsupported },
    { name: 'MIGRATE', x: [Fid.MIGRATE, 1], expect: unsupported },
    { name: 'MIGRATE_64', x: [Fid.MIGRATE_64, 1], expect: unsupported },
    { name: 'MIGRATE_INFO_UP_CPU', x: [Fid.MIGRATE_INFO_UP_CPU], expect: unsupported },
    { name: 'CPU_FREEZE', x: [Fid.CPU_FREEZE], expect: unsupported },
    { name: 'CPU_DEFAULT_SUSPEND', x: [Fid.CPU_DEFAULT_SUSPEND, 0, 0x4000_0000, 0], expect: unsupported },
    { name: 'NODE_HW_STATE', x: [Fid.NODE_HW_STATE, 0, 0], expect: unsupported },
    { name: 'SET_SUSPEND_MODE', x: [Fid.SET_SUSPEND_MODE, 1], expect: unsupported },
    { name: 'STAT_RESIDENCY', x: [Fid.STAT_RESIDENCY, 0, 0], expect: unsupported },
    { name: 'STAT_COUNT', x: [Fid.STAT_COUNT, 0, 0], expect: unsupported },
    { name: 'MEM_PROTECT', x: [Fid.MEM_PROTECT, 1], expect: unsupported },
    { name: 'MEM_PROTECT_CHECK_RANGE', x: [Fid.MEM_PROTECT_CHECK_RANGE, 0x4000_0000, 0x1000], expect: unsupported },
    { name: 'PSCI 0xC4000000', x: [0xc400_0000], expect: unsupported },
    { name: 'PSCI 0xC4000002', x: [0xc400_0002], expect: unsupported },
    { name: 'PSCI 0.1 CPU_SUSPEND', x: [Fid.PSCI_0_1_CPU_SUSPEND, 0], expect: unsupported },
    { name: 'PSCI 0.1 CPU_OFF', x: [Fid.PSCI_0_1_CPU_OFF], expect: unsupported },
    { name: 'PSCI 0.1 CPU_ON', x: [Fid.PSCI_0_1_CPU_ON, 1, 0x4000_0000, 0], expect: unsupported },
    { name: 'PSCI 0.1 MIGRATE', x: [Fid.PSCI_0_1_MIGRATE, 1], expect: unsupported },
    // calls that need PSCI 1.1 / 1.3 / the suspend feature, made with arguments that fail
    // without ending the run: they show whether the call is there at all
    { name: 'SYSTEM_RESET2(type 1)', x: [Fid.SYSTEM_RESET2_64, 1, 0, JUNK[2]], expect: minor >= 1 ? value(neg(2)) : unsupported },
    { name: 'SYSTEM_OFF2(type 2)', x: [Fid.SYSTEM_OFF2_64, 2, 0, JUNK[2]], expect: minor >= 3 ? value(neg(2)) : unsupported },
    // TRNG, STD_BMAP bit 0 (arch/arm64/kvm/trng.c)
    { name: 'TRNG_VERSION', x: [HIGH | BigInt(Fid.TRNG_VERSION), ...JUNK], expect: e.trng ? value(0x1_0000n) : unsupported },
    { name: 'TRNG_FEATURES(RND64)', x: [Fid.TRNG_FEATURES, Fid.TRNG_RND64, ...JUNK.slice(1)], expect: e.trng ? value(0n) : unsupported },
    { name: 'TRNG_GET_UUID', x: [Fid.TRNG_GET_UUID, ...JUNK], expect: e.trng ? TRNG_UUID : unsupported },
    { name: 'TRNG_RND32(0)', x: [Fid.TRNG_RND32, 0, ...JUNK.slice(1)], expect: e.trng ? value(0n) : unsupported },
    { name: 'TRNG_RND64(0)', x: [Fid.TRNG_RND64, 0, ...JUNK.slice(1)], expect: e.trng ? value(0n) : unsupported },
    // PV time, STD_HYP_BMAP bit 0 (answers need a stolen-time base as well; arch/arm64/kvm/pvtime.c)
    {
      name: 'PV_TIME_FEATURES(PV_TIME_FEATURES)',
      x: [Fid.PV_TIME_FEATURES, Fid.PV_TIME_FEATURES, ...JUNK.slice(1)],
      expect: e.pvTime && e.stolenTimeBase !== undefined ? value(0n) : unsupported,
    },
    { name: 'PV_TIME_ST', x: [Fid.PV_TIME_ST, ...JUNK], expect: e.pvTime && e.stolenTimeBase !== undefined ? value(e.stolenTimeBase) : unsupported },
    // vendor services, VENDOR_HYP_BMAP bits 0 (UID, FEATURES) and 1 (PTP) (arch/arm64/kvm/hypercalls.c)
    { name: 'VENDOR_CALL_UID', x: [Fid.VENDOR_CALL_UID, ...JUNK], expect: e.funcFeat ? KVM_UID : unsupported },
    {
      name: 'KVM_FEATURES',
      x: [HIGH | BigInt(Fid.KVM_FEATURES), ...JUNK],
      expect: e.funcFeat ? value((e.ptp ? 2n : 0n) | 1n) : unsupported,
    },
    { name: 'KVM_PTP(2)', x: [Fid.KVM_PTP, 2, ...JUNK.slice(1)], expect: unsupported },
    {
      name: 'KVM_PTP(virtual)',
      x: [Fid.KVM_PTP, 0, ...JUNK.slice(1)],
      expect: e.ptp
        ? (r) => {
            if (r.x[0] === ns || r.x[0]! >= 0x8000_0000n || r.x[1]! > 0xffff_ffffn || r.x[2]! > 0xffff_ffffn || r.x[3]! > 0xffff_ffffn)
              throw new Error(`PTP failed: ${r.x.map((v) => v.toString(16)).join(' ')}`);
          }
        : unsupported,
    },
    { name: 'KVM_DISCOVER_IMPL_VER', x: [Fid.KVM_DISCOVER_IMPL_VER], expect: unsupported },
    { name: 'KVM_DISCOVER_IMPL_CPUS', x: [Fid.KVM_DISCOVER_IMPL_CPUS, 0], expect: unsupported },
    { name: 'pKVM HYP_MEMINFO', x: [Fid.PKVM_HYP_MEMINFO], expect: unsupported },
    // other owners: nobody answers
    { name: 'SIP 0x82000000', x: [0x8200_0000], expect: unsupported },
    { name: 'OEM 0x83000000', x: [0x8300_0000], expect: unsupported },
    { name: 'STD_HYP 0xC5000022', x: [0xc500_0022], expect: unsupported },
    { name: 'VENDOR_HYP 0x86000002', x: [0x8600_0002], expect: unsupported },
    { name: 'TRUSTED_OS 0xB2000000', x: [0xb200_0000], expect: unsupported },
    { name: 'yielding 0x04000000', x: [0x0400_0000], expect: unsupported },
  ];
  return list.map((c) => ({ ...c, x: c.x.map((v) => BigInt.asUintN(64, BigInt(v))) }));
}

/** A script of the probe calls via `conduit`. */
export function probeScript(e: Exposure, conduit: 'hvc' | 'smc' = 'hvc', prefix = ''): Script {
  const s = new Script();
  for (const c of probe(e)) s.via(conduit, prefix + c.name, c.x[0]!, ...c.x.slice(1));
  return s;
}

/** The transcript guests/src/smccc.c mode 1 prints on a 4-vCPU VM (KVM's answers: arch/arm64/kvm/psci.c). */
export const SMP_TRANSCRIPT = [
  'affinity(1) 1', // off
  'affinity(7) -2', // no such vCPU
  'cpu_on(1) 0',
  'cpu_on(1) again -4', // ALREADY_ON (a pending CPU_ON counts as on)
  'cpu1 entry x0=fedcba9876543210 x1=0 x2=0 x3=0 context=fedcba9876543210', // context in x0, the rest reset
  'affinity(1) 0',
  'cpu_on(mpidr bit 24) -2',
  'cpu_on(mpidr bit 40) -2',
  'cpu_on(aff3=1 aff0=2) -2',
  'cpu_on(7) -2',
  'cpu_on(0, self) -4',
  'cpu_on(mpidr 0x80000001) -2', // bit 31 is not in MPIDR_HWID_BITMASK
  'cpu_on32(2) 0', // SMC32: target, entry and context truncated to 32 bits
  'cpu2 entry x0=0000000000001234 x1=0 x2=0 x3=0 context=0000000000001234',
  'cpu2 cpu_on(0) -4 affinity(self) 0',
  'cpu2 off 1',
  'affinity(3) 1',
  'affinity(0, L1) 0',
  'affinity(3, L1) 0', // Aff0 ignored at level 1: vCPUs 0..3, some on
  'affinity(0x100, L1) -2',
  'affinity(0, L2) 0',
  'affinity(0, L3) 0',
  'affinity(0x100000000, L3) -2',
  'affinity(0, L4) -2',
  'affinity(bit 24) -2',
  'affinity(mpidr 0x80000001) -2',
  'affinity64(0x100000003) -2', // Aff3 = 1: nothing matches
  'affinity32(0x100000003) 1', // truncated to vCPU 3: off
  'affinity32(1, level 0x100000000) 0', // level truncated to 0
  'affinity64(1, level 0x100000000) -2', // level > 3
  'cpu1 off 1', // CPU_OFF took effect
  'affinity(1, L0) 1',
  'affinity(1, L1) 0',
  'cpu_on(1) after off 0',
  'cpu1 entry x0=0000000000005555 x1=0 x2=0 x3=0 context=0000000000005555',
  'cpu1 off 1',
  'cpu_on(3) via smc 0',
  'cpu3 entry x0=0000000000003333 x1=0 x2=0 x3=0 context=0000000000003333',
  'cpu3 cpu_on(0) -4 affinity(self) 0',
  'cpu3 off 1',
  'cpu0: CPU_OFF',
  '',
].join('\n');
