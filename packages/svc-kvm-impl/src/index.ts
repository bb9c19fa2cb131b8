import {
  capabilityOf,
  defineService,
  defineServiceFactory,
  packageVersion,
  smcccReturn,
  UsageError,
  type CallSignature,
  type ResultKind,
  type ServicePlugin,
} from '@plugvisor/core';
import { KVM_REG_ARM_VENDOR_HYP_BMAP_2 } from '@plugvisor/svc-kvm-vendor';

/**
 * KVM's "target implementation CPUs" vendor hypercalls (Linux 6.15: arch/arm64/kvm/hypercalls.c,
 * include/linux/arm-smccc.h, Documentation/virt/kvm/arm/hypercalls.rst and
 * fw-pseudo-registers.rst; the guest side is drivers/firmware/smccc/kvm_guest.c,
 * kvm_arm_target_impl_cpu_init):
 *
 *   DISCOVER_IMPL_VER   0xC6000040 (vendor function 64)            → x0 = SUCCESS (0), x1 = the
 *                       interface version in SMCCC_VERSION form (1.0 = 0x10000), x2 = the number
 *                       of implementations, x3 = 0
 *   DISCOVER_IMPL_CPUS  0xC6000041 (vendor function 65), x1 = index → x0 = SUCCESS, x1 = MIDR_EL1,
 *                       x2 = REVIDR_EL1, x3 = AIDR_EL1 of implementation `index`;
 *                       an index ≥ the count → INVALID_PARAMETER (−3), x1..x3 = 0
 *
 * Each is gated by its bit of KVM_REG_ARM_VENDOR_HYP_BMAP_2 (bit = function − 64: bit 0 VER,
 * bit 1 CPUS), reset 0 as in KVM: both opt-in. svc-kvm-vendor's KVM_FEATURES reports them in x2
 * from that register. KVM itself does not answer these calls: the VMM does (through the SMCCC
 * filter's forward-to-user action), with the implementations it was given — here, the
 * `implementations` option, or the machine's own CPU ('cpu-identity' capability) by default.
 *
 * The register is declared `listed: 'when-set'`: it appears in KVM_GET_REG_LIST (and in a VM's
 * ABI record) only for a VM that has one of the two features on, so every other VM keeps the 7
 * firmware registers it had. Linux 6.16 listed BMAP_2 for every VM and QEMU, which migrates what
 * the list names, could then no longer move those VMs to an older kernel.
 */

export const VENDOR_HYP_KVM_DISCOVER_IMPL_VER = 0xc600_0040;
export const VENDOR_HYP_KVM_DISCOVER_IMPL_CPUS = 0xc600_0041;
/** KVM_REG_ARM_VENDOR_HYP_BIT_DISCOVER_IMPL_VER / _CPUS (arch/arm64/include/uapi/asm/kvm.h). */
export const BMAP_2_BIT_DISCOVER_IMPL_VER = 0;
export const BMAP_2_BIT_DISCOVER_IMPL_CPUS = 1;
/** The interface version DISCOVER_IMPL_VER reports: 1.0 (Linux's driver takes major 1 only). */
export const DISCOVER_IMPL_VERSION = 0x1_0000;

const SMCCC_RET_SUCCESS = 0;
const SMCCC_RET_NOT_SUPPORTED = -1;
const SMCCC_RET_INVALID_PARAMETER = -3;
const U64 = (1n << 64n) - 1n;

/** One CPU implementation a guest may run on: its identification registers. */
export interface CpuImplementation {
  readonly midr: bigint;
  readonly revidr: bigint;
  readonly aidr: bigint;
}

export interface KvmImplOptions {
  /**
   * The implementations DISCOVER_IMPL_* report, at least one: a list, or as a build file writes
   * it, `midr:revidr:aidr` entries separated by commas (`0x410fd083:0x0:0x0,0x410fd0c1:0x0:0x0`).
   * Absent: the machine's own CPU, read when the guest asks.
   */
  readonly implementations?: string | readonly CpuImplementation[];
}

const ENTRY_FORM = 'midr:revidr:aidr entries separated by commas, each value a 64-bit integer (0x… or decimal)';

function parseU64(text: string, what: string): bigint {
  const t = text.trim();
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(t)) throw new UsageError(`${what}: '${text}' is not an integer (0x… or decimal)`, 'BAD_OPTION');
  const v = BigInt(t);
  if (v > U64) throw new UsageError(`${what}: ${t} does not fit in 64 bits`, 'BAD_OPTION');
  return v;
}

/**
 * The operator's list, checked: at least one entry (Linux's driver refuses a count of 0: "No
 * target implementation CPUs specified"), each three 64-bit values. A refusal is a UsageError.
 */
export function parseImplementations(spec: string | readonly CpuImplementation[]): readonly CpuImplementation[] {
  let list: CpuImplementation[];
  if (typeof spec === 'string') {
    const entries = spec.trim() === '' ? [] : spec.split(',');
    list = entries.map((e, i) => {
      const parts = e.split(':');
      if (parts.length !== 3) throw new UsageError(`implementations: entry ${i} '${e.trim()}' is not ${ENTRY_FORM}`, 'BAD_OPTION');
      const [midr, revidr, aidr] = parts.map((p, k) => parseU64(p, `implementations: entry ${i} ${['midr', 'revidr', 'aidr'][k]}`)) as [bigint, bigint, bigint];
      return { midr, revidr, aidr };
    });
  } else if (Array.isArray(spec)) {
    list = spec.map((e, i) => {
      for (const k of ['midr', 'revidr', 'aidr'] as const) {
        if (typeof e?.[k] !== 'bigint' || e[k] < 0n || e[k] > U64) throw new UsageError(`implementations: entry ${i} ${k} must be a 64-bit unsigned bigint`, 'BAD_OPTION');
      }
      return { midr: e.midr, revidr: e.revidr, aidr: e.aidr };
    });
  } else {
    throw new UsageError(`implementations must be ${ENTRY_FORM}`, 'BAD_OPTION');
  }
  if (list.length === 0) {
    throw new UsageError('implementations: at least one CPU implementation is needed (a guest refuses a count of 0: Linux kvm_arm_target_impl_cpu_init)', 'BAD_OPTION');
  }
  return Object.freeze(list.map((x) => Object.freeze(x)));
}

const BMAP_2 = 'KVM_REG_ARM_VENDOR_HYP_BMAP_2';

export function createKvmImplService(options: KvmImplOptions = {}): ServicePlugin<undefined> {
  const given = options.implementations === undefined ? undefined : parseImplementations(options.implementations);
  // With the operator's list every answer is a function of the build; without, the registers
  // DISCOVER_IMPL_CPUS returns are the machine's CPU's (a machine without 'cpu-identity', and no
  // list: both calls answer NOT_SUPPORTED, as KVM does when the VMM answers neither).
  const kind: ResultKind = given ? 'deterministic' : 'host';
  // The count is the list's length, or 1 (the machine's CPU): known either way.
  const VER_SIGNATURE: CallSignature = {
    results: [
      { reg: 0, name: 'status' },
      { reg: 1, name: 'version' },
      { reg: 2, name: 'implementations' },
      { reg: 3, name: 'reserved' },
    ],
  };
  const CPUS_SIGNATURE: CallSignature = {
    // The index is a u64 (hypercalls.rst: "(uint64) R1"); probes try both ends of the list and one past it.
    args: [{ name: 'index', reg: 1, width: 'u64', kind: 'range', min: 0, max: (given?.length ?? 1) - 1 }],
    results: [
      { reg: 0, name: 'status' },
      { reg: 1, name: 'midr', kind },
      { reg: 2, name: 'revidr', kind },
      { reg: 3, name: 'aidr', kind },
    ],
  };
  /** The list the VM sees: the operator's, else the machine's own CPU (vCPU 0's; all vCPUs are one model). */
  const implementationsOf = (machine: Parameters<typeof capabilityOf>[0]): readonly CpuImplementation[] | undefined => {
    if (given) return given;
    const own = capabilityOf(machine, 'cpu-identity')?.read(0);
    return own ? [own] : undefined;
  };
  return defineService<undefined>({
    name: '@plugvisor/svc-kvm-impl',
    version: packageVersion(import.meta.url),
    description: 'KVM DISCOVER_IMPL_VER / DISCOVER_IMPL_CPUS: the CPU implementations a guest may run on',
    requires: ['@plugvisor/svc-kvm-vendor'],
    surface: {
      features: [
        {
          name: 'kvm-discover-impl-ver',
          default: 'opt-in',
          description: 'KVM DISCOVER_IMPL_VER: the target-implementation interface version and how many CPU implementations there are',
          register: { id: KVM_REG_ARM_VENDOR_HYP_BMAP_2, name: BMAP_2, bit: BMAP_2_BIT_DISCOVER_IMPL_VER, listed: 'when-set' },
        },
        {
          name: 'kvm-discover-impl-cpus',
          default: 'opt-in',
          description: 'KVM DISCOVER_IMPL_CPUS: MIDR_EL1, REVIDR_EL1 and AIDR_EL1 of each CPU implementation',
          register: { id: KVM_REG_ARM_VENDOR_HYP_BMAP_2, name: BMAP_2, bit: BMAP_2_BIT_DISCOVER_IMPL_CPUS, listed: 'when-set' },
        },
      ],
      calls: [
        { name: 'KVM_DISCOVER_IMPL_VER', conduit: 'smccc', id: VENDOR_HYP_KVM_DISCOVER_IMPL_VER, feature: 'kvm-discover-impl-ver', signature: VER_SIGNATURE },
        { name: 'KVM_DISCOVER_IMPL_CPUS', conduit: 'smccc', id: VENDOR_HYP_KVM_DISCOVER_IMPL_CPUS, feature: 'kvm-discover-impl-cpus', signature: CPUS_SIGNATURE },
      ],
    },
    handlers: {
      KVM_DISCOVER_IMPL_VER(v) {
        const list = implementationsOf(v.machine);
        // A machine that cannot say what its CPU is, and no list: the VMM has nothing to answer.
        if (!list) return smcccReturn(v.regs, SMCCC_RET_NOT_SUPPORTED);
        smcccReturn(v.regs, SMCCC_RET_SUCCESS, DISCOVER_IMPL_VERSION, list.length, 0);
      },
      KVM_DISCOVER_IMPL_CPUS(v) {
        const r = v.regs;
        const list = implementationsOf(v.machine);
        if (!list) return smcccReturn(r, SMCCC_RET_NOT_SUPPORTED);
        const index = r.get(1);
        const impl = index < BigInt(list.length) ? list[Number(index)] : undefined;
        if (!impl) return smcccReturn(r, SMCCC_RET_INVALID_PARAMETER);
        r.set(0, 0n);
        r.set(1, impl.midr);
        r.set(2, impl.revidr);
        r.set(3, impl.aidr);
      },
    },
  });
}

/** What a build file loads: `createKvmImplService` with its option declared. */
export default defineServiceFactory<{ implementations?: string }, undefined>({
  options: {
    implementations: {
      type: 'string',
      description: `the CPU implementations DISCOVER_IMPL_CPUS reports, at least one: ${ENTRY_FORM} (default: the machine's own CPU)`,
    },
  },
  create: createKvmImplService,
});
