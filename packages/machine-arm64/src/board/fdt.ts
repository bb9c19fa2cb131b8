/**
 * The board's flattened device tree: a small FDT writer (version 17) and the tree QEMU's arm
 * `virt` machine gives a guest (QEMU hw/arm/virt.c: create_fdt, fdt_add_cpu_nodes,
 * fdt_add_psci_node, fdt_add_timer_nodes, create_gic, create_uart), built from plain data so it
 * can be checked without a machine.
 *
 * Format (Devicetree Specification v0.4, chapter 5 "Flattened Devicetree (DTB) Format"): a
 * 40-byte header, the memory reservation map (pairs of big-endian u64 address/size, ended by a
 * 0/0 pair, 8-byte aligned), the structure block (big-endian u32 tokens FDT_BEGIN_NODE,
 * FDT_PROP, FDT_END_NODE, FDT_END; names and values padded to 4 bytes), then the strings block
 * (NUL-terminated property names, shared). All values are big-endian.
 */

/** Devicetree Specification v0.4 §5.2 (the header's magic) and §5.4.1 (the structure block's tokens). */
export const FDT_MAGIC = 0xd00dfeed;
export const FDT_BEGIN_NODE = 1;
export const FDT_END_NODE = 2;
export const FDT_PROP = 3;
export const FDT_NOP = 4;
export const FDT_END = 9;
/** The version written, and the oldest version it is compatible with (§5.2: 17 and 16). */
export const FDT_VERSION = 17;
export const FDT_LAST_COMP_VERSION = 16;
const HEADER_SIZE = 40;

/** A property value: a string (one NUL-terminated string), a string list, u32 cells, or raw bytes. */
export type FdtValue = string | readonly string[] | readonly number[] | Uint8Array | null;

/** A node: its name (with unit address), properties in order, children in order. */
export interface FdtNode {
  readonly name: string;
  readonly props: ReadonlyArray<readonly [string, FdtValue]>;
  readonly children: readonly FdtNode[];
}

export interface FdtReservation {
  readonly address: bigint;
  readonly size: bigint;
}

const enc = new TextEncoder();

/** A property's bytes: strings NUL-terminated, u32 cells big-endian, null empty (a boolean property). */
export function encodeValue(v: FdtValue): Uint8Array {
  if (v === null) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return enc.encode(v + '\0');
  if (v.length > 0 && typeof v[0] === 'string') return enc.encode((v as readonly string[]).map((s) => s + '\0').join(''));
  const cells = v as readonly number[];
  const out = new Uint8Array(cells.length * 4);
  const dv = new DataView(out.buffer);
  cells.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c > 0xffff_ffff) throw new RangeError(`FDT cell ${c} is not a u32`);
    dv.setUint32(i * 4, c);
  });
  return out;
}

/** A 64-bit number as two cells (high, low), for #address-cells/#size-cells = 2. */
export function cells64(n: bigint): [number, number] {
  if (n < 0n || n >= 1n << 64n) throw new RangeError(`FDT value ${n} is not a u64`);
  return [Number(n >> 32n), Number(n & 0xffff_ffffn)];
}

/** Writes a tree as a DTB (version 17, boot CPU 0). */
export function writeFdt(root: FdtNode, reservations: readonly FdtReservation[] = [], bootCpu = 0): Uint8Array {
  const struct: number[] = [];
  const strings: number[] = [];
  const stringOffsets = new Map<string, number>();
  const u32 = (n: number) => struct.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const bytes = (b: Uint8Array) => {
    for (const x of b) struct.push(x);
    while (struct.length % 4) struct.push(0);
  };
  const nameOffset = (name: string) => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      for (const x of enc.encode(name + '\0')) strings.push(x);
      stringOffsets.set(name, off);
    }
    return off;
  };
  const node = (n: FdtNode) => {
    u32(FDT_BEGIN_NODE);
    bytes(enc.encode(n.name + '\0'));
    for (const [name, value] of n.props) {
      const v = encodeValue(value);
      u32(FDT_PROP);
      u32(v.length);
      u32(nameOffset(name));
      bytes(v);
    }
    for (const c of n.children) node(c);
    u32(FDT_END_NODE);
  };
  node(root);
  u32(FDT_END);

  const offRsv = HEADER_SIZE; // 40: already 8-byte aligned (§5.3.1)
  const rsvSize = (reservations.length + 1) * 16;
  const offStruct = offRsv + rsvSize;
  const offStrings = offStruct + struct.length;
  const total = (offStrings + strings.length + 7) & ~7;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const header = [FDT_MAGIC, total, offStruct, offStrings, offRsv, FDT_VERSION, FDT_LAST_COMP_VERSION, bootCpu, strings.length, struct.length];
  header.forEach((h, i) => dv.setUint32(i * 4, h));
  reservations.forEach((r, i) => {
    dv.setBigUint64(offRsv + i * 16, r.address);
    dv.setBigUint64(offRsv + i * 16 + 8, r.size);
  });
  out.set(struct, offStruct);
  out.set(strings, offStrings);
  return out;
}

// ---- the board's tree ---------------------------------------------------------------------------

/** What the tree describes: plain data, so a test needs no machine. */
export interface BoardDescription {
  readonly ramBase: bigint;
  readonly ramSize: bigint;
  /** Each vCPU's MPIDR affinity (Aff3..Aff0), vCPU 0 first (Arm64Machine.affinityOf). */
  readonly cpuAffinities: readonly bigint[];
  /** PSCI conduit: how the guest calls firmware (the `psci` node's `method`). */
  readonly psciMethod: 'hvc' | 'smc';
  readonly uartBase: bigint;
  readonly uartSize: bigint;
  readonly gicDistBase: bigint;
  readonly gicDistSize: bigint;
  readonly gicCpuBase: bigint;
  readonly gicCpuSize: bigint;
  /** The kernel command line (`/chosen/bootargs`). */
  readonly bootargs: string;
  /** An initrd's guest-physical [start, end) (`/chosen/linux,initrd-start|end`). */
  readonly initrd?: { readonly start: bigint; readonly end: bigint };
}

/** Phandles, as QEMU virt allocates them: any distinct non-zero values do. */
const PHANDLE_GIC = 0x8001;
const PHANDLE_APB_PCLK = 0x8000;
/** include/dt-bindings/interrupt-controller/arm-gic.h: GIC_SPI 0, GIC_PPI 1; irq.h: IRQ_TYPE_LEVEL_HIGH 4. */
const GIC_SPI = 0;
const GIC_PPI = 1;
const IRQ_TYPE_LEVEL_HIGH = 4;
/** QEMU virt's UART0 interrupt: SPI 1 (hw/arm/virt.c a15irqmap[VIRT_UART]). */
const UART_SPI = 1;
/** QEMU virt's apb-pclk: a 24 MHz fixed clock (hw/arm/virt.c create_fdt). */
const APB_PCLK_HZ = 24_000_000;

const hex = (n: bigint) => n.toString(16);

/** The board's device tree (a QEMU-virt-like tree), as a DTB. */
export function boardFdt(b: BoardDescription): Uint8Array {
  return writeFdt(boardTree(b));
}

/** The board's device tree as nodes (what boardFdt writes; machineAbi declares it). */
export function boardTree(b: BoardDescription): FdtNode {
  if (b.cpuAffinities.length < 1) throw new RangeError('a board has at least one CPU');
  const reg2 = (base: bigint, size: bigint) => [...cells64(base), ...cells64(size)];
  // QEMU virt (fdt_add_cpu_nodes) uses one address cell unless some affinity needs Aff3.
  const wide = b.cpuAffinities.some((a) => a > 0xffff_ffffn);
  const cpus: FdtNode[] = b.cpuAffinities.map((aff) => ({
    name: `cpu@${hex(aff)}`,
    props: [
      ['device_type', 'cpu'],
      ['compatible', 'arm,armv8'],
      ['reg', wide ? cells64(aff) : [Number(aff)]],
      ['enable-method', 'psci'],
    ],
    children: [],
  }));
  // Timer PPIs (hw/arm/virt.c fdt_add_timer_nodes): secure 13, non-secure 14, virtual 11,
  // hypervisor 10, level-high; on a GICv2 the flags also carry the CPU mask in bits [15:8].
  const ppiFlags = IRQ_TYPE_LEVEL_HIGH | ((((1 << Math.min(b.cpuAffinities.length, 8)) - 1) & 0xff) << 8);
  const uartPath = `/pl011@${hex(b.uartBase)}`;
  const chosen: Array<[string, FdtValue]> = [
    ['bootargs', b.bootargs],
    ['stdout-path', uartPath],
  ];
  if (b.initrd) {
    chosen.push(['linux,initrd-start', cells64(b.initrd.start)], ['linux,initrd-end', cells64(b.initrd.end)]);
  }
  const root: FdtNode = {
    name: '',
    props: [
      ['compatible', 'linux,dummy-virt'],
      ['#address-cells', [2]],
      ['#size-cells', [2]],
      ['interrupt-parent', [PHANDLE_GIC]],
    ],
    children: [
      { name: 'chosen', props: chosen, children: [] },
      { name: `memory@${hex(b.ramBase)}`, props: [['device_type', 'memory'], ['reg', reg2(b.ramBase, b.ramSize)]], children: [] },
      { name: 'cpus', props: [['#address-cells', [wide ? 2 : 1]], ['#size-cells', [0]]], children: cpus },
      { name: 'psci', props: [['compatible', ['arm,psci-1.0', 'arm,psci-0.2']], ['method', b.psciMethod]], children: [] },
      {
        name: 'apb-pclk',
        props: [
          ['compatible', 'fixed-clock'],
          ['#clock-cells', [0]],
          ['clock-frequency', [APB_PCLK_HZ]],
          ['clock-output-names', 'clk24mhz'],
          ['phandle', [PHANDLE_APB_PCLK]],
        ],
        children: [],
      },
      {
        name: `pl011@${hex(b.uartBase)}`,
        props: [
          ['compatible', ['arm,pl011', 'arm,primecell']],
          ['reg', reg2(b.uartBase, b.uartSize)],
          ['interrupts', [GIC_SPI, UART_SPI, IRQ_TYPE_LEVEL_HIGH]],
          ['clocks', [PHANDLE_APB_PCLK, PHANDLE_APB_PCLK]],
          ['clock-names', ['uartclk', 'apb_pclk']],
        ],
        children: [],
      },
      {
        name: `intc@${hex(b.gicDistBase)}`,
        props: [
          ['compatible', 'arm,cortex-a15-gic'],
          ['#interrupt-cells', [3]],
          ['interrupt-controller', null],
          // As QEMU virt's create_gic (room for a GICv2m child): an interrupt provider states
          // #address-cells (Linux scripts/dtc/checks.c check_interrupt_provider).
          ['#address-cells', [2]],
          ['#size-cells', [2]],
          ['ranges', null],
          ['reg', [...reg2(b.gicDistBase, b.gicDistSize), ...reg2(b.gicCpuBase, b.gicCpuSize)]],
          ['phandle', [PHANDLE_GIC]],
        ],
        children: [],
      },
      {
        name: 'timer',
        props: [
          ['compatible', 'arm,armv8-timer'],
          ['interrupts', [GIC_PPI, 13, ppiFlags, GIC_PPI, 14, ppiFlags, GIC_PPI, 11, ppiFlags, GIC_PPI, 10, ppiFlags]],
          ['always-on', null],
        ],
        children: [],
      },
    ],
  };
  return root;
}
