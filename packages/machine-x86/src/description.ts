import type { GuestXsavePolicy, XsaveAbi } from '@plugvisor/xsave';
import type { RawCpuidEntry } from './ffi/kvm.js';
import { StateReader } from '@plugvisor/core';
import { validateSerialState, type SerialState } from './devices/serial.js';
import { validateCpuidEntries } from './cpu/cpuid.js';

/** The board and device state a snapshot carries beside the per-vCPU blobs. */
export interface X86MachineDescription {
  readonly board: 'plugvisor-pc';
  readonly schema: 1;
  readonly ramSize: number;
  readonly vcpus: number;
  readonly irqchip: boolean;
  readonly serial: SerialState;
  readonly nextVcpu: number;
  /** The VM's xfeature set (ABI): a destination must support every component, at the same place. */
  readonly xsave: XsaveAbi;
  /** vCPU 0's guest CPUID (leaf 1 / 0xB APIC ids are per vCPU and rewritten). */
  readonly cpuid: readonly RawCpuidEntry[];
  /**
   * VM-level KVM state (Firecracker's VmState): kvmclock (KVM_GET_CLOCK's clock, ns) and, with
   * the irqchip, the PIC master, PIC slave and IOAPIC (KVM_GET_IRQCHIP, 520 bytes each, hex).
   */
  readonly vm?: { readonly clock: bigint; readonly irqchip: readonly string[] | null };
}

export interface X86MachineOptions {
  /** Number of vCPUs (default 1). vCPU 0 boots; the others start powered off. */
  vcpus?: number;
  /** Guest RAM size in bytes (default 128 MiB; multiple of 4 KiB, at least 2 MiB, at most 3 GiB). */
  memSize?: number;
  /** Receives console output (COM1 THR writes). Default: process.stdout. */
  console?: (bytes: Uint8Array) => void;
  /**
   * The VM's XSAVE policy (CPUID 0xD it is shown): default everything KVM supports here except
   * dynamic (AMX) components, the supervisor set KVM reports and its 0xD.1 features. A pool
   * baseline's `policy` makes a VM that can move among the pool's hosts.
   */
  xsave?: GuestXsavePolicy;
  /** Create the in-kernel irqchip (default: when KVM has KVM_CAP_IRQCHIP). */
  irqchip?: boolean;
  /** @internal restore: the source's xsave ABI and guest CPUID, used instead of deriving them. */
  restore?: { readonly xsave: XsaveAbi; readonly cpuid: readonly RawCpuidEntry[] };
}

/**
 * Validates a snapshot's machine description for `vcpuRecords` vCPU blobs: the one check both
 * the restore dry run (checkX86Snapshot) and X86Machine.fromImage use. Throws StateError naming
 * the field. (Whether this host can run the xsave ABI and CPUID is checkX86Snapshot's.)
 */
export function validateX86Description(value: unknown, vcpuRecords: number): X86MachineDescription {
  const r = new StateReader('x86 machine description', value);
  if (r.raw('board') !== 'plugvisor-pc' || r.raw('schema') !== 1) r.fail('board', 'is not a plugvisor-pc x86 board (description schema 1)');
  const vcpus = r.int('vcpus', 1, 255);
  if (vcpus !== vcpuRecords) r.fail('vcpus', `is ${vcpus} but the snapshot has ${vcpuRecords} vCPU records`);
  const ramSize = r.int('ramSize', 1, 0xc000_0000);
  if (ramSize % 4096 !== 0) r.fail('ramSize', `${ramSize} is not a multiple of 4 KiB`);
  const irqchip = r.bool('irqchip');
  const nextVcpu = r.int('nextVcpu', 0, vcpus - 1);
  const serial = validateSerialState(r.raw('serial'), 'x86 machine description serial');
  const cpuid = validateCpuidEntries(r.raw('cpuid'), 'x86 machine description');
  const xsave = r.object('xsave') && (r.raw('xsave') as XsaveAbi);
  const d = { board: 'plugvisor-pc', schema: 1, ramSize, vcpus, irqchip, serial, nextVcpu, xsave, cpuid } as const;
  if (r.raw('vm') === undefined) return d;
  const vm = r.object('vm');
  const clock = vm.raw('clock');
  if (typeof clock !== 'bigint' || clock < 0n || clock >= 1n << 64n) vm.fail('clock', 'is not a u64');
  const chips = vm.raw('irqchip');
  if (chips !== null && (!Array.isArray(chips) || chips.length !== 3 || !chips.every((c) => typeof c === 'string' && /^[0-9a-f]{1040}$/.test(c)))) vm.fail('irqchip', 'is not three 520-byte kvm_irqchip records');
  if (chips !== null && !irqchip) vm.fail('irqchip', 'holds records for a machine without the irqchip');
  return { ...d, vm: { clock: clock as bigint, irqchip: chips as string[] | null } };
}
