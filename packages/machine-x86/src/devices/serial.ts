import { StateReader } from '@plugvisor/core';

/**
 * COM1, a minimal 16550 UART at ports 0x3f8-0x3ff (register map: the TI/National PC16550D
 * datasheet; the same subset as QEMU hw/char/serial.c without FIFOs or interrupts): a THR write prints the byte; LSR always reports THR empty and transmitter
 * empty (THRE | TEMT), never data ready; IIR reads "no interrupt" with FIFOs on; DLAB selects
 * the divisor latch. No interrupts are raised (the guest polls LSR).
 */
export interface SerialState {
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  dll: number;
  dlm: number;
}

const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MSR_RESET = 0x10 | 0x20 | 0x80; // CTS | DSR | DCD
const LCR_DLAB = 0x80;

/** Validates a saved SerialState (vm-superio's from_state); throws StateError naming the field. */
export function validateSerialState(state: unknown, component = 'COM1 serial'): SerialState {
  const r = new StateReader(component, state);
  return { ier: r.int('ier', 0, 0x0f), lcr: r.int('lcr', 0, 0xff), mcr: r.int('mcr', 0, 0x1f), scr: r.int('scr', 0, 0xff), dll: r.int('dll', 0, 0xff), dlm: r.int('dlm', 0, 0xff) };
}

export class Serial {
  private state: SerialState = { ier: 0, lcr: 0x03, mcr: 0x08, scr: 0, dll: 0x0c, dlm: 0 };

  /** The registers, as a plain value (the persistence contract's save). */
  save(): SerialState {
    return { ...this.state };
  }

  /** Validates and applies a saved state (throws StateError naming the field). */
  restore(state: unknown): void {
    this.state = validateSerialState(state);
  }
  private readonly buf = new Uint8Array(256);
  private len = 0;

  constructor(private readonly sink: (bytes: Uint8Array) => void) {}

  /** Port offset 0..7 read. */
  read(offset: number): number {
    const s = this.state;
    const dlab = (s.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        return dlab ? s.dll : 0; // RBR: nothing received
      case 1:
        return dlab ? s.dlm : s.ier;
      case 2:
        return 0xc1; // IIR: no interrupt pending, FIFOs enabled
      case 3:
        return s.lcr;
      case 4:
        return s.mcr;
      case 5:
        return LSR_THRE | LSR_TEMT;
      case 6:
        return MSR_RESET;
      case 7:
        return s.scr;
      default:
        return 0xff;
    }
  }

  write(offset: number, value: number): void {
    const s = this.state;
    const dlab = (s.lcr & LCR_DLAB) !== 0;
    value &= 0xff;
    switch (offset) {
      case 0:
        if (dlab) s.dll = value;
        else this.put(value);
        return;
      case 1:
        if (dlab) s.dlm = value;
        else s.ier = value & 0x0f;
        return;
      case 3:
        s.lcr = value;
        return;
      case 4:
        s.mcr = value & 0x1f;
        return;
      case 7:
        s.scr = value;
        return;
      default:
        return; // FCR and read-only registers
    }
  }

  private put(byte: number): void {
    this.buf[this.len++] = byte;
    if (byte === 0x0a || this.len === this.buf.length) this.flush();
  }

  flush(): void {
    if (!this.len) return;
    this.sink(this.buf.slice(0, this.len));
    this.len = 0;
  }
}
