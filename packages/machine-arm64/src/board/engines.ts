import { HostRam, UcEngine, type MemFault } from '../ffi/unicorn.js';
import { Vcpu, type VcpuHost } from '../cpu/vcpu.js';
import type { Pl011 } from '../devices/pl011.js';
import { GICD_MAX_CPUS, type GicDistributor } from '../devices/gicd.js';
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
  readonly codeChanged: (v: Vcpu) => void;
  /** An access outside RAM and devices. */
  readonly memFault: (f: MemFault) => void;
  /** The GIC distributor (made once every vCPU exists: it connects to their CPU interfaces). */
  readonly distributor: () => GicDistributor;
}

/** Opens vCPU `i`'s Unicorn engine and maps the board into it: RAM, ROM, UART, the GIC distributor, its own GIC CPU interface. */
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
      // An acknowledge or end of interrupt changes what the interface signals: the vCPU's IRQ
      // input follows at once (Vcpu.syncIrq).
      (off) => {
        const value = v.gic.read(off);
        v.syncIrq();
        return value;
      },
      (off, _size, value) => {
        v.gic.write(off, value);
        v.syncIrq();
      },
    );
    // The distributor is the machine's, one for every vCPU; the accessing vCPU selects the
    // banked registers (INTIDs 0..31, SGIR). Its IRQ input follows at once (Vcpu.syncIrq).
    if (i < GICD_MAX_CPUS) e.mapMmio(
      Layout.GICD_BASE,
      Layout.GICD_SIZE,
      (off, size) => {
        const value = board.distributor().read(i, off, size);
        v.syncIrq();
        return value;
      },
      (off, size, value) => {
        board.distributor().write(i, off, size, value);
        v.syncIrq();
      },
    );
    // Without the CPU internals, IC maintenance is noticed by a hook on every SYS instruction
    // (with them it traps: Vcpu.emulateEl2Trap, far cheaper than a callback per DC ZVA).
    if (!v.cpu) e.onSys((op1, crn, crm) => {
      // IC IALLUIS (op1 0, CRm 1), IC IALLU / IC IVAU (CRm 5): the guest says code changed.
      // Other engines may hold stale translations of it: they drop them before they next run.
      if (crn === 7 && (crm === 1 || crm === 5) && (op1 === 0 || op1 === 3)) board.codeChanged(v);
    });
    e.onMsr((op0, op1, crn, crm, op2, lo, hi) => {
      // The generic timers are the machine's (devices/generic-timer.ts): the write is done there.
      if (op0 === 3 && op1 === 3 && crn === 14 && v.timerWrite(op0, op1, crn, crm, op2, (BigInt(hi) << 32n) | BigInt(lo))) return true;
      // SCTLR_EL1 (op0 3, op1 0, CRn 1, CRm 0, op2 0): the vCPU keeps its M bit (Vcpu.mmu).
      if (op0 === 3 && op1 === 0 && crn === 1 && crm === 0 && op2 === 0) v.mmu = (lo & 1) !== 0;
      // Self-hosted debug the engine cannot run is not armed; such a write is ignored (the
      // register keeps its value) and no debug exception is ever generated:
      // - DBGBCR<n>_EL1 / DBGWCR<n>_EL1 (op0 2, op1 0, CRn 0, op2 5 / 7) with E (bit 0) set
      //   would arm a hardware breakpoint or watchpoint: Unicorn 2.0.1 crashes the host process
      //   when a running translation block arms one (qemu/target/arm/helper.c
      //   hw_breakpoint_update → cpu_breakpoint_insert);
      // - MDSCR_EL1 (op0 2, op1 0, CRn 0, CRm 2, op2 2) with SS (bit 0) set would start software
      //   step, whose exception the engine hands back without its syndrome.
      // Disabling writes, and every other register, go through.
      if (op0 !== 2 || op1 !== 0 || crn !== 0 || (lo & 1) === 0) return false;
      return op2 === 5 || op2 === 7 || (crm === 2 && op2 === 2);
    });
    e.onInvalidMemory(board.memFault);
    return v;
  } catch (err) {
    e.close();
    throw err;
  }
}
