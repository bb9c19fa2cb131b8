/**
 * KVM's x86 uAPI structs as plain values (layouts: Linux include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h), decoded from
 * and encoded into the byte buffers `src/ffi/kvm.ts` fills. Pure: no KVM access here.
 */

/** kvm_regs order: the RegisterFile of an x86 vCPU uses the same indices. */
export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type RegName = (typeof REG_NAMES)[number];
export const R = Object.freeze(Object.fromEntries(REG_NAMES.map((n, i) => [n.toUpperCase(), i])) as { [K in Uppercase<RegName>]: number });

export type Regs = Record<RegName, bigint>;

export function decodeRegs(b: Uint8Array): Regs {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = {} as Regs;
  REG_NAMES.forEach((n, i) => (out[n] = dv.getBigUint64(i * 8, true)));
  return out;
}

export function encodeRegs(r: Regs, out = new Uint8Array(144)): Uint8Array {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  REG_NAMES.forEach((n, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, r[n]), true));
  return out;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DTable {
  base: bigint;
  limit: number;
}

export const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export type SegName = (typeof SEGMENTS)[number];

export interface Sregs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DTable;
  idt: DTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** interrupt_bitmap: 4 × u64 (at most one bit set: a pending external interrupt). */
  interruptBitmap: bigint[];
}

function decodeSegment(dv: DataView, o: number): Segment {
  return {
    base: dv.getBigUint64(o, true),
    limit: dv.getUint32(o + 8, true),
    selector: dv.getUint16(o + 12, true),
    type: dv.getUint8(o + 14),
    present: dv.getUint8(o + 15),
    dpl: dv.getUint8(o + 16),
    db: dv.getUint8(o + 17),
    s: dv.getUint8(o + 18),
    l: dv.getUint8(o + 19),
    g: dv.getUint8(o + 20),
    avl: dv.getUint8(o + 21),
    unusable: dv.getUint8(o + 22),
  };
}

function encodeSegment(s: Segment, dv: DataView, o: number): void {
  dv.setBigUint64(o, s.base, true);
  dv.setUint32(o + 8, s.limit >>> 0, true);
  dv.setUint16(o + 12, s.selector, true);
  dv.setUint8(o + 14, s.type);
  dv.setUint8(o + 15, s.present);
  dv.setUint8(o + 16, s.dpl);
  dv.setUint8(o + 17, s.db);
  dv.setUint8(o + 18, s.s);
  dv.setUint8(o + 19, s.l);
  dv.setUint8(o + 20, s.g);
  dv.setUint8(o + 21, s.avl);
  dv.setUint8(o + 22, s.unusable);
  dv.setUint8(o + 23, 0);
}

export function decodeSregs(b: Uint8Array): Sregs {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const seg = Object.fromEntries(SEGMENTS.map((n, i) => [n, decodeSegment(dv, i * 24)])) as Record<SegName, Segment>;
  return {
    ...seg,
    gdt: { base: dv.getBigUint64(192, true), limit: dv.getUint16(200, true) },
    idt: { base: dv.getBigUint64(208, true), limit: dv.getUint16(216, true) },
    cr0: dv.getBigUint64(224, true),
    cr2: dv.getBigUint64(232, true),
    cr3: dv.getBigUint64(240, true),
    cr4: dv.getBigUint64(248, true),
    cr8: dv.getBigUint64(256, true),
    efer: dv.getBigUint64(264, true),
    apicBase: dv.getBigUint64(272, true),
    interruptBitmap: [0, 1, 2, 3].map((i) => dv.getBigUint64(280 + 8 * i, true)),
  };
}

export function encodeSregs(s: Sregs, out = new Uint8Array(312)): Uint8Array {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  SEGMENTS.forEach((n, i) => encodeSegment(s[n], dv, i * 24));
  dv.setBigUint64(192, s.gdt.base, true);
  dv.setUint16(200, s.gdt.limit, true);
  dv.setBigUint64(208, s.idt.base, true);
  dv.setUint16(216, s.idt.limit, true);
  dv.setBigUint64(224, s.cr0, true);
  dv.setBigUint64(232, s.cr2, true);
  dv.setBigUint64(240, s.cr3, true);
  dv.setBigUint64(248, s.cr4, true);
  dv.setBigUint64(256, s.cr8, true);
  dv.setBigUint64(264, s.efer, true);
  dv.setBigUint64(272, s.apicBase, true);
  s.interruptBitmap.forEach((v, i) => dv.setBigUint64(280 + 8 * i, v, true));
  return out;
}

/** kvm_xcrs (392 bytes): nr_xcrs, flags, xcrs[16] {xcr, reserved, value}. */
export interface Xcrs {
  nrXcrs: number;
  flags: number;
  xcrs: { xcr: number; value: bigint }[];
}

export function decodeXcrs(b: Uint8Array): Xcrs {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const nr = dv.getUint32(0, true);
  const xcrs = Array.from({ length: Math.min(nr, 16) }, (_, i) => ({ xcr: dv.getUint32(8 + 16 * i, true), value: dv.getBigUint64(8 + 16 * i + 8, true) }));
  return { nrXcrs: nr, flags: dv.getUint32(4, true), xcrs };
}

export function encodeXcrs(x: { readonly nrXcrs: number; readonly flags: number; readonly xcrs: readonly { readonly xcr: number; readonly value: bigint }[] }): Uint8Array {
  const out = new Uint8Array(392);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, x.nrXcrs, true);
  dv.setUint32(4, x.flags, true);
  x.xcrs.slice(0, 16).forEach((e, i) => {
    dv.setUint32(8 + 16 * i, e.xcr, true);
    dv.setBigUint64(8 + 16 * i + 8, e.value, true);
  });
  return out;
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
