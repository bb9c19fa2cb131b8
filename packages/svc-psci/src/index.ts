import {
  Conduits,
  defineService,
  defineServiceFactory,
  UsageError,
  packageVersion,
  smcccReturn,
  type ArgDecl,
  type ArgWidth,
  type CallDecl,
  type CallHandler,
  type CallSignature,
  type ResultDecl,
  type ServicePlugin,
  type VcpuContext,
  type VersionValue,
} from '@plugvisor/core';

/**
 * PSCI as KVM/arm64 serves it to a guest (Linux arch/arm64/kvm/psci.c,
 * include/uapi/linux/psci.h). Every vCPU has KVM_ARM_VCPU_PSCI_0_2, so
 * the selectable versions are 0.2, 1.0, 1.1, 1.2 and 1.3 (default 1.3, KVM_ARM_PSCI_LATEST),
 * through KVM_REG_ARM_PSCI_VERSION with KVM's values. PSCI 0.1's KVM-private ids are not
 * answered (−1), as for any 0.2+ VM.
 *
 * Two features: `psci` (legacy-opt-out: KVM always answers PSCI) and `psci-system-suspend`
 * (opt-in, like KVM_CAP_ARM_SYSTEM_SUSPEND). A build may cap the highest version offered
 * (`maxVersion`); calls a capped build cannot offer are not declared at all.
 *
 * PSCI_FEATURES(SMCCC_VERSION): KVM answers 0, truthfully, because KVM always serves
 * SMCCC_VERSION (hypercalls.c kvm_smccc_default_allowed). Here SMCCC_VERSION belongs to
 * svc-smccc-arch, which a build may leave out or a VM may turn off, so PSCI_FEATURES answers 0
 * for it exactly while the VM exposes it (the default build does: the same answer as KVM) and
 * NOT_SUPPORTED otherwise — a guest that believes it may call SMCCC_VERSION gets −1 from it.
 */

export const KVM_REG_ARM_PSCI_VERSION = 0x6030_0000_0014_0000n;

export const PSCI = Object.freeze({
  VERSION: 0x8400_0000,
  CPU_SUSPEND: 0x8400_0001,
  CPU_SUSPEND_64: 0xc400_0001,
  CPU_OFF: 0x8400_0002,
  CPU_ON: 0x8400_0003,
  CPU_ON_64: 0xc400_0003,
  AFFINITY_INFO: 0x8400_0004,
  AFFINITY_INFO_64: 0xc400_0004,
  MIGRATE_INFO_TYPE: 0x8400_0006,
  SYSTEM_OFF: 0x8400_0008,
  SYSTEM_RESET: 0x8400_0009,
  FEATURES: 0x8400_000a,
  SYSTEM_SUSPEND: 0x8400_000e,
  SYSTEM_SUSPEND_64: 0xc400_000e,
  SYSTEM_RESET2: 0x8400_0012,
  SYSTEM_RESET2_64: 0xc400_0012,
  SYSTEM_OFF2: 0x8400_0015,
  SYSTEM_OFF2_64: 0xc400_0015,
});

export const PsciReturn = Object.freeze({
  SUCCESS: 0,
  NOT_SUPPORTED: -1,
  INVALID_PARAMS: -2,
  ALREADY_ON: -4,
  INTERNAL_FAILURE: -6,
});

export const PSCI_VERSIONS: readonly VersionValue[] = [
  { name: '0.2', value: 0x2 },
  { name: '1.0', value: 0x1_0000 },
  { name: '1.1', value: 0x1_0001 },
  { name: '1.2', value: 0x1_0002 },
  { name: '1.3', value: 0x1_0003 },
];

/** MPIDR_HWID_BITMASK: Aff3 (39:32) and Aff2..Aff0 (23:0). */
const HWID_MASK = 0xff_00ff_ffffn;
const SMCCC_VERSION = 0x8000_0000;
const RESET_TYPE_VENDOR_START = 0x8000_0000;
const MIGRATE_INFO_TYPE_MP = 2; // "Trusted OS is MP or not present"

/**
 * Call signatures (what each handler reads and writes), as KVM's arch/arm64/kvm/psci.c does.
 * SMC32 calls read the low halves of x1..x3: KVM narrows them in place first
 * (kvm_psci_narrow_to_32bit), which the guest sees where the call does not rewrite them
 * afterwards (SYSTEM_SUSPEND, a successful SYSTEM_RESET2). Every other answer goes through
 * smccc_set_retval(val, 0, 0, 0): x0..x3.
 */
const smcccResults = (x0: string): ResultDecl[] => [{ reg: 0, name: x0 }, { reg: 1 }, { reg: 2 }, { reg: 3 }];

/** MPIDR values of the probe machine's two vCPUs: 1 (off, so CPU_ON succeeds) first, then 0 (the caller). */
const TARGET_CPUS = [1, 0] as const;
/** SMC64 targets also read Aff3 (bits 39:32): a CPU there does not exist; a u32 reading would find CPU 0. */
const targetCpu = (width: ArgWidth): ArgDecl => ({
  name: 'target_cpu',
  reg: 1,
  width,
  kind: 'enum',
  values: width === 'u32' ? TARGET_CPUS : [...TARGET_CPUS, 0x1_0000_0000n],
});
const opaque = (name: string, reg: number, width: ArgWidth): ArgDecl => ({ name, reg, width, kind: 'opaque' });

const cpuOnSignature = (width: ArgWidth): CallSignature => ({
  args: [targetCpu(width), opaque('entry_point_address', 2, width), opaque('context_id', 3, width)],
  results: smcccResults('status'),
});

const affinityInfoSignature = (width: ArgWidth): CallSignature => ({
  args: [{ ...targetCpu(width), name: 'target_affinity' }, { name: 'lowest_affinity_level', reg: 2, width, kind: 'range', min: 0, max: 3 }],
  results: smcccResults('state'),
});

/**
 * SYSTEM_SUSPEND exits with the registers as they are (userspace reads the arguments from them):
 * SYSTEM_SUSPEND_64 writes none; the SMC32 call's only writes are KVM's narrowing of x1..x3,
 * so each of them reads back its own low half (x3 included: it is narrowed, not otherwise used).
 */
const systemSuspendSignature = (width: ArgWidth): CallSignature =>
  width === 'u64'
    ? { args: [opaque('entry_point_address', 1, 'u64'), opaque('context_id', 2, 'u64')], results: [] }
    : {
        args: [opaque('entry_point_address', 1, 'u32'), opaque('context_id', 2, 'u32'), opaque('narrowed', 3, 'u32')],
        results: [{ reg: 1, name: 'entry_point_address' }, { reg: 2, name: 'context_id' }, { reg: 3, name: 'narrowed' }],
      };

/**
 * SYSTEM_RESET2: reset_type is a u32 in both calls (`u32 arg = smccc_get_arg1()`). A valid type
 * writes only x0 (vcpu_set_reg(vcpu, 0, INTERNAL_FAILURE)) and exits; an invalid one answers
 * INVALID_PARAMETERS in x0..x3 (so x1..x3 are results the call does not always write).
 */
const RESET_TYPES = [0, 1, 0x7fff_ffff, RESET_TYPE_VENDOR_START] as const; // WARM_RESET, reserved, last reserved, vendor
const systemReset2Signature = (width: ArgWidth): CallSignature => ({
  args:
    width === 'u32'
      ? [{ name: 'reset_type', reg: 1, width, kind: 'enum', values: RESET_TYPES }, opaque('cookie', 2, width), opaque('narrowed', 3, width)]
      : [{ name: 'reset_type', reg: 1, width: 'u32', kind: 'enum', values: RESET_TYPES }, opaque('cookie', 2, width)],
  results: smcccResults('status'),
});

/** SYSTEM_OFF2: type 1 (HIBERNATE_OFF) or its alias 0 (u32), and x2 that must be zero (whole register for SMC64). */
const systemOff2Signature = (width: ArgWidth): CallSignature => ({
  args: [
    { name: 'type', reg: 1, width: 'u32', kind: 'enum', values: [1, 0] },
    { name: 'cookie', reg: 2, width, kind: 'enum', values: [0] },
  ],
  results: smcccResults('status'),
});

/** Every id PSCI_FEATURES can answer 0 for (KVM's kvm_psci_1_x_call table), and SMCCC_VERSION. */
const PSCI_FEATURE_IDS = [
  PSCI.VERSION,
  PSCI.CPU_SUSPEND,
  PSCI.CPU_SUSPEND_64,
  PSCI.CPU_OFF,
  PSCI.CPU_ON,
  PSCI.CPU_ON_64,
  PSCI.AFFINITY_INFO,
  PSCI.AFFINITY_INFO_64,
  PSCI.MIGRATE_INFO_TYPE,
  PSCI.SYSTEM_OFF,
  PSCI.SYSTEM_RESET,
  PSCI.FEATURES,
  PSCI.SYSTEM_SUSPEND,
  PSCI.SYSTEM_SUSPEND_64,
  PSCI.SYSTEM_RESET2,
  PSCI.SYSTEM_RESET2_64,
  PSCI.SYSTEM_OFF2,
  PSCI.SYSTEM_OFF2_64,
  SMCCC_VERSION,
];

/**
 * PSCI_FEATURES(psci_func_id), a u32 (`u32 arg = smccc_get_arg1()`): "supported" (≥ 0) for
 * every one of these the VM exposes, and for nothing it does not.
 */
const PSCI_FEATURES_SIGNATURE: CallSignature = {
  args: [{ name: 'psci_func_id', reg: 1, width: 'u32', kind: 'enum', values: PSCI_FEATURE_IDS }],
  results: smcccResults('status'),
  discovery: { kind: 'query', arg: 1, mustAnswer: PSCI_FEATURE_IDS },
};

export interface PsciOptions {
  /** Highest PSCI version this build offers (default 1.3). */
  readonly maxVersion?: '0.2' | '1.0' | '1.1' | '1.2' | '1.3';
}

const NAME = '@plugvisor/svc-psci';

export function createPsciService(options: PsciOptions = {}): ServicePlugin<undefined> {
  const max = options.maxVersion ?? '1.3';
  const last = PSCI_VERSIONS.findIndex((v) => v.name === max);
  if (last < 0) throw new UsageError(`${NAME}: maxVersion '${max}' is not one of ${PSCI_VERSIONS.map((v) => v.name).join(', ')}`, 'BAD_OPTION');
  const versions = PSCI_VERSIONS.slice(0, last + 1);
  const offers = (v: string) => versions.some((x) => x.name === v);

  const call = (name: string, id: number, signature: CallSignature, since?: string, feature = 'psci'): CallDecl => ({
    name,
    conduit: 'smccc',
    id,
    feature,
    ...(since && since !== '0.2' ? { since: { version: 'psci', minimum: since } } : {}),
    signature,
  });
  const calls: CallDecl[] = [
    call('PSCI_VERSION', PSCI.VERSION, { results: smcccResults('version') }),
    // power_state, entry_point and context_id are ignored: CPU_SUSPEND is WFI (kvm_psci_vcpu_suspend)
    call('PSCI_CPU_SUSPEND', PSCI.CPU_SUSPEND, { results: smcccResults('status') }),
    call('PSCI_CPU_SUSPEND_64', PSCI.CPU_SUSPEND_64, { results: smcccResults('status') }),
    call('PSCI_CPU_OFF', PSCI.CPU_OFF, { results: smcccResults('status') }),
    call('PSCI_CPU_ON', PSCI.CPU_ON, cpuOnSignature('u32')),
    call('PSCI_CPU_ON_64', PSCI.CPU_ON_64, cpuOnSignature('u64')),
    call('PSCI_AFFINITY_INFO', PSCI.AFFINITY_INFO, affinityInfoSignature('u32')),
    call('PSCI_AFFINITY_INFO_64', PSCI.AFFINITY_INFO_64, affinityInfoSignature('u64')),
    call('PSCI_MIGRATE_INFO_TYPE', PSCI.MIGRATE_INFO_TYPE, { results: smcccResults('type') }),
    // x0 preloaded with INTERNAL_FAILURE, x1..x3 zero (smccc_set_retval), then the system event
    call('PSCI_SYSTEM_OFF', PSCI.SYSTEM_OFF, { results: smcccResults('status') }),
    call('PSCI_SYSTEM_RESET', PSCI.SYSTEM_RESET, { results: smcccResults('status') }),
  ];
  const handlers: Record<string, CallHandler<undefined>> = {
    PSCI_VERSION: (v, b) => smcccReturn(v.regs, b.vm.abi.versionValue('psci')),
    PSCI_CPU_SUSPEND: cpuSuspend,
    PSCI_CPU_SUSPEND_64: cpuSuspend,
    PSCI_CPU_OFF(v) {
      smcccReturn(v.regs, PsciReturn.SUCCESS); // written, but the vCPU runs again only after a CPU_ON
      v.machine.powerOff(v.index);
    },
    PSCI_CPU_ON: (v) => cpuOn(truncateArgs(v)),
    PSCI_CPU_ON_64: cpuOn,
    PSCI_AFFINITY_INFO: (v) => affinityInfo(truncateArgs(v)),
    PSCI_AFFINITY_INFO_64: affinityInfo,
    PSCI_MIGRATE_INFO_TYPE: (v) => smcccReturn(v.regs, MIGRATE_INFO_TYPE_MP),
    PSCI_SYSTEM_OFF: (v) => systemEvent(v, 'off', []),
    PSCI_SYSTEM_RESET: (v) => systemEvent(v, 'reset', []),
  };
  if (offers('1.0')) {
    calls.push(
      call('PSCI_FEATURES', PSCI.FEATURES, PSCI_FEATURES_SIGNATURE, '1.0'),
      call('PSCI_SYSTEM_SUSPEND', PSCI.SYSTEM_SUSPEND, systemSuspendSignature('u32'), '1.0', 'psci-system-suspend'),
      call('PSCI_SYSTEM_SUSPEND_64', PSCI.SYSTEM_SUSPEND_64, systemSuspendSignature('u64'), '1.0', 'psci-system-suspend'),
    );
    handlers.PSCI_FEATURES = (v, b) => {
      const abi = b.vm.abi;
      const smcccVersion = b.vm.exposes(Conduits.smccc, SMCCC_VERSION);
      smcccReturn(v.regs, psciFeatures(v.regs.lo(1), abi.versionValue('psci') & 0xffff, abi.isEnabled('psci-system-suspend'), smcccVersion));
    };
    handlers.PSCI_SYSTEM_SUSPEND = (v) => systemSuspend(truncateArgs(v));
    handlers.PSCI_SYSTEM_SUSPEND_64 = systemSuspend;
  }
  if (offers('1.1')) {
    calls.push(
      call('PSCI_SYSTEM_RESET2', PSCI.SYSTEM_RESET2, systemReset2Signature('u32'), '1.1'),
      call('PSCI_SYSTEM_RESET2_64', PSCI.SYSTEM_RESET2_64, systemReset2Signature('u64'), '1.1'),
    );
    handlers.PSCI_SYSTEM_RESET2 = (v) => systemReset2(truncateArgs(v));
    handlers.PSCI_SYSTEM_RESET2_64 = systemReset2;
  }
  if (offers('1.3')) {
    calls.push(
      call('PSCI_SYSTEM_OFF2', PSCI.SYSTEM_OFF2, systemOff2Signature('u32'), '1.3'),
      call('PSCI_SYSTEM_OFF2_64', PSCI.SYSTEM_OFF2_64, systemOff2Signature('u64'), '1.3'),
    );
    handlers.PSCI_SYSTEM_OFF2 = (v) => systemOff2(truncateArgs(v));
    handlers.PSCI_SYSTEM_OFF2_64 = systemOff2;
  }

  return defineService<undefined>({
    name: NAME,
    version: packageVersion(import.meta.url),
    description: `PSCI ${versions[0]!.name}–${max} (KVM/arm64 guest ABI)`,
    surface: {
      features: [
        {
          name: 'psci',
          default: 'legacy-opt-out',
          description: 'PSCI power management (KVM always answers it)',
          legacy:
            'KVM has answered PSCI for every arm64 guest since its first release (PSCI 0.2 since Linux 3.16); it has no control to turn it off, only KVM_REG_ARM_PSCI_VERSION to pick the version (arch/arm64/kvm/psci.c, hypercalls.c kvm_smccc_default_allowed)',
        },
        {
          name: 'psci-system-suspend',
          default: 'opt-in',
          description: 'PSCI SYSTEM_SUSPEND (KVM_CAP_ARM_SYSTEM_SUSPEND): exits with a suspend event',
        },
      ],
      versions: [
        {
          name: 'psci',
          description: 'PSCI version the guest sees (PSCI_VERSION and which calls exist)',
          values: versions,
          default: max,
          register: { id: KVM_REG_ARM_PSCI_VERSION, name: 'KVM_REG_ARM_PSCI_VERSION' },
        },
      ],
      calls,
    },
    handlers,
  });
}

/** SMC32 variants from AArch64: KVM zeroes the upper halves of x1–x3 in place first. */
function truncateArgs(v: VcpuContext): VcpuContext {
  const w = v.regs.u32;
  w[3] = 0;
  w[5] = 0;
  w[7] = 0;
  return v;
}

/** CPU_SUSPEND behaves as WFI: power_state is ignored, register state is kept. */
function cpuSuspend(v: VcpuContext): void {
  smcccReturn(v.regs, PsciReturn.SUCCESS);
  v.machine.idle(v.index);
}

function cpuOn(v: VcpuContext): void {
  const r = v.regs;
  const target = r.get(1);
  if ((target & ~HWID_MASK) !== 0n) return smcccReturn(r, PsciReturn.INVALID_PARAMS);
  const index = v.machine.vcpuByAffinity(target);
  if (index < 0) return smcccReturn(r, PsciReturn.INVALID_PARAMS);
  if (v.machine.powerState(index) !== 'off') return smcccReturn(r, PsciReturn.ALREADY_ON);
  v.machine.powerOn(index, r.get(2), r.get(3)); // no entry-address validation, never ON_PENDING
  smcccReturn(r, PsciReturn.SUCCESS);
}

function affinityInfo(v: VcpuContext): void {
  const r = v.regs;
  const target = r.get(1);
  const level = r.get(2);
  if ((target & ~HWID_MASK) !== 0n || level > 3n) return smcccReturn(r, PsciReturn.INVALID_PARAMS);
  const mask = HWID_MASK & ~((1n << (8n * level)) - 1n);
  const want = target & mask;
  let matched = false;
  for (let i = 0; i < v.machine.vcpuCount; i++) {
    if ((v.machine.affinityOf(i) & mask) !== want) continue;
    matched = true;
    if (v.machine.powerState(i) !== 'off') return smcccReturn(r, 0); // ON (a pending CPU_ON counts as on)
  }
  smcccReturn(r, matched ? 1 : PsciReturn.INVALID_PARAMS);
}

/** SYSTEM_OFF/RESET: x0 is preloaded with INTERNAL_FAILURE, seen only if the guest is resumed. */
function systemEvent(v: VcpuContext, kind: 'off' | 'reset', data: bigint[]): void {
  smcccReturn(v.regs, PsciReturn.INTERNAL_FAILURE);
  v.machine.systemEvent({ kind, vcpu: v.index, data });
}

function systemReset2(v: VcpuContext): void {
  const r = v.regs;
  const type = r.lo(1);
  if (type !== 0 && type < RESET_TYPE_VENDOR_START) return smcccReturn(r, PsciReturn.INVALID_PARAMS);
  r.setSigned(0, PsciReturn.INTERNAL_FAILURE); // RESET2 writes only x0
  v.machine.systemEvent({ kind: 'reset', vcpu: v.index, data: [1n /* PSCI_RESET2 */, BigInt(type), r.get(2)] });
}

function systemOff2(v: VcpuContext): void {
  const r = v.regs;
  const type = r.lo(1);
  if ((type !== 0 && type !== 1) || r.get(2) !== 0n) return smcccReturn(r, PsciReturn.INVALID_PARAMS); // 0 is HIBERNATE_OFF's alias
  smcccReturn(r, PsciReturn.INTERNAL_FAILURE);
  v.machine.systemEvent({ kind: 'hibernate-off', vcpu: v.index, data: [1n /* PSCI_OFF2 */] });
}

/** SYSTEM_SUSPEND: no register is written (beyond SMC32 narrowing); the run ends with a suspend event carrying entry/context. */
function systemSuspend(v: VcpuContext): void {
  v.machine.systemEvent({ kind: 'suspend', vcpu: v.index, data: [v.regs.get(1), v.regs.get(2)] });
}

/**
 * PSCI_FEATURES(id), as KVM: 0 for the calls it implements, the suspend and newer ones by version.
 * SMCCC_VERSION is another service's call: 0 while the VM exposes it (`smcccVersion`), as KVM,
 * which always does.
 */
export function psciFeatures(id: number, minor: number, suspendEnabled: boolean, smcccVersion = true): number {
  switch (id >>> 0) {
    case PSCI.VERSION:
    case PSCI.CPU_SUSPEND:
    case PSCI.CPU_SUSPEND_64:
    case PSCI.CPU_OFF:
    case PSCI.CPU_ON:
    case PSCI.CPU_ON_64:
    case PSCI.AFFINITY_INFO:
    case PSCI.AFFINITY_INFO_64:
    case PSCI.MIGRATE_INFO_TYPE:
    case PSCI.SYSTEM_OFF:
    case PSCI.SYSTEM_RESET:
    case PSCI.FEATURES:
      return 0;
    case SMCCC_VERSION:
      return smcccVersion ? 0 : PsciReturn.NOT_SUPPORTED;
    case PSCI.SYSTEM_SUSPEND:
    case PSCI.SYSTEM_SUSPEND_64:
      return suspendEnabled ? 0 : PsciReturn.NOT_SUPPORTED;
    case PSCI.SYSTEM_RESET2:
    case PSCI.SYSTEM_RESET2_64:
      return minor >= 1 ? 0 : PsciReturn.NOT_SUPPORTED;
    case PSCI.SYSTEM_OFF2:
    case PSCI.SYSTEM_OFF2_64:
      return minor >= 3 ? 1 /* HIBERNATE_OFF */ : PsciReturn.NOT_SUPPORTED;
    default:
      return PsciReturn.NOT_SUPPORTED;
  }
}

/** What a build file loads: `createPsciService` with its options declared. */
export default defineServiceFactory<PsciOptions, undefined>({
  options: {
    maxVersion: { type: 'enum', values: PSCI_VERSIONS.map((v) => v.name), description: 'highest PSCI version this build offers (default 1.3)' },
  },
  create: createPsciService,
});
