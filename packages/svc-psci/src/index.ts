import { defineService, packageVersion, smcccReturn, type CallDecl, type CallHandler, type ServicePlugin, type VcpuContext, type VersionValue } from '@plugvisor/core';

/**
 * PSCI as KVM/arm64 serves it to a guest (../shared/spec/arm64-smccc.md §2; Linux
 * arch/arm64/kvm/psci.c, include/uapi/linux/psci.h). Every vCPU has KVM_ARM_VCPU_PSCI_0_2, so
 * the selectable versions are 0.2, 1.0, 1.1, 1.2 and 1.3 (default 1.3, KVM_ARM_PSCI_LATEST),
 * through KVM_REG_ARM_PSCI_VERSION with KVM's values. PSCI 0.1's KVM-private ids are not
 * answered (−1), as for any 0.2+ VM.
 *
 * Two features: `psci` (legacy-opt-out: KVM always answers PSCI) and `psci-system-suspend`
 * (opt-in, like KVM_CAP_ARM_SYSTEM_SUSPEND). A build may cap the highest version offered
 * (`maxVersion`); calls a capped build cannot offer are not declared at all.
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

export interface PsciOptions {
  /** Highest PSCI version this build offers (default 1.3). */
  readonly maxVersion?: '0.2' | '1.0' | '1.1' | '1.2' | '1.3';
}

const NAME = '@plugvisor/svc-psci';

export function createPsciService(options: PsciOptions = {}): ServicePlugin<undefined> {
  const max = options.maxVersion ?? '1.3';
  const last = PSCI_VERSIONS.findIndex((v) => v.name === max);
  if (last < 0) throw new Error(`${NAME}: maxVersion '${max}' is not one of ${PSCI_VERSIONS.map((v) => v.name).join(', ')}`);
  const versions = PSCI_VERSIONS.slice(0, last + 1);
  const offers = (v: string) => versions.some((x) => x.name === v);

  const call = (name: string, id: number, since?: string, feature = 'psci'): CallDecl => ({
    name,
    conduit: 'smccc',
    id,
    feature,
    ...(since && since !== '0.2' ? { since: { version: 'psci', minimum: since } } : {}),
  });
  const calls: CallDecl[] = [
    call('PSCI_VERSION', PSCI.VERSION),
    call('PSCI_CPU_SUSPEND', PSCI.CPU_SUSPEND),
    call('PSCI_CPU_SUSPEND_64', PSCI.CPU_SUSPEND_64),
    call('PSCI_CPU_OFF', PSCI.CPU_OFF),
    call('PSCI_CPU_ON', PSCI.CPU_ON),
    call('PSCI_CPU_ON_64', PSCI.CPU_ON_64),
    call('PSCI_AFFINITY_INFO', PSCI.AFFINITY_INFO),
    call('PSCI_AFFINITY_INFO_64', PSCI.AFFINITY_INFO_64),
    call('PSCI_MIGRATE_INFO_TYPE', PSCI.MIGRATE_INFO_TYPE),
    call('PSCI_SYSTEM_OFF', PSCI.SYSTEM_OFF),
    call('PSCI_SYSTEM_RESET', PSCI.SYSTEM_RESET),
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
      call('PSCI_FEATURES', PSCI.FEATURES, '1.0'),
      call('PSCI_SYSTEM_SUSPEND', PSCI.SYSTEM_SUSPEND, '1.0', 'psci-system-suspend'),
      call('PSCI_SYSTEM_SUSPEND_64', PSCI.SYSTEM_SUSPEND_64, '1.0', 'psci-system-suspend'),
    );
    handlers.PSCI_FEATURES = (v, b) => smcccReturn(v.regs, psciFeatures(v.regs.lo(1), b.vm.abi.versionValue('psci') & 0xffff, b.vm.abi.isEnabled('psci-system-suspend')));
    handlers.PSCI_SYSTEM_SUSPEND = (v) => systemSuspend(truncateArgs(v));
    handlers.PSCI_SYSTEM_SUSPEND_64 = systemSuspend;
  }
  if (offers('1.1')) {
    calls.push(call('PSCI_SYSTEM_RESET2', PSCI.SYSTEM_RESET2, '1.1'), call('PSCI_SYSTEM_RESET2_64', PSCI.SYSTEM_RESET2_64, '1.1'));
    handlers.PSCI_SYSTEM_RESET2 = (v) => systemReset2(truncateArgs(v));
    handlers.PSCI_SYSTEM_RESET2_64 = systemReset2;
  }
  if (offers('1.3')) {
    calls.push(call('PSCI_SYSTEM_OFF2', PSCI.SYSTEM_OFF2, '1.3'), call('PSCI_SYSTEM_OFF2_64', PSCI.SYSTEM_OFF2_64, '1.3'));
    handlers.PSCI_SYSTEM_OFF2 = (v) => systemOff2(truncateArgs(v));
    handlers.PSCI_SYSTEM_OFF2_64 = systemOff2;
  }

  return defineService<undefined>({
    name: NAME,
    version: packageVersion(import.meta.url),
    description: `PSCI ${versions[0]!.name}–${max} (KVM/arm64 guest ABI)`,
    surface: {
      features: [
        { name: 'psci', default: 'legacy-opt-out', description: 'PSCI power management (KVM always answers it)' },
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

/** SYSTEM_SUSPEND: no register is modified; the run ends with a suspend event carrying entry/context. */
function systemSuspend(v: VcpuContext): void {
  v.machine.systemEvent({ kind: 'suspend', vcpu: v.index, data: [v.regs.get(1), v.regs.get(2)] });
}

/** PSCI_FEATURES(id), as KVM: 0 for the calls it implements, the suspend and newer ones by version. */
export function psciFeatures(id: number, minor: number, suspendEnabled: boolean): number {
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
    case SMCCC_VERSION:
      return 0;
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

export default createPsciService;
