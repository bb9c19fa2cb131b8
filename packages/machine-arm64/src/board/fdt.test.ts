import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { boardFdt, writeFdt, type BoardDescription } from './fdt.js';

// An independent reader of the DTB format (Devicetree Specification v0.4, chapter 5), written
// from the specification, not from the writer: header fields, reservation map, tokens.
interface ReadNode {
  name: string;
  props: Map<string, Uint8Array>;
  children: ReadNode[];
}
function readDtb(blob: Uint8Array) {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const h = (i: number) => dv.getUint32(i * 4, false);
  const header = {
    magic: h(0), totalsize: h(1), offStruct: h(2), offStrings: h(3), offRsv: h(4),
    version: h(5), lastComp: h(6), bootCpu: h(7), sizeStrings: h(8), sizeStruct: h(9),
  };
  const rsv: Array<[bigint, bigint]> = [];
  for (let o = header.offRsv; ; o += 16) {
    const a = dv.getBigUint64(o, false);
    const s = dv.getBigUint64(o + 8, false);
    if (a === 0n && s === 0n) break;
    rsv.push([a, s]);
  }
  const cstr = (o: number) => {
    let e = o;
    while (blob[e] !== 0) e++;
    return new TextDecoder().decode(blob.subarray(o, e));
  };
  let p = header.offStruct;
  const tok = () => {
    const t = dv.getUint32(p, false);
    p += 4;
    return t;
  };
  const stack: ReadNode[] = [];
  let root: ReadNode | undefined;
  for (;;) {
    const t = tok();
    if (t === 1) {
      const name = cstr(p);
      p += (name.length + 1 + 3) & ~3;
      const n: ReadNode = { name, props: new Map(), children: [] };
      if (stack.length) stack[stack.length - 1]!.children.push(n);
      else root = n;
      stack.push(n);
    } else if (t === 3) {
      const len = tok();
      const nameoff = tok();
      stack[stack.length - 1]!.props.set(cstr(header.offStrings + nameoff), blob.slice(p, p + len));
      p += (len + 3) & ~3;
    } else if (t === 2) stack.pop();
    else if (t === 4) continue;
    else if (t === 9) break;
    else throw new Error(`bad token ${t} at ${p - 4}`);
  }
  return { header, rsv, root: root!, structEnd: p };
}
const find = (n: ReadNode, path: string): ReadNode | undefined => {
  let cur: ReadNode | undefined = n;
  for (const part of path.split('/').filter(Boolean)) cur = cur?.children.find((c) => c.name === part);
  return cur;
};
const str = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b).split('\0').slice(0, -1) : undefined);
const u32s = (b: Uint8Array | undefined) => {
  if (!b) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 4 }, (_, i) => dv.getUint32(i * 4, false));
};

const board: BoardDescription = {
  ramBase: 0x4000_0000n,
  ramSize: 0x800_0000n,
  cpuAffinities: [0n, 1n],
  psciMethod: 'hvc',
  uartBase: 0x0900_0000n,
  uartSize: 0x1000n,
  gicDistBase: 0x0800_0000n,
  gicDistSize: 0x1_0000n,
  gicCpuBase: 0x0801_0000n,
  gicCpuSize: 0x1_0000n,
  bootargs: 'console=ttyAMA0 hello',
};

describe('FDT writer (Devicetree Specification v0.4, chapter 5)', () => {
  it('writes a v17 header, an empty-but-terminated reservation map, 8-byte aligned blocks, big-endian', () => {
    const blob = writeFdt({ name: '', props: [['a', [1]], ['b', 'xy']], children: [{ name: 'n@1', props: [['a', null]], children: [] }] }, [{ address: 0x4000_0000n, size: 0x1000n }]);
    const { header, rsv, root, structEnd } = readDtb(blob);
    expect(header.magic).toBe(0xd00dfeed);
    expect(blob.subarray(0, 4)).toEqual(new Uint8Array([0xd0, 0x0d, 0xfe, 0xed]));
    expect(header.version).toBe(17);
    expect(header.lastComp).toBe(16);
    expect(header.totalsize).toBe(blob.length);
    expect(blob.length % 8).toBe(0);
    expect(header.offRsv % 8).toBe(0);
    expect(header.offStruct % 4).toBe(0);
    expect(structEnd).toBe(header.offStruct + header.sizeStruct);
    expect(header.offStrings).toBe(structEnd);
    expect(header.offStrings + header.sizeStrings).toBeLessThanOrEqual(header.totalsize);
    expect(rsv).toEqual([[0x4000_0000n, 0x1000n]]);
    expect(u32s(root.props.get('a'))).toEqual([1]);
    expect(str(root.props.get('b'))).toEqual(['xy']);
    expect(root.children[0]!.name).toBe('n@1');
    expect(root.children[0]!.props.get('a')!.length).toBe(0);
    // Property names are stored once in the strings block.
    expect(new TextDecoder().decode(blob.subarray(header.offStrings, header.offStrings + header.sizeStrings))).toBe('a\0b\0');
  });

  it('refuses a cell that is not a u32', () => {
    expect(() => writeFdt({ name: '', props: [['x', [2 ** 32]]], children: [] })).toThrow(RangeError);
  });
});

describe('the board tree (QEMU virt, hw/arm/virt.c)', () => {
  const blob = boardFdt({ ...board, initrd: { start: 0x4060_0000n, end: 0x4061_2345n } });
  const { root, rsv } = readDtb(blob);
  const phandleOf = (n: ReadNode | undefined) => u32s(n?.props.get('phandle'))?.[0];

  it('has the root, memory, and no reservations', () => {
    expect(root.name).toBe('');
    expect(str(root.props.get('compatible'))).toEqual(['linux,dummy-virt']);
    expect(u32s(root.props.get('#address-cells'))).toEqual([2]);
    expect(u32s(root.props.get('#size-cells'))).toEqual([2]);
    expect(rsv).toEqual([]);
    const mem = find(root, 'memory@40000000');
    expect(str(mem?.props.get('device_type'))).toEqual(['memory']);
    expect(u32s(mem?.props.get('reg'))).toEqual([0, 0x4000_0000, 0, 0x800_0000]);
  });

  it('has one cpu per vCPU, reg = its affinity, started through PSCI over HVC', () => {
    const cpus = find(root, 'cpus')!;
    expect(u32s(cpus.props.get('#address-cells'))).toEqual([1]);
    expect(u32s(cpus.props.get('#size-cells'))).toEqual([0]);
    expect(cpus.children.map((c) => c.name)).toEqual(['cpu@0', 'cpu@1']);
    for (const [i, c] of cpus.children.entries()) {
      expect(str(c.props.get('compatible'))).toEqual(['arm,armv8']);
      expect(str(c.props.get('device_type'))).toEqual(['cpu']);
      expect(str(c.props.get('enable-method'))).toEqual(['psci']);
      expect(u32s(c.props.get('reg'))).toEqual([i]);
    }
    const psci = find(root, 'psci')!;
    expect(str(psci.props.get('compatible'))).toEqual(['arm,psci-1.0', 'arm,psci-0.2']);
    expect(str(psci.props.get('method'))).toEqual(['hvc']);
  });

  it('uses two address cells for an affinity with Aff3 set', () => {
    const wide = readDtb(boardFdt({ ...board, cpuAffinities: [0n, 0x1_0000_0000n] })).root;
    expect(u32s(find(wide, 'cpus')!.props.get('#address-cells'))).toEqual([2]);
    expect(u32s(find(wide, 'cpus/cpu@100000000')!.props.get('reg'))).toEqual([1, 0]);
  });

  it('has the GICv2, the PL011 with its apb-pclk, the timer PPIs 13 14 11 10, and interrupt-parent = the GIC', () => {
    const gic = find(root, 'intc@8000000')!;
    expect(str(gic.props.get('compatible'))).toEqual(['arm,cortex-a15-gic']);
    expect(u32s(gic.props.get('#interrupt-cells'))).toEqual([3]);
    expect(gic.props.get('interrupt-controller')!.length).toBe(0);
    expect(u32s(gic.props.get('reg'))).toEqual([0, 0x0800_0000, 0, 0x1_0000, 0, 0x0801_0000, 0, 0x1_0000]);
    expect(u32s(root.props.get('interrupt-parent'))).toEqual([phandleOf(gic)]);

    const clk = find(root, 'apb-pclk')!;
    expect(str(clk.props.get('compatible'))).toEqual(['fixed-clock']);
    expect(u32s(clk.props.get('clock-frequency'))).toEqual([24_000_000]);
    const uart = find(root, 'pl011@9000000')!;
    expect(str(uart.props.get('compatible'))).toEqual(['arm,pl011', 'arm,primecell']);
    expect(u32s(uart.props.get('reg'))).toEqual([0, 0x0900_0000, 0, 0x1000]);
    expect(u32s(uart.props.get('interrupts'))).toEqual([0, 1, 4]);
    expect(u32s(uart.props.get('clocks'))).toEqual([phandleOf(clk), phandleOf(clk)]);
    expect(str(uart.props.get('clock-names'))).toEqual(['uartclk', 'apb_pclk']);

    const timer = find(root, 'timer')!;
    expect(str(timer.props.get('compatible'))).toEqual(['arm,armv8-timer']);
    const flags = 4 | (0b11 << 8); // level-high, CPU mask for 2 CPUs (GICv2)
    expect(u32s(timer.props.get('interrupts'))).toEqual([1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags]);
    expect(timer.props.get('always-on')!.length).toBe(0);
  });

  it('has /chosen with bootargs, stdout-path and the initrd range', () => {
    const chosen = find(root, 'chosen')!;
    expect(str(chosen.props.get('bootargs'))).toEqual(['console=ttyAMA0 hello']);
    expect(str(chosen.props.get('stdout-path'))).toEqual(['/pl011@9000000']);
    expect(u32s(chosen.props.get('linux,initrd-start'))).toEqual([0, 0x4060_0000]);
    expect(u32s(chosen.props.get('linux,initrd-end'))).toEqual([0, 0x4061_2345]);
    const noInitrd = find(readDtb(boardFdt(board)).root, 'chosen')!;
    expect([...noInitrd.props.keys()]).toEqual(['bootargs', 'stdout-path']);
  });

  const dtc = spawnSync('dtc', ['--version']).status === 0;
  it.skipIf(!dtc)('decodes with dtc without warnings (device-tree-compiler; skipped when not installed)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugvisor-fdt-'));
    const f = join(dir, 'board.dtb');
    writeFileSync(f, blob);
    const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', f], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('compatible = "arm,pl011\\0arm,primecell";');
    expect(r.stdout).toContain('bootargs = "console=ttyAMA0 hello";');
    expect(r.stdout).toMatch(/intc@8000000 \{/);
  });
});
