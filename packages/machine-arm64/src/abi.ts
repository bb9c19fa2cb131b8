/**
 * The guest ABI of the arm64 board: what a guest reads, traps into and is told by this machine,
 * whatever services a build composes. Checked in as `abi.json` (canonicalJson(machineAbi(), 2)),
 * compared release to release by the core's `classifyMachineAbiChange`: a fact removed or changed
 * needs a major version of this package, a new one a minor.
 *
 * Every value is read from the code that gives it to the guest, not restated: the distributor's
 * and CPU interface's registers are read from fresh device models (devices/gicd.ts, gicc.ts),
 * trigger modes from GICD_ICFGR, the UART's from the PL011 model, the trap routing from
 * traps.ts's decoders, MPIDR from the vCPU's affinity function, the device tree from the tree
 * the Linux loader writes (board/fdt.ts). Facts the engine supplies (CNTFRQ_EL0, the ID registers'
 * other fields) are the values the machine promises; `src/abi-guest.test.ts` runs a real guest
 * that reads them back and compares with this manifest.
 *
 * Sources: Arm IHI 0048B (GICv2) for GICD/GICC registers; Arm ARM DDI 0487 for MPIDR_EL1,
 * ID_AA64PFR0_EL1, ESR_EL1, CNTFRQ_EL0, CNTHCTL_EL2; QEMU hw/arm/virt.c for the board;
 * Linux Documentation/arch/arm64/booting.rst for the Image boot; Devicetree Specification v0.4.
 */
import { Conduits, type MachineAbi } from '@plugvisor/core';
import { Layout } from './board/layout.js';
import { boardTree, type FdtNode, type FdtValue } from './board/fdt.js';
import { virtBoard } from './loader/linux-image.js';
import { GicCpuInterface, GICC_IIDR, DEFAULT_EDGE_INTIDS } from './devices/gicc.js';
import { GicDistributor, GICD_LINES, GICD_MAX_CPUS } from './devices/gicd.js';
import { COUNTER_HZ, TIMER_INTID, TimerId } from './devices/generic-timer.js';
import { Pl011 } from './devices/pl011.js';
import { CNTHCTL_EL1_ACCESS, EC, ESR_IL, MPIDR_AFF_MASK, MPIDR_RES1, SANITISED_ID_REGISTERS, affinityOfIndex } from './cpu/vcpu.js';
import { MODE_EL1H, PSTATE_DAIF } from './cpu/sysregs.js';
import { HVC_IMMEDIATES, SMC_UNKNOWN_IMM_X0, XEN_HVC_IMM, hvcConduit, smcConduit } from './traps.js';

export const MACHINE_PACKAGE = '@plugvisor/machine-arm64';

/** The VMs that keep the machine's rules from before personalities (snapshot descriptions without the field). */
const LEGACY_VMS = 'VMs restored from snapshots whose machine description has no hvcImmediates (taken before personalities)';

const hex = (v: number | bigint): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
const u32hex = (v: number): string => hex(v >>> 0);

/** The GICD_ICFGR offset and bit of an INTID's trigger (IHI 0048B 4.3.13: 2 bits per INTID, bit 1 = edge). */
const icfgrOf = (intid: number) => ({ offset: 0xc00 + (intid >> 4) * 4, bit: 2 * (intid & 15) + 1 });

/** A fresh distributor with `n` CPU interfaces, at reset: the state a guest first reads. */
function freshGic(n: number): { gicd: GicDistributor; cpus: GicCpuInterface[] } {
  const cpus = Array.from({ length: n }, () => new GicCpuInterface());
  return { gicd: new GicDistributor(cpus, () => {}), cpus };
}

/** One device-tree property as a fact: strings as they are, cells as hex, a boolean property as true. */
function propFact(v: FdtValue): unknown {
  if (v === null) return true;
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return `0x${Buffer.from(v).toString('hex')}`;
  if (v.length > 0 && typeof v[0] === 'string') return [...(v as readonly string[])];
  return (v as readonly number[]).map((c) => u32hex(c));
}

/** The tree's nodes by path, their properties as facts (the operator's /chosen values left out). */
function treeFacts(root: FdtNode): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  const OPERATOR = new Set(['bootargs', 'linux,initrd-start', 'linux,initrd-end']);
  const walk = (n: FdtNode, path: string) => {
    const props: Record<string, unknown> = {};
    for (const [k, v] of n.props) if (!(path === '/chosen' && OPERATOR.has(k))) props[k] = propFact(v);
    out[path] = props;
    for (const c of n.children) walk(c, path === '/' ? `/${c.name}` : `${path}/${c.name}`);
  };
  walk(root, '/');
  return out;
}

/** The INTID of the UART's interrupt, from its device-tree node (`interrupts = <GIC_SPI n flags>`). */
function uartIntid(root: FdtNode): number {
  const node = root.children.find((c) => c.name.startsWith('pl011@'));
  const cells = node?.props.find(([k]) => k === 'interrupts')?.[1] as readonly number[] | undefined;
  if (!cells || cells.length !== 3) throw new Error('the board tree has no PL011 interrupt');
  return (cells[0] === 0 ? 32 : 16) + cells[1]!;
}

/** The arm64 board's guest-visible facts (plain JSON data). */
export function machineAbi(): MachineAbi {
  const vcpus = Array.from({ length: GICD_MAX_CPUS }, (_, i) => i + 1);
  const { gicd, cpus } = freshGic(1);
  const trigger = (intid: number) => {
    const { offset, bit } = icfgrOf(intid);
    return (gicd.read(0, offset, 4) >>> bit) & 1 ? 'edge' : 'level';
  };
  // The tree a 1-vCPU VM with the default RAM gets (the CPU nodes and the timer's CPU mask follow
  // the vCPU count, the memory node the RAM size).
  const tree = boardTree({ ...virtBoard(Layout.DEFAULT_RAM_SIZE, [affinityOfIndex(0)]), bootargs: '' });
  const uart = new Pl011(() => {});
  const uartSpi = uartIntid(tree);
  const conduitName = (c: ReturnType<typeof hvcConduit>) => (c === undefined ? undefined : c.name);
  const mpidrSamples = [0, 1, 7, 15, 16, 255, 256, 4095, 4096];

  return {
    name: MACHINE_PACKAGE,
    description:
      'The arm64 board (QEMU virt-like: GICv2, EL1 generic timers, PL011) as a guest sees it: memory map, interrupt controller, timer, trap routing, CPU identification and the device tree a Linux Image is booted with.',
    surface: {
      memoryMap: {
        description: 'Guest-physical regions (board/layout.ts). Any other access is a guest fault that ends the run.',
        ram: { base: hex(Layout.RAM_BASE), defaultSize: hex(Layout.DEFAULT_RAM_SIZE) },
        trampolineRom: { base: hex(Layout.ROM_BASE), size: hex(Layout.ROM_SIZE), access: 'read-only' },
        gicDistributor: { base: hex(Layout.GICD_BASE), size: hex(Layout.GICD_SIZE) },
        gicCpuInterface: { base: hex(Layout.GICC_BASE), size: hex(Layout.GICC_SIZE) },
        uart: { base: hex(Layout.UART_BASE), size: hex(Layout.UART_SIZE) },
        elsewhere: 'guest fault',
      },
      boot: {
        description: 'The boot vCPU (Arm64Machine.boot) and a vCPU started by PSCI CPU_ON: EL1h, MMU off, D/A/I/F masked.',
        pstate: hex(MODE_EL1H | PSTATE_DAIF),
        x0: 'the context: 0 for an ELF or raw image, the device tree for a Linux Image, CPU_ON context_id',
        cpuOnEndianness: {
          description: "SCTLR_EL1.EE of a vCPU started by PSCI CPU_ON, by the machine description's cpuOnEndianness (Arm64Machine.powerOn); the boot vCPU and a host's powerOn start little-endian.",
          caller: "the calling vCPU's SCTLR_EL1.EE at the CPU_ON call (KVM: kvm_psci_vcpu_on, kvm_reset_vcpu)",
          little: { affects: 'VMs restored from snapshots whose machine description has no cpuOnEndianness (taken before it)', SCTLR_EL1_EE: hex(0) },
        },
      },
      gic: {
        description: 'A GICv2 (Arm IHI 0048B): one distributor serving up to 8 vCPUs, a CPU interface per vCPU.',
        architecture: `GICv${(cpus[0]!.read(0x0fc) >>> 16) & 0xf}`,
        maxVcpus: GICD_MAX_CPUS,
        distributor: {
          GICD_TYPER: {
            description: 'By vCPU count: ITLinesNumber (bits 4:0), CPUNumber = vCPUs - 1 (bits 7:5), no Security Extensions.',
            ...Object.fromEntries(vcpus.map((n) => [`${n}vcpu`, u32hex(freshGic(n).gicd.read(0, 0x004, 4))])),
          },
          GICD_IIDR: u32hex(gicd.read(0, 0x008, 4)),
          intids: GICD_LINES,
          spis: GICD_LINES - 32,
          resetState: {
            description: 'Chosen so that guests that never program the distributor see every interrupt delivered.',
            GICD_CTLR: u32hex(gicd.read(0, 0x000, 4)),
            GICD_ISENABLER0: u32hex(gicd.read(0, 0x100, 4)),
            GICD_ISENABLER1: u32hex(gicd.read(0, 0x104, 4)),
            GICD_IPRIORITYR0: u32hex(gicd.read(0, 0x400, 4)),
            GICD_ICFGR0: u32hex(gicd.read(0, 0xc00, 4)),
            GICD_ICFGR1: u32hex(gicd.read(0, 0xc04, 4)),
            GICD_ICFGR2: u32hex(gicd.read(0, 0xc08, 4)),
          },
          idRegisters: Object.fromEntries(
            ['PIDR4', 'PIDR5', 'PIDR6', 'PIDR7', 'PIDR0', 'PIDR1', 'PIDR2', 'PIDR3', 'CIDR0', 'CIDR1', 'CIDR2', 'CIDR3'].map((name, i) => [name, u32hex(gicd.read(0, 0xfd0 + 4 * i, 4))]),
          ),
        },
        cpuInterface: { GICC_IIDR: u32hex(cpus[0]!.read(0x0fc)) },
        interrupts: {
          description: 'Trigger mode at reset (GICD_ICFGR); a guest may reprogram PPIs and SPIs, SGIs are always edge.',
          [TIMER_INTID[TimerId.Virtual]]: { description: 'EL1 virtual timer', trigger: trigger(TIMER_INTID[TimerId.Virtual]) },
          [TIMER_INTID[TimerId.Physical]]: { description: 'EL1 physical timer', trigger: trigger(TIMER_INTID[TimerId.Physical]) },
          ...Object.fromEntries(DEFAULT_EDGE_INTIDS.map((id) => [id, { description: "Xen's event-channel upcall PPI", trigger: trigger(id) }])),
          [uartSpi]: { description: 'PL011 UART (raises none)', trigger: trigger(uartSpi) },
        },
      },
      timer: {
        description: "The EL1 physical and virtual generic timers (Arm ARM D11), emulated by the machine; the virtual counter starts at 0 when the VM is made and continues across snapshots.",
        CNTFRQ_EL0: COUNTER_HZ,
        physicalTimerIntid: TIMER_INTID[TimerId.Physical],
        virtualTimerIntid: TIMER_INTID[TimerId.Virtual],
        CNTHCTL_EL2: { description: 'EL1PCTEN | EL1PCEN: EL1 reads CNTPCT_EL0 and uses the physical timer without trapping.', value: hex(CNTHCTL_EL1_ACCESS) },
      },
      traps: {
        description: 'How a trapping instruction reaches a conduit (traps.ts). PC is past the HVC/SMC when a conduit answers.',
        hvc: {
          '0x0': conduitName(hvcConduit(0, 'legacy')),
          description:
            "A non-zero immediate routes by the VM's HVC personality (traps.ts HvcImmediates), recorded in the snapshot's machine description: the build's unless the operator chose one.",
          ...Object.fromEntries(
            [XEN_HVC_IMM, 0x123].map((imm) => [
              imm === XEN_HVC_IMM ? hex(imm) : 'other',
              Object.fromEntries(
                HVC_IMMEDIATES.map((p) => {
                  const c = hvcConduit(imm, p);
                  const fact = c !== undefined ? conduitName(c) : { result: 'UNDEFINED', ESR_EL1: hex(ESR_IL | (BigInt(EC.UNKNOWN) << 26n)), ELR_EL1: p === 'xen' ? 'past the HVC' : 'the HVC instruction' };
                  if (p !== 'legacy') return [p, fact];
                  return [p, typeof fact === 'string' ? { affects: LEGACY_VMS, conduit: fact } : { affects: LEGACY_VMS, ...fact }];
                }),
              ),
            ]),
          ),
          personality: {
            description: 'The HVC personality a VM gets when its machine is made (traps.ts personalityOf), unless the operator chose one (the machine option hvcImmediates).',
            kvm: 'a build whose services answer SMCCC calls and no Xen ones',
            'kvm-xen': 'a build whose services answer SMCCC and Xen calls (the default build)',
            xen: 'a build whose services answer Xen calls and no SMCCC ones',
          },
        },
        smc: {
          '0x0': conduitName(smcConduit(0)),
          other: smcConduit(1) === undefined ? { x0: hex(SMC_UNKNOWN_IMM_X0), otherRegisters: 'unchanged' } : conduitName(smcConduit(1)),
        },
        conduits: Object.fromEntries([Conduits.smccc, Conduits.xen].map((c) => [c.name, { functionIdRegister: `${c.functionIdHighWord === undefined ? 'w' : 'x'}${c.functionIdWord >> 1}`, resultRegisters: c.resultRegisters.map((r) => `x${r}`) }])),
      },
      cpu: {
        MPIDR_EL1: {
          description: "KVM's vCPU index → affinity (arch/arm64/kvm/sys_regs.c reset_mpidr): Aff0 = n & 0xf, Aff1 = (n >> 4) & 0xff, Aff2 = (n >> 12) & 0xff; bit 31 RES1, U = 0, MT = 0.",
          res1: hex(MPIDR_RES1),
          affinityMask: hex(MPIDR_AFF_MASK),
          byVcpu: Object.fromEntries(mpidrSamples.map((n) => [`vcpu${n}`, hex(MPIDR_RES1 | affinityOfIndex(n))])),
        },
        idRegisters: {
          description: "Reads of the ID registers (op0 3, op1 0, CRn 0) trap to the machine (HCR_EL2.TID3, with the CPU internals: README \"CPU\"); these bits read 0, the rest as the CPU model (Unicorn 2.1's QEMU 'max') has them. SVE is hidden: an SVE instruction is UNDEFINED.",
          sanitised: Object.fromEntries(SANITISED_ID_REGISTERS.map((r) => [r.name, { clears: hex(r.clear) }])),
        },
      },
      uart: {
        description: 'A PL011 (ARM DDI 0183) as far as a console needs: DR writes go to the console; no input, no interrupts.',
        UARTFR: u32hex(uart.read(0x018)),
        idRegisters: Object.fromEntries(
          ['PeriphID0', 'PeriphID1', 'PeriphID2', 'PeriphID3', 'PCellID0', 'PCellID1', 'PCellID2', 'PCellID3'].map((name, i) => [name, u32hex(uart.read(0xfe0 + 4 * i))]),
        ),
      },
      deviceTree: {
        affects: 'VMs booted from a Linux Image (the device tree is passed in x0)',
        description: "The tree a Linux Image is booted with (board/fdt.ts, like QEMU virt's), as given to a 1-vCPU VM with the default RAM: node path → properties (cells in hex, a boolean property true); /chosen's bootargs and initrd are the operator's.",
        nodes: treeFacts(tree),
      },
    },
  };
}
