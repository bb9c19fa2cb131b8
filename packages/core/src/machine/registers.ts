/**
 * A vCPU's general-purpose registers as a hypercall handler sees them.
 *
 * 64-bit registers live in one ArrayBuffer with two views: `u32` (halves, low word first on
 * the little-endian hosts we run on) for the hot path, which must not allocate a BigInt per
 * trap, and `u64` for handlers that need whole values. The machine backend fills the file
 * before dispatch and writes the conduit's result registers back afterwards.
 */
export class RegisterFile {
  readonly u64: BigUint64Array;
  readonly u32: Uint32Array;

  constructor(readonly count: number) {
    const buffer = new ArrayBuffer(count * 8);
    this.u64 = new BigUint64Array(buffer);
    this.u32 = new Uint32Array(buffer);
  }

  /** Low 32 bits of register n (SMCCC's `w` view, e.g. the function id in w0). */
  lo(n: number): number {
    return this.u32[n * 2]!;
  }

  /** High 32 bits of register n. */
  hi(n: number): number {
    return this.u32[n * 2 + 1]!;
  }

  get(n: number): bigint {
    return this.u64[n]!;
  }

  set(n: number, value: bigint): void {
    this.u64[n] = BigInt.asUintN(64, value);
  }

  /** Writes a signed 32-bit value sign-extended to 64 bits (−1 → 0xFFFF_FFFF_FFFF_FFFF). */
  setSigned(n: number, value: number): void {
    this.u32[n * 2] = value >>> 0;
    this.u32[n * 2 + 1] = value < 0 ? 0xffff_ffff : 0;
  }

  /** Writes an unsigned 32-bit value zero-extended to 64 bits. */
  setU32(n: number, value: number): void {
    this.u32[n * 2] = value >>> 0;
    this.u32[n * 2 + 1] = 0;
  }

  /** Writes a 64-bit value from its two halves. */
  setHalves(n: number, hi: number, lo: number): void {
    this.u32[n * 2] = lo >>> 0;
    this.u32[n * 2 + 1] = hi >>> 0;
  }

  copyFrom(other: RegisterFile): void {
    this.u64.set(other.u64.subarray(0, Math.min(this.count, other.count)));
  }
}
