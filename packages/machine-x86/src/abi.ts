/**
 * The guest ABI of the x86-64 machine: what a guest sees of the machine itself, whatever services
 * a build composes — where RAM and the boot structures are, the state it is entered in, its I/O
 * ports (the `x86-port` hypercall conduit, the exit port, COM1) and what the machine changes in
 * the CPUID KVM supports. Checked in as `abi.json` (canonicalJson(machineAbi(), 2)) and compared
 * release to release by the core's `classifyMachineAbiChange` (removed or changed fact: major).
 *
 * Values are read from the code that gives them to the guest: the long-mode entry from
 * `longModeSregs`/`entryRegs`, the ports from `portIo` and the COM1 model driven with synthetic
 * exits, the CPUID rules from `guestCpuid` run over a synthetic table with every bit set (which
 * bits each missing XSAVE component clears, which leaves are dropped, where the APIC id goes).
 * The CPUID values themselves are the host's (KVM_GET_SUPPORTED_CPUID) and the VM's XSAVE policy
 * (leaf 0xD), recorded per VM, not here.
 *
 * Sources: Intel SDM Vol. 2A "CPUID", Vol. 1 §13.2; Linux Documentation/virt/kvm/api.rst
 * (KVM_SET_CPUID2, KVM_EXIT_IO); Firecracker src/vmm/src/arch/x86_64 (regs.rs, gdt.rs, layout.rs);
 * the PC16550D datasheet.
 */
import type { MachineAbi, MachineRuntime, SystemEvent } from '@plugvisor/core';
import { MASK } from '@plugvisor/xsave';
import type { XsaveAbi } from '@plugvisor/xsave';
import { Layout, entryRegs, longModeSregs } from './cpu/longmode.js';
import type { Sregs } from './cpu/structs.js';
import { guestCpuid } from './cpu/cpuid.js';
import type { RawCpuidEntry } from './ffi/kvm.js';
import { portIo } from './exits.js';
import { Serial } from './devices/serial.js';
import { ENOSYS, Ports, X86_PORT_CONDUIT } from './traps.js';

export const MACHINE_PACKAGE = '@plugvisor/machine-x86';

const hex = (v: number | bigint): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
const REGS = ['eax', 'ebx', 'ecx', 'edx'] as const;

/** A port read of `size` bytes through the machine's port handler, with a fresh COM1. */
function portRead(port: number, size = 1): number {
  const bytes = new Uint8Array(64).fill(0xa5);
  portIo({ kind: 'io', out: false, size, port, count: 1, dataOffset: 8 }, bytes, new Serial(() => {}), {} as MachineRuntime, 0);
  let v = 0;
  for (let j = size - 1; j >= 0; j--) v = v * 256 + bytes[8 + j]!;
  return v;
}

/** The system event a 1-byte write of `value` to the exit port raises. */
function exitPortEvent(value: number): string {
  const bytes = new Uint8Array(16);
  bytes[8] = value;
  let event: SystemEvent | undefined;
  const runtime = { systemEvent: (e: SystemEvent) => (event = e) } as unknown as MachineRuntime;
  portIo({ kind: 'io', out: true, size: 1, port: Ports.EXIT, count: 1, dataOffset: 8 }, bytes, new Serial(() => {}), runtime, 0);
  return event?.kind ?? 'none';
}

/** Leaves of a synthetic KVM_GET_SUPPORTED_CPUID table, every register all ones. */
const SYNTHETIC_LEAVES: readonly [number, number][] = [
  [0x1, 0], [0x7, 0], [0x7, 1], [0xb, 0], [0x1d, 0], [0x1e, 0], [0x1f, 0], [0x4000_0000, 0], [0x4000_0001, 0], [0x4fff_ffff, 0], [0x8000_0001, 0],
];
const leafName = (fn: number, index: number) => `${hex(fn)}.${index}`;

function cpuidWith(xcr0: bigint, apicId = 0): Map<string, RawCpuidEntry> {
  const supported = SYNTHETIC_LEAVES.map(([fn, index]) => ({ function: fn, index, flags: 0, eax: 0xffff_ffff, ebx: 0xffff_ffff, ecx: 0xffff_ffff, edx: 0xffff_ffff }));
  const abi = { format: 1, xcr0: hex(xcr0), xss: '0x0', features: 0, standardSize: 576, compactedSize: 576, bufferSize: 4096, components: {}, signature: '' } as XsaveAbi;
  return new Map(guestCpuid(supported, abi, apicId).filter((e) => e.function !== 0xd).map((e) => [leafName(e.function, e.index), e]));
}

/** Per leaf and register, the bits set in `b` and not in `a`. */
function bitsGained(a: Map<string, RawCpuidEntry>, b: Map<string, RawCpuidEntry>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [leaf, e] of b) {
    if (!a.has(leaf)) continue; // a dropped leaf: leavesDropped
    for (const r of REGS) {
      const gained = (e[r] & ~(a.get(leaf)?.[r] ?? 0)) >>> 0;
      if (gained) out[`${leaf} ${r}`] = hex(gained);
    }
  }
  return out;
}

function cpuidFacts() {
  const base = cpuidWith(MASK.FPSSE);
  const components: Record<string, bigint> = { YMM: MASK.YMM, AVX512: MASK.AVX512, PKRU: MASK.PKRU, XTILE: MASK.XTILE };
  const everything = Object.values(components).reduce((a, b) => a | b, MASK.FPSSE);
  const gatedBy = Object.fromEntries(
    Object.entries(components).map(([name, mask]) => {
      // the bits this component brings back when it alone is missing
      const without = cpuidWith(everything & ~mask);
      const withAll = cpuidWith(everything);
      return [name, bitsGained(without, withAll)];
    }),
  );
  const dropped = (m: Map<string, RawCpuidEntry>) => SYNTHETIC_LEAVES.map(([f, i]) => leafName(f, i)).filter((l) => !m.has(l));
  const at0 = cpuidWith(everything, 0);
  const at255 = cpuidWith(everything, 0xff);
  const apicIdBits: Record<string, string> = {};
  for (const [leaf, e] of at255) {
    for (const r of REGS) {
      const d = (e[r] ^ at0.get(leaf)![r]) >>> 0;
      if (d) apicIdBits[`${leaf} ${r}`] = hex(d);
    }
  }
  return {
    description:
      "The guest's CPUID is KVM_GET_SUPPORTED_CPUID of the host, recorded per VM, with these changes: leaf 0xD is the VM's XSAVE ABI (its policy), every feature bit whose state component the VM lacks is cleared, the vCPU's APIC id written in, and KVM's paravirtual leaves left out (a Plugvisor guest's paravirtual ABI is its services').",
    leaf0xD: "the VM's XSAVE ABI (xsaveAbiOf(policy)), not the host's",
    clearedWithoutComponent: gatedBy,
    leavesDropped: { always: dropped(at0), withoutXTILE: dropped(cpuidWith(everything & ~MASK.XTILE)).filter((l) => !dropped(at0).includes(l)) },
    apicIdIn: apicIdBits,
  };
}

/** The x86 machine's guest-visible facts (plain JSON data). */
export function machineAbi(): MachineAbi {
  const sregs = longModeSregs({} as Sregs);
  const regs = entryRegs(0x100000n, 0n);
  return {
    name: MACHINE_PACKAGE,
    description:
      'The x86-64 machine on Linux KVM as a guest sees it: memory layout and boot structures, the long-mode entry state, its I/O ports (the x86-port hypercall conduit, the exit port, COM1) and the changes it makes to the CPUID KVM supports.',
    surface: {
      memoryMap: {
        description: 'Guest-physical layout (cpu/longmode.ts): RAM from 0; the boot structures the machine writes below 1 MiB; an access outside RAM (MMIO) is a guest fault.',
        ram: { base: '0x0', defaultSize: hex(Layout.DEFAULT_RAM_SIZE), minimumSize: hex(Layout.MIN_RAM) },
        gdt: hex(Layout.GDT),
        idt: hex(Layout.IDT),
        pml4: hex(Layout.PML4),
        pdpt: hex(Layout.PDPT),
        pageDirectories: hex(Layout.PD),
        identityMapped: '0x0..0xffffffff, 2 MiB pages',
        imageBase: hex(Layout.IMAGE_BASE),
        kvmTss: hex(Layout.TSS_ADDR),
        kvmIdentityMapPage: hex(Layout.IDENTITY_MAP_ADDR),
        mmio: 'guest fault',
      },
      entry: {
        description: 'vCPU 0 at the image entry; a vCPU started by powerOn likewise with RDI = its context and its own stack (0x400 lower per vCPU).',
        cr0: hex(sregs.cr0),
        cr3: hex(sregs.cr3),
        cr4: hex(sregs.cr4),
        efer: hex(sregs.efer),
        cs: hex(sregs.cs.selector),
        ds: hex(sregs.ds.selector),
        tr: hex(sregs.tr.selector),
        gdtLimit: hex(sregs.gdt.limit),
        idtLimit: hex(sregs.idt.limit),
        rflags: hex(regs.rflags),
        rsp: hex(regs.rsp),
        rdi: 'the context: 0 at boot',
      },
      ports: {
        hypercall: {
          description: 'OUT of any width; KVM has advanced RIP past it; rax = result, every other register preserved.',
          port: hex(Ports.HYPERCALL),
          conduit: X86_PORT_CONDUIT.name,
          functionId: 'eax (rax >= 2^32 is no hypercall)',
          arguments: ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'],
          result: 'rax',
          notSupported: hex(-ENOSYS),
        },
        exit: {
          description: 'OUT: a system event; the value goes to its data.',
          port: hex(Ports.EXIT),
          events: Object.fromEntries([0, 1, 2, 3].map((v) => [hex(v), exitPortEvent(v)])),
        },
        com1: {
          description: 'A 16550 subset: THR writes go to the console; no input, no interrupts.',
          ports: `${hex(Ports.COM1)}..${hex(Ports.COM1_END)}`,
          IIR: hex(portRead(Ports.COM1 + 2)),
          LCR: hex(portRead(Ports.COM1 + 3)),
          MCR: hex(portRead(Ports.COM1 + 4)),
          LSR: hex(portRead(Ports.COM1 + 5)),
          MSR: hex(portRead(Ports.COM1 + 6)),
        },
        unclaimed: { description: 'Reads of any other port return zeros, writes are dropped.', read: hex(portRead(0x80, 4)) },
      },
      cpuid: cpuidFacts(),
    },
  };
}
