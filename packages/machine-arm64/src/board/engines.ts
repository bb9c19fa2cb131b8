import { HostRam, UcEngine, type MemFault } from '../ffi/unicorn.js';
import { Vcpu, type VcpuHost } from '../cpu/vcpu.js';
import type { Pl011 } from '../devices/pl011.js';
import { Layout } from './layout.js';

/** The private EL3 ROM page: one `eret` at ROM_ERET (the trampoline of cpu/vcpu.ts). */
const ROM = (() => {
  const rom = new Uint8Array(Layout.ROM_SIZE);
  new DataView(rom.buffer).setUint32(Layout.ROM_ERET, 0xd69f03e0, true); // eret
  return rom;
})();

/** What every vCPU's engine is wired to: the shared RAM and UART, and the machine's hooks. */
export interface EngineBoard {
  readonly ram: HostRam;
  readonly uart: Pl011;
  readonly host: VcpuHost;
  readonly registerWindow: boolean;
  /** The guest executed IC IALLUIS / IC IALLU / IC IVAU: other engines must drop translations. */
  readonly codeChanged: () => void;
  /** An access outside RAM and devices. */
  readonly memFault: (f: MemFault) => void;
}

/** Opens vCPU `i`'s Unicorn engine and maps the board into it: RAM, ROM, UART, its own GIC CPU interface. */
export function openVcpu(i: number, board: EngineBoard): Vcpu {
  const e = UcEngine.open();
  try {
    e.mapRam(Layout.RAM_BASE, board.ram);
    e.mapRom(Layout.ROM_BASE, Layout.ROM_SIZE, ROM);
    e.mapMmio(
      Layout.UART_BASE,
      Layout.UART_SIZE,
      (off) => board.uart.read(off),
      (off, _size, value) => board.uart.write(off, value),
    );
    const v = new Vcpu(i, e, board.host, board.registerWindow);
    e.mapMmio(
      Layout.GICC_BASE,
      Layout.GICC_SIZE,
      (off) => v.gic.read(off),
      (off, _size, value) => v.gic.write(off, value),
    );
    e.onSys((op1, crn, crm) => {
      // IC IALLUIS (op1 0, CRm 1), IC IALLU / IC IVAU (CRm 5): the guest says code changed.
      // Other engines may hold stale translations of it: they drop them before they next run.
      if (crn === 7 && (crm === 1 || crm === 5) && (op1 === 0 || op1 === 3)) board.codeChanged();
    });
    e.onInvalidMemory(board.memFault);
    return v;
  } catch (err) {
    e.close();
    throw err;
  }
}
