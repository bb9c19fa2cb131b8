import { GuestMemoryError } from '../errors.js';

/**
 * Guest memory as services see it (rust-vmm's vm-memory model: consumer-side interface only;
 * how memory is provided is the backend's business). Every access is bounds-checked against
 * guest RAM and fails with a typed GuestMemoryError: a service turns that into the
 * architected error of its ABI and never writes outside guest RAM.
 */
export interface GuestMemory {
  /** True if [gpa, gpa+length) lies wholly inside one RAM region. */
  contains(gpa: bigint, length: number): boolean;
  read(gpa: bigint, into: Uint8Array): void;
  write(gpa: bigint, from: Uint8Array): void;
  readU32(gpa: bigint): number;
  writeU32(gpa: bigint, value: number): void;
  readU64(gpa: bigint): bigint;
  writeU64(gpa: bigint, value: bigint): void;
  /**
   * Atomically ORs `bits` into the aligned 32-bit word at gpa and returns the old value
   * (guest-shared data structures such as event words are updated this way).
   */
  orU32(gpa: bigint, bits: number): number;
  /** Atomically ANDs `mask` into the aligned 32-bit word at gpa; returns the old value. */
  andU32(gpa: bigint, mask: number): number;
  /** Compare-and-swap on the aligned 32-bit word at gpa; returns the value found. */
  cmpxchgU32(gpa: bigint, expected: number, replacement: number): number;
  /** The RAM regions, for snapshots. */
  regions(): readonly MemoryRegion[];
}

export interface MemoryRegion {
  readonly base: bigint;
  /** Host bytes backing the region (shared with the execution engine, zero-copy). */
  readonly bytes: Uint8Array;
}

/**
 * GuestMemory over one or more host buffers. Region lookup is linear: boards have one or two
 * RAM regions, and the single-region case (every board today) is a compare and a subtract.
 */
export class FlatGuestMemory implements GuestMemory {
  private readonly list: readonly MemoryRegion[];
  private readonly views: readonly DataView[];
  private readonly words: readonly Int32Array[];

  constructor(regions: readonly MemoryRegion[]) {
    this.list = Object.freeze([...regions]);
    this.views = this.list.map((r) => new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength));
    this.words = this.list.map((r) =>
      r.bytes.byteOffset % 4 === 0 && r.bytes.byteLength % 4 === 0
        ? new Int32Array(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength / 4)
        : new Int32Array(0),
    );
  }

  regions(): readonly MemoryRegion[] {
    return this.list;
  }

  /** Index of the region holding [gpa, gpa+length), or -1; its byte offset goes to `this.offset`. */
  private find(gpa: bigint, length: number): number {
    if (gpa < 0n || length < 0) return -1;
    const end = gpa + BigInt(length);
    for (let i = 0; i < this.list.length; i++) {
      const r = this.list[i]!;
      if (gpa >= r.base && end <= r.base + BigInt(r.bytes.byteLength)) {
        this.offset = Number(gpa - r.base);
        return i;
      }
    }
    return -1;
  }

  /** Offset of the last successful `find`: a field, not a returned tuple, so access allocates nothing. */
  private offset = 0;

  private locate(gpa: bigint, length: number): number {
    const i = this.find(gpa, length);
    if (i < 0) throw new GuestMemoryError(gpa, length);
    return i;
  }

  contains(gpa: bigint, length: number): boolean {
    return this.find(gpa, length) >= 0;
  }

  read(gpa: bigint, into: Uint8Array): void {
    const i = this.locate(gpa, into.byteLength);
    into.set(this.list[i]!.bytes.subarray(this.offset, this.offset + into.byteLength));
  }

  write(gpa: bigint, from: Uint8Array): void {
    const i = this.locate(gpa, from.byteLength);
    this.list[i]!.bytes.set(from, this.offset);
  }

  readU32(gpa: bigint): number {
    const i = this.locate(gpa, 4);
    return this.views[i]!.getUint32(this.offset, true);
  }

  writeU32(gpa: bigint, value: number): void {
    const i = this.locate(gpa, 4);
    this.views[i]!.setUint32(this.offset, value >>> 0, true);
  }

  readU64(gpa: bigint): bigint {
    const i = this.locate(gpa, 8);
    return this.views[i]!.getBigUint64(this.offset, true);
  }

  writeU64(gpa: bigint, value: bigint): void {
    const i = this.locate(gpa, 8);
    this.views[i]!.setBigUint64(this.offset, BigInt.asUintN(64, value), true);
  }

  /** The Int32Array holding the aligned word at gpa; its index goes to `this.offset`. */
  private word(gpa: bigint): Int32Array {
    if ((gpa & 3n) !== 0n) throw new GuestMemoryError(gpa, 4);
    const i = this.locate(gpa, 4);
    this.offset >>= 2;
    return this.words[i]!;
  }

  orU32(gpa: bigint, bits: number): number {
    const w = this.word(gpa);
    return Atomics.or(w, this.offset, bits | 0) >>> 0;
  }

  andU32(gpa: bigint, mask: number): number {
    const w = this.word(gpa);
    return Atomics.and(w, this.offset, mask | 0) >>> 0;
  }

  cmpxchgU32(gpa: bigint, expected: number, replacement: number): number {
    const w = this.word(gpa);
    return Atomics.compareExchange(w, this.offset, expected | 0, replacement | 0) >>> 0;
  }
}
