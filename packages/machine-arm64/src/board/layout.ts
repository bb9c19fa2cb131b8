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
  /** GICv2 distributor on QEMU virt (devices/gicd.ts): one 64 KiB frame shared by every vCPU. */
  GICD_BASE: 0x0800_0000n,
  GICD_SIZE: 0x1_0000,
  /**
   * GICv2 CPU interface on QEMU virt (devices/gicc.ts), banked per vCPU; 8 KiB so GICC_DIR
   * (offset 0x1000) is reachable, as on a GIC-400.
   */
  GICC_BASE: 0x0801_0000n,
  GICC_SIZE: 0x2000,
  /** PL011 UART (the console). */
  UART_BASE: 0x0900_0000n,
  UART_SIZE: 0x1000,
});

export function ramEnd(ramSize: number): bigint {
  return Layout.RAM_BASE + BigInt(ramSize);
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * Why a vCPU cannot execute from `pc`, or undefined if it can: the machine's entry check
 * (MachineRuntime's VcpuBackend.entryFault) and its no-progress backstop. An A64 instruction
 * address is a multiple of 4 whatever the translation (Arm ARM D1.3.5.1, PC alignment). With
 * the MMU off (`translated` false) the address is physical: only RAM holds guest code — the
 * ROM page is the hypervisor's trampoline, the UART and GIC CPU interface are devices (Unicorn
 * 2.0.1 runs on without calling the invalid-fetch hook when a start address cannot be fetched,
 * so these are refused here). A virtual address (MMU on) is the guest's translation to decide:
 * a bad one ends as an instruction abort when the vCPU runs.
 */
export function entryProblem(pc: bigint, translated: boolean, ramSize: number): string | undefined {
  if (pc < 0n || pc > U64_MAX) return 'not a 64-bit address';
  if ((pc & 3n) !== 0n) return 'misaligned (an A64 instruction address is a multiple of 4)';
  if (translated) return undefined;
  const end = ramEnd(ramSize);
  if (pc >= Layout.RAM_BASE && pc < end) return undefined;
  const ram = `RAM is 0x${Layout.RAM_BASE.toString(16)}..0x${(end - 1n).toString(16)}`;
  const inside = (base: bigint, size: number) => pc >= base && pc < base + BigInt(size);
  if (inside(Layout.ROM_BASE, Layout.ROM_SIZE)) return `the hypervisor's trampoline ROM, not guest memory (${ram})`;
  if (inside(Layout.UART_BASE, Layout.UART_SIZE)) return `a device (PL011 UART), not RAM (${ram})`;
  if (inside(Layout.GICD_BASE, Layout.GICD_SIZE)) return `a device (GIC distributor), not RAM (${ram})`;
  if (inside(Layout.GICC_BASE, Layout.GICC_SIZE)) return `a device (GIC CPU interface), not RAM (${ram})`;
  return `outside RAM (${ram})`;
}
