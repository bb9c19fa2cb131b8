import { describe, expect, it } from 'vitest';
import type { Machine } from './machine.js';
import { guestPhysicalRange } from './capabilities.js';

/** A machine whose only ability is a page table: VA page → PA page (4 KiB), absent = fault. */
function machineWith(pages: Map<bigint, bigint> | undefined): Machine {
  const translate = (_vcpu: number, va: bigint) => {
    const pa = pages!.get(va & ~0xfffn);
    return pa === undefined ? undefined : pa + (va & 0xfffn);
  };
  return { capability: (n: string) => (n === 'guest-virtual' && pages ? { translate } : undefined) } as unknown as Machine;
}

describe("guestPhysicalRange (Xen's copy_from_guest, page by page)", () => {
  const pages = new Map([
    [0x8000_0000n, 0x4000_0000n],
    [0x8000_1000n, 0x4000_1000n], // contiguous with the one before
    [0x8000_2000n, 0x4005_0000n], // not
  ]);
  const m = machineWith(pages);

  it('translates an argument within one page, or across pages that are physically contiguous', () => {
    expect(guestPhysicalRange(m, 0, 0x8000_0010n, 32)).toBe(0x4000_0010n);
    expect(guestPhysicalRange(m, 0, 0x8000_0ff0n, 32)).toBe(0x4000_0ff0n);
  });

  it('refuses (undefined: -EFAULT) a range over scattered pages or into an unmapped one', () => {
    expect(guestPhysicalRange(m, 0, 0x8000_1ff0n, 32)).toBeUndefined();
    expect(guestPhysicalRange(m, 0, 0x8000_2ff0n, 32)).toBeUndefined();
    expect(guestPhysicalRange(m, 0, 0x9000_0000n, 8)).toBeUndefined();
  });

  it('takes pointers as physical on a machine without stage 1', () => {
    expect(guestPhysicalRange(machineWith(undefined), 0, 0x8000_1ff0n, 32)).toBe(0x8000_1ff0n);
  });
});
