import { StateReader } from '@plugvisor/core';
/**
 * A PL011 UART as far as a console needs: bytes written to DR go to the console sink; the flag
 * register always reports "transmit ready" (TXFE set, TXFF and BUSY clear) and "receive empty"
 * (RXFE set). Control registers read back what was written (drivers probe them) and are part
 * of the machine description for snapshots. No interrupts are raised.
 */
const DR = 0x000;
const RSR = 0x004;
const FR = 0x018;
const IBRD = 0x024;
const FBRD = 0x028;
const LCR_H = 0x02c;
const CR = 0x030;
const IFLS = 0x034;
const IMSC = 0x038;
const RIS = 0x03c;
const MIS = 0x040;
const ICR = 0x044;
const DMACR = 0x048;

const FR_TXFE = 1 << 7;
const FR_RXFE = 1 << 4;

/** PeriphID0..3 then PCellID0..3 (a PL011 r1p5), at 0xFE0..0xFFC. */
const ID_BYTES = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

export interface Pl011State {
  ibrd: number;
  fbrd: number;
  lcrH: number;
  cr: number;
  ifls: number;
  imsc: number;
  dmacr: number;
}

/** Validates a saved Pl011State (vm-superio's from_state); throws StateError naming the field. */
export function validatePl011State(state: unknown, component = 'PL011 UART'): Pl011State {
  const r = new StateReader(component, state);
  return {
    ibrd: r.int('ibrd', 0, 0xffff),
    fbrd: r.int('fbrd', 0, 0x3f),
    lcrH: r.int('lcrH', 0, 0xff),
    cr: r.int('cr', 0, 0xffff),
    ifls: r.int('ifls', 0, 0x3f),
    imsc: r.int('imsc', 0, 0x7ff),
    dmacr: r.int('dmacr', 0, 7),
  };
}

export class Pl011 {
  private state: Pl011State = { ibrd: 0, fbrd: 0, lcrH: 0, cr: 0x300, ifls: 0x12, imsc: 0, dmacr: 0 };

  /** The registers, as a plain value (the persistence contract's save). */
  save(): Pl011State {
    return { ...this.state };
  }

  /** Validates and applies a saved state (throws StateError naming the field). */
  restore(state: unknown): void {
    this.state = validatePl011State(state);
  }
  private buf = new Uint8Array(256);
  private len = 0;

  constructor(private readonly sink: (bytes: Uint8Array) => void) {}

  read(offset: number): number {
    const s = this.state;
    switch (offset) {
      case DR:
        return 0; // no input
      case RSR:
        return 0;
      case FR:
        return FR_TXFE | FR_RXFE;
      case IBRD:
        return s.ibrd;
      case FBRD:
        return s.fbrd;
      case LCR_H:
        return s.lcrH;
      case CR:
        return s.cr;
      case IFLS:
        return s.ifls;
      case IMSC:
        return s.imsc;
      case RIS:
      case MIS:
        return 0;
      case DMACR:
        return s.dmacr;
      default:
        if (offset >= 0xfe0 && offset <= 0xffc) return ID_BYTES[(offset - 0xfe0) >> 2]!;
        return 0;
    }
  }

  write(offset: number, value: number): void {
    const s = this.state;
    switch (offset) {
      case DR:
        this.put(value & 0xff);
        return;
      case IBRD:
        s.ibrd = value & 0xffff;
        return;
      case FBRD:
        s.fbrd = value & 0x3f;
        return;
      case LCR_H:
        s.lcrH = value & 0xff;
        return;
      case CR:
        s.cr = value & 0xffff;
        return;
      case IFLS:
        s.ifls = value & 0x3f;
        return;
      case IMSC:
        s.imsc = value & 0x7ff;
        return;
      case DMACR:
        s.dmacr = value & 7;
        return;
      case RSR:
      case ICR:
      default:
        return;
    }
  }

  /**
   * Flush at each newline. The machine turns this off while a vCPU runs in a timed slice: the
   * sink's write is a slow syscall, and if Unicorn's slice timer fires while the MMIO hook is
   * still running, Unicorn re-executes the store (the guest's newline came out twice under
   * load). In a timed slice the hook only buffers, and the machine flushes after the slice.
   */
  lineFlush = true;

  private put(byte: number): void {
    this.buf[this.len++] = byte;
    if ((byte === 0x0a && this.lineFlush) || this.len === this.buf.length) this.flush();
  }

  /** Hands buffered output to the sink (at newlines, when full, and when a run returns). */
  flush(): void {
    if (this.len === 0) return;
    const out = this.buf.slice(0, this.len);
    this.len = 0;
    this.sink(out);
  }
}
