import type { GuestMemory } from '@plugvisor/core';

/**
 * An argument struct in guest memory. Xen copies the whole struct in (copy_from_guest) and,
 * for ops with OUT fields, back out (copy_to_guest); a struct not wholly in guest RAM is
 * -EFAULT and nothing is written. Arm passes guest virtual addresses; Plugvisor's Machine
 * interface has no stage-1 translation yet, so pointers are taken as guest-physical (guests
 * run with the MMU off or identity-mapped) — see the README.
 */
export class GuestStruct {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  private constructor(
    readonly mem: GuestMemory,
    readonly gpa: bigint,
    size: number,
  ) {
    this.bytes = new Uint8Array(size);
    mem.read(gpa, this.bytes);
    this.view = new DataView(this.bytes.buffer);
  }

  /** copy_from_guest of `size` bytes at `ptr`, or undefined (-EFAULT) if not all in RAM. */
  static read(mem: GuestMemory, ptr: bigint, size: number): GuestStruct | undefined {
    return mem.contains(ptr, size) ? new GuestStruct(mem, ptr, size) : undefined;
  }

  u8(off: number): number {
    return this.view.getUint8(off);
  }
  u16(off: number): number {
    return this.view.getUint16(off, true);
  }
  u32(off: number): number {
    return this.view.getUint32(off, true);
  }
  /** A C `int` field or argument. */
  i32(off: number): number {
    return this.view.getInt32(off, true);
  }
  u64(off: number): bigint {
    return this.view.getBigUint64(off, true);
  }
  setU8(off: number, v: number): this {
    this.view.setUint8(off, v);
    return this;
  }
  setU16(off: number, v: number): this {
    this.view.setUint16(off, v, true);
    return this;
  }
  setU32(off: number, v: number): this {
    this.view.setUint32(off, v >>> 0, true);
    return this;
  }
  setU64(off: number, v: bigint): this {
    this.view.setBigUint64(off, BigInt.asUintN(64, v), true);
    return this;
  }

  /** copy_to_guest of the whole struct (its range was checked on the way in). */
  writeBack(): void {
    this.mem.write(this.gpa, this.bytes);
  }
}

/** Copies `bytes` to guest memory at `ptr`: false (-EFAULT) if not all in RAM. */
export function copyToGuest(mem: GuestMemory, ptr: bigint, bytes: Uint8Array): boolean {
  if (!mem.contains(ptr, bytes.byteLength)) return false;
  mem.write(ptr, bytes);
  return true;
}
