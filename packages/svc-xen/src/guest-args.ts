import { guestPhysicalRange, type GuestMemory, type VcpuContext } from '@plugvisor/core';

/**
 * An argument struct in guest memory. Xen copies the whole struct in (copy_from_guest) and,
 * for ops with OUT fields, back out (copy_to_guest); a struct not wholly in guest RAM is
 * -EFAULT and nothing is written. On Arm a pointer argument is a guest virtual address,
 * translated through the calling vCPU's stage 1 and stage 2 (xen/arch/arm/guestcopy.c,
 * get_page_from_gva): `GuestStruct.arg` does that through the machine's 'guest-virtual'
 * capability (core's guestPhysicalRange); a machine without it takes pointers as physical.
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

  /** `size` bytes at guest-physical `gpa`, or undefined (-EFAULT) if not all in RAM. */
  static read(mem: GuestMemory, gpa: bigint, size: number): GuestStruct | undefined {
    return mem.contains(gpa, size) ? new GuestStruct(mem, gpa, size) : undefined;
  }

  /** copy_from_guest of `size` bytes at the calling vCPU's pointer `ptr`, or undefined (-EFAULT). */
  static arg(v: VcpuContext, ptr: bigint, size: number): GuestStruct | undefined {
    const gpa = guestPhysicalRange(v.machine, v.index, ptr, size);
    return gpa === undefined ? undefined : GuestStruct.read(v.machine.memory, gpa, size);
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

/** Copies `bytes` to guest memory at guest-physical `gpa`: false (-EFAULT) if not all in RAM. */
export function copyToGuest(mem: GuestMemory, gpa: bigint, bytes: Uint8Array): boolean {
  if (!mem.contains(gpa, bytes.byteLength)) return false;
  mem.write(gpa, bytes);
  return true;
}

/** copy_to_guest of `bytes` at the calling vCPU's pointer `ptr`: false (-EFAULT) where it would fault. */
export function copyToGuestArg(v: VcpuContext, ptr: bigint, bytes: Uint8Array): boolean {
  const gpa = guestPhysicalRange(v.machine, v.index, ptr, bytes.byteLength);
  return gpa !== undefined && copyToGuest(v.machine.memory, gpa, bytes);
}
