/**
 * The board's physical address map, laid out like QEMU's arm `virt` machine so guest code and
 * habits carry over. Only what a guest needs is present; every other address faults.
 */
export const Layout = Object.freeze({
  /** Guest RAM, as on QEMU virt. */
  RAM_BASE: 0x4000_0000n,
  DEFAULT_RAM_SIZE: 128 * 1024 * 1024,
  /**
   * A 4 KiB read-only page private to the hypervisor (QEMU virt's second flash bank): holds
   * the EL3 exception-return trampoline the vCPU uses to enter guest state (see Vcpu.applyEntry).
   * Guests may read it; it contains nothing of theirs.
   */
  ROM_BASE: 0x0400_0000n,
  ROM_SIZE: 0x1000,
  /** Offset of the `eret` instruction inside the ROM. */
  ROM_ERET: 0x100,
  /** GICv2 CPU interface base on QEMU virt; here a minimal CPU-interface (devices/gicc.ts). */
  GICC_BASE: 0x0801_0000n,
  GICC_SIZE: 0x1000,
  /** PL011 UART (the console). */
  UART_BASE: 0x0900_0000n,
  UART_SIZE: 0x1000,
});

export function ramEnd(ramSize: number): bigint {
  return Layout.RAM_BASE + BigInt(ramSize);
}
