/**
 * Direct 64-bit long-mode entry, the way Firecracker's `regs.rs`/`gdt.rs` do it
 * (src/vmm/src/arch/x86_64/): the host writes a GDT and identity-mapping page tables into guest RAM
 * and sets CR0/CR4/EFER and the segment registers through KVM_SET_SREGS. The guest starts at
 * its entry point in 64-bit mode at CPL0, paging on, interrupts off.
 */
import type { Regs, Segment, Sregs } from './structs.js';

/** Guest-physical layout of the boot structures (below 1 MiB; images load at 1 MiB). */
export const Layout = Object.freeze({
  GDT: 0x500,
  IDT: 0x520,
  /** Boot stack top (the stack grows down toward 0x1000). */
  STACK_TOP: 0x8ff0,
  PML4: 0x9000,
  PDPT: 0xa000,
  /** Four page directories (0xb000-0xefff) map the first 4 GiB with 2 MiB pages. */
  PD: 0xb000,
  /** Where images load by default (ELF: their own p_paddr). */
  IMAGE_BASE: 0x100000,
  /** KVM_SET_TSS_ADDR (3 pages) and the identity-map page: above RAM, below 4 GiB (Firecracker). */
  TSS_ADDR: 0xfffbd000,
  IDENTITY_MAP_ADDR: 0xfffbc000n,
  /** Smallest RAM the boot structures and an image at 1 MiB need. */
  MIN_RAM: 2 << 20,
  /** RAM when the VM is made without a size. */
  DEFAULT_RAM_SIZE: 128 << 20,
});

/** CR0: PE | MP | ET | NE | WP | AM | PG (kvm-hello-world); EM and TS clear so x87/SSE work. */
export const CR0_LONG = 0x80050033n;
export const CR4 = Object.freeze({ PAE: 1n << 5n, OSFXSR: 1n << 9n, OSXMMEXCPT: 1n << 10n, OSXSAVE: 1n << 18n });
export const EFER = Object.freeze({ SCE: 1n, LME: 0x100n, LMA: 0x400n, NXE: 0x800n });

/** GDT: null, 64-bit code (0x08), data (0x10), 64-bit busy TSS (0x18). */
export const GDT_ENTRIES = [0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn, 0x008f8b000000ffffn] as const;
export const SELECTOR = Object.freeze({ CODE: 0x08, DATA: 0x10, TSS: 0x18 });

/** Writes the GDT and the identity-map page tables for the first 4 GiB into `ram` (guest-physical 0). */
export function writeBootStructures(ram: Uint8Array): void {
  const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  GDT_ENTRIES.forEach((e, i) => dv.setBigUint64(Layout.GDT + 8 * i, e, true));
  dv.setBigUint64(Layout.IDT, 0n, true);
  ram.fill(0, Layout.PML4, Layout.PD + 4 * 0x1000);
  dv.setBigUint64(Layout.PML4, BigInt(Layout.PDPT) | 0x03n, true);
  for (let g = 0; g < 4; g++) {
    const pd = Layout.PD + g * 0x1000;
    dv.setBigUint64(Layout.PDPT + 8 * g, BigInt(pd) | 0x03n, true);
    for (let i = 0; i < 512; i++) dv.setBigUint64(pd + 8 * i, ((BigInt(g) << 30n) + (BigInt(i) << 21n)) | 0x83n, true);
  }
}

function segment(selector: number, type: number, code: boolean): Segment {
  return { base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

/** The long-mode sregs over KVM's reset values (keeps apic_base and the rest). */
export function longModeSregs(reset: Sregs, cr4Extra = 0n): Sregs {
  const data = segment(SELECTOR.DATA, 3, false);
  return {
    ...reset,
    cs: segment(SELECTOR.CODE, 11, true),
    ds: data,
    es: { ...data },
    fs: { ...data },
    gs: { ...data },
    ss: { ...data },
    tr: { base: 0n, limit: 0xffffffff, selector: SELECTOR.TSS, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 1, avl: 0, unusable: 0 },
    gdt: { base: BigInt(Layout.GDT), limit: GDT_ENTRIES.length * 8 - 1 },
    idt: { base: BigInt(Layout.IDT), limit: 7 },
    cr0: CR0_LONG,
    cr3: BigInt(Layout.PML4),
    cr4: CR4.PAE | CR4.OSFXSR | CR4.OSXMMEXCPT | cr4Extra,
    efer: EFER.LME | EFER.LMA,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

/** Registers at entry: RIP = entry, RSP = RBP = stack, RDI = the context argument, RFLAGS = 2. */
export function entryRegs(entry: bigint, context: bigint, stack = BigInt(Layout.STACK_TOP)): Regs {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: context, rsp: stack, rbp: stack,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: entry, rflags: 2n,
  };
}
