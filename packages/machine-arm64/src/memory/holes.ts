/**
 * Guest physical pages removed from the arm64 machine's RAM and added back (a balloon: Xen's
 * XENMEM_decrease_reservation takes 4 KiB extents out of a domain's physical map,
 * XENMEM_populate_physmap / increase_reservation puts zeroed pages back: xen/common/memory.c).
 *
 * How a removed page ("hole") is enforced — the design, and why (README "Guest page holes" has
 * the measurements):
 *
 *  - Not by splitting Unicorn's RAM mapping. uc_mem_unmap / uc_mem_protect of 4 KiB inside the
 *    one RAM region goes through uc.c split_region, which unmaps the region and maps up to three
 *    new ones, rebuilding QEMU's flat view and dropping every translation (milliseconds a split),
 *    and every region is a section of QEMU's dispatch map, whose count is capped by
 *    `assert(map->sections_nb < TARGET_PAGE_SIZE)` (qemu/exec.c phys_section_add): the whole
 *    process aborts. Every other page of 512 MiB is 65,536 holes.
 *  - Not by memory hooks. An installed UC_HOOK_MEM_READ/WRITE, whatever its range, makes the
 *    code generator emit the slow path for every guest load and store (qemu/tcg/i386/
 *    tcg-target.inc.c tcg_out_qemu_ld: the inline TLB fast path only when no such hook exists),
 *    and there is no fetch hook. UC_HOOK_TLB_FILL is called only in UC_TLB_VIRTUAL mode, which
 *    replaces the guest's own MMU (qemu/unicorn_common.h): Linux needs its stage 1.
 *  - By the CPU model's own stage 2 translation, as a hypervisor does on hardware (and as Xen
 *    does: a removed gfn is simply absent from the p2m). The vCPU runs at EL1/EL0 under an EL2
 *    the machine owns; while any page is removed, HCR_EL2.VM is set and VTTBR_EL2 points at
 *    stage 2 tables (4 KiB granule, 39-bit IPA, Arm ARM D8 "The AArch64 Virtual Memory System
 *    Architecture") kept in a host buffer mapped into every engine at STAGE2_BASE, an address the
 *    tables leave unmapped (the guest cannot reach them). Everything is identity-mapped with
 *    1 GiB blocks except where a hole is: a 1 GiB block becomes a table of 2 MiB blocks, a 2 MiB
 *    block a table of 4 KiB pages, and a hole an invalid page descriptor. So any pattern of holes
 *    costs at most one 4 KiB table per 2 MiB of RAM (1 MiB for 512 MiB), a removal costs writing
 *    descriptors, dropping the pages' translated code and a TLB flush, and QEMU's TLB caches the
 *    combined translation: the walk is paid on a TLB miss only. With no holes, HCR_EL2.VM is
 *    clear and the tables are unmapped: the hot path is exactly what it was.
 *  - A guest access to a hole is a stage 2 translation fault, which the CPU model routes to EL2
 *    (qemu/target/arm/tlb_helper.c arm_deliver_fault: stage2 -> target EL 2, HPFAR_EL2 = IPA,
 *    FAR_EL2 = the virtual address, ELR_EL2 = the faulting instruction). The machine, as Xen's
 *    do_trap_stage2_abort_guest does (xen/arch/arm/traps.c), injects into EL1 what
 *    inject_abt64_exception injects: ESR_EL1 = EC data abort (0x24 from EL0, 0x25 from EL1) or
 *    instruction abort (0x20 / 0x21), IL = 1, ISS = 0 (so DFSC/IFSC 0); FAR_EL1 = the faulting
 *    virtual address; ELR_EL1 = the faulting instruction; SPSR_EL1 = the interrupted PSTATE;
 *    PSTATE = EL1h with D, A, I, F masked; PC = VBAR_EL1 + 0x400 from EL0t, + 0x200 otherwise
 *    (Xen's exception_handler64, which uses the current-SPx vector from EL1t as well).
 *    A stage 2 fault outside RAM (the tables' address, past the IPA size) is a guest fault, as
 *    any access outside RAM and devices is.
 *
 * Removed pages read as zero in the host buffer (their host memory is given back: HostRam
 * discard), so a snapshot carries no stale bytes; pages added back are zero.
 * Services reach guest memory through `HoleAwareMemory`: an access touching a hole fails with a
 * GuestMemoryError, never reading or writing the page.
 */
import { GuestMemoryError, MachineError, type GuestMemory, type MemoryRegion } from '@plugvisor/core';
import { HostRam, Reg, type CpuInternals, type SysReg } from '../ffi/unicorn.js';
import { Layout } from '../board/layout.js';
import { Sys } from '../cpu/sysregs.js';
import { GuestFault } from '../errors.js';
import type { Vcpu } from '../cpu/vcpu.js';

export const GUEST_PAGE_SIZE = 4096;
const PAGE = 4096n;
/** Pending physical ranges of translated code to drop per engine before "drop all RAM" is cheaper. */
const MAX_PENDING_RANGES = 4096;

// ---- the set of removed pages ----------------------------------------------------------------

/** A run of removed pages: [guest-physical address as 0x hex, page count] (the snapshot form). */
export type HoleRun = readonly [string, number];

/**
 * Which of `pages` pages are removed: one bit per page (RAM / 32 KiB bytes: 16 KiB for 512 MiB),
 * whatever the pattern; runs are read back by scanning words, skipping empty ones.
 */
export class PageHoles {
  private readonly bits: Uint32Array;
  /** How many pages are removed. */
  count = 0;

  constructor(readonly pages: number) {
    this.bits = new Uint32Array(Math.ceil(pages / 32));
  }

  has(page: number): boolean {
    return (this.bits[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /** Marks page removed (true) or present (false); returns whether it changed. */
  set(page: number, removed: boolean): boolean {
    const w = page >>> 5;
    const b = 1 << (page & 31);
    const was = (this.bits[w]! & b) !== 0;
    if (was === removed) return false;
    this.bits[w] = removed ? this.bits[w]! | b : this.bits[w]! & ~b;
    this.count += removed ? 1 : -1;
    return true;
  }

  /** Is any page of [first, first + n) removed? */
  anyIn(first: number, n: number): boolean {
    if (this.count === 0 || n <= 0) return false;
    const end = first + n;
    for (let p = first; p < end; ) {
      const w = this.bits[p >>> 5]!;
      if (w === 0) {
        p = (p | 31) + 1;
        continue;
      }
      if (w & (1 << (p & 31))) return true;
      p++;
    }
    return false;
  }

  /** The lowest present page, or -1 if every page is removed. */
  firstPresent(): number {
    for (let w = 0; w < this.bits.length; w++) {
      const v = this.bits[w]!;
      if (v === 0xffff_ffff) continue;
      for (let b = 0; b < 32; b++) if (!(v & (1 << b))) return w * 32 + b < this.pages ? w * 32 + b : -1;
    }
    return -1;
  }

  /** Every maximal run of removed pages, ascending: [first page, count]. */
  runs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    if (this.count === 0) return out;
    let start = -1;
    for (let w = 0; w < this.bits.length; w++) {
      const v = this.bits[w]!;
      if (start < 0 && v === 0) continue;
      if (start >= 0 && v === 0xffff_ffff) continue;
      for (let b = 0; b < 32; b++) {
        const p = w * 32 + b;
        if (p >= this.pages) break;
        const on = (v & (1 << b)) !== 0;
        if (on && start < 0) start = p;
        else if (!on && start >= 0) {
          out.push([start, p - start]);
          start = -1;
        }
      }
    }
    if (start >= 0) out.push([start, this.pages - start]);
    return out;
  }

  clear(): void {
    this.bits.fill(0);
    this.count = 0;
  }
}

/**
 * Checks a snapshot's hole list for a RAM of `ramSize` bytes: ascending, page-aligned runs of at
 * least one page inside RAM, neither overlapping nor touching (the canonical form `save` writes).
 * Returns the runs as [first page, count]; throws `fail(problem)`'s error naming the entry.
 */
export function parseHoleRuns(value: unknown, ramSize: number, fail: (problem: string) => never): Array<[number, number]> {
  const pages = ramSize / GUEST_PAGE_SIZE;
  if (!Array.isArray(value) || value.length > Math.ceil(pages / 2)) fail(`must be an array of at most ${Math.ceil(pages / 2)} [address, pages] runs`);
  const out: Array<[number, number]> = [];
  let next = 0;
  (value as unknown[]).forEach((run, i) => {
    if (!Array.isArray(run) || run.length !== 2 || typeof run[0] !== 'string' || !/^0x[0-9a-f]{1,16}$/.test(run[0]) || typeof run[1] !== 'number') {
      fail(`entry ${i} must be ["0x<guest-physical address>", <pages>]`);
    }
    const gpa = BigInt(run[0] as string);
    const n = run[1] as number;
    if (gpa % PAGE !== 0n) fail(`entry ${i}: address ${run[0]} is not 4 KiB aligned`);
    const first = Number((gpa - Layout.RAM_BASE) / PAGE);
    if (gpa < Layout.RAM_BASE || first >= pages) fail(`entry ${i}: address ${run[0]} is outside RAM`);
    if (!Number.isInteger(n) || n < 1 || first + n > pages) fail(`entry ${i}: ${String(n)} pages from ${run[0]} do not fit in RAM`);
    if (first < next) fail(`entry ${i}: runs must be ascending, apart and not overlapping`);
    next = first + n + 1;
    out.push([first, n]);
  });
  return out;
}

// ---- service access to guest memory ------------------------------------------------------------

/** A service touched a removed page: the access failed before reading or writing anything. */
export class GuestPageAbsentError extends GuestMemoryError {
  constructor(gpa: bigint, length: number) {
    super(gpa, length);
    this.message = `guest-physical range 0x${gpa.toString(16)}+${length} touches a page removed from the guest`;
  }
}

/**
 * The machine's GuestMemory: RAM as the core's FlatGuestMemory sees it, minus removed pages. With
 * no holes an access costs one compare more.
 */
export class HoleAwareMemory implements GuestMemory {
  constructor(
    private readonly inner: GuestMemory,
    private readonly holes: PageHoles,
  ) {}

  private touches(gpa: bigint, length: number): boolean {
    if (length <= 0 || gpa < Layout.RAM_BASE) return false;
    const first = Number((gpa - Layout.RAM_BASE) >> 12n);
    const last = Number((gpa + BigInt(length) - 1n - Layout.RAM_BASE) >> 12n);
    if (first >= this.holes.pages) return false;
    return this.holes.anyIn(first, Math.min(last, this.holes.pages - 1) - first + 1);
  }

  private check(gpa: bigint, length: number): void {
    if (this.holes.count !== 0 && this.touches(gpa, length)) throw new GuestPageAbsentError(gpa, length);
  }

  contains(gpa: bigint, length: number): boolean {
    return this.inner.contains(gpa, length) && (this.holes.count === 0 || !this.touches(gpa, length));
  }
  read(gpa: bigint, into: Uint8Array): void {
    this.check(gpa, into.byteLength);
    this.inner.read(gpa, into);
  }
  write(gpa: bigint, from: Uint8Array): void {
    this.check(gpa, from.byteLength);
    this.inner.write(gpa, from);
  }
  readU32(gpa: bigint): number {
    this.check(gpa, 4);
    return this.inner.readU32(gpa);
  }
  writeU32(gpa: bigint, value: number): void {
    this.check(gpa, 4);
    this.inner.writeU32(gpa, value);
  }
  readU64(gpa: bigint): bigint {
    this.check(gpa, 8);
    return this.inner.readU64(gpa);
  }
  writeU64(gpa: bigint, value: bigint): void {
    this.check(gpa, 8);
    this.inner.writeU64(gpa, value);
  }
  orU32(gpa: bigint, bits: number): number {
    this.check(gpa, 4);
    return this.inner.orU32(gpa, bits);
  }
  andU32(gpa: bigint, mask: number): number {
    this.check(gpa, 4);
    return this.inner.andU32(gpa, mask);
  }
  cmpxchgU32(gpa: bigint, expected: number, replacement: number): number {
    this.check(gpa, 4);
    return this.inner.cmpxchgU32(gpa, expected, replacement);
  }
  regions(): readonly MemoryRegion[] {
    return this.inner.regions();
  }
}

// ---- stage 2 tables --------------------------------------------------------------------------

/** Where the stage 2 tables sit in every engine's physical map: 256 GiB, a 1 GiB IPA slot the tables leave invalid. */
export const STAGE2_BASE = 0x40_0000_0000n;
const STAGE2_SLOT = Number(STAGE2_BASE >> 30n);
/**
 * Stage 2 block/page attributes (Arm ARM D8.3 "Stage 2 ... descriptor" fields): MemAttr[5:2]
 * 0b1111 (Normal, write-back: stage 1 decides, as a stage 2 that changes nothing), S2AP[7:6]
 * 0b11 (read/write), SH[9:8] inner shareable, AF[10]; XN[54:53] 0 (executable).
 */
const S2_ATTRS = (0xfn << 2n) | (3n << 6n) | (3n << 8n) | (1n << 10n);
const BLOCK = 1n;
const TABLE_OR_PAGE = 3n;
/**
 * VTCR_EL2: T0SZ 25 (39-bit IPA: 512 GiB, one level 1 table), SL0 1 (walk starts at level 1 with
 * a 4 KiB granule), IRGN0/ORGN0 write-back, SH0 inner, TG0 4 KiB, PS 0b010 (40-bit PA), RES1 bit 31.
 */
const VTCR = 25n | (1n << 6n) | (1n << 8n) | (1n << 10n) | (3n << 12n) | (2n << 16n) | (1n << 31n);
const VTCR_EL2: SysReg = Object.freeze({ name: 'VTCR_EL2', op0: 3, op1: 4, crn: 2, crm: 1, op2: 2 });
const VTTBR_EL2: SysReg = Object.freeze({ name: 'VTTBR_EL2', op0: 3, op1: 4, crn: 2, crm: 1, op2: 0 });
const FAR_EL2: SysReg = Object.freeze({ name: 'FAR_EL2', op0: 3, op1: 4, crn: 6, crm: 0, op2: 0 });
const HPFAR_EL2: SysReg = Object.freeze({ name: 'HPFAR_EL2', op0: 3, op1: 4, crn: 6, crm: 0, op2: 4 });
/** ESR_ELx exception classes (Arm ARM D13.2.37): aborts from a lower EL / the same EL. */
export const EC_IABT_LOWER = 0x20;
export const EC_IABT_CUR = 0x21;
export const EC_DABT_LOWER = 0x24;
export const EC_DABT_CUR = 0x25;
const ESR_IL = 1n << 25n;
/** PSTATE after Xen's injection: EL1h with D, A, I, F masked (PSR_MODE_EL1h | PSR_{DBG,ABT,IRQ,FIQ}_MASK). */
const XEN_INJECT_PSTATE = 0x3c5n;

/**
 * The stage 2 tables in one host buffer: page 0 the level 1 table, pages 1..3 the level 2 tables
 * of the GiBs RAM can occupy (1..3), page 4 + k the level 3 table of RAM's k-th 2 MiB.
 */
class Stage2Tables {
  readonly ram: HostRam;
  private readonly d: BigUint64Array;

  constructor(private readonly ramSize: number) {
    this.ram = HostRam.allocate((4 + Math.ceil(ramSize / (2 << 20))) * GUEST_PAGE_SIZE);
    this.d = new BigUint64Array(this.ram.bytes.buffer, this.ram.bytes.byteOffset, this.ram.size / 8);
    for (let i = 0; i < 512; i++) this.d[i] = i === STAGE2_SLOT ? 0n : (BigInt(i) << 30n) | S2_ATTRS | BLOCK;
  }

  private tableAt(page: number): bigint {
    return STAGE2_BASE + BigInt(page) * PAGE;
  }

  /** Makes the page at `gpa` (in RAM) mapped or not. */
  setPage(gpa: bigint, present: boolean): void {
    const g = Number(gpa >> 30n);
    const l1 = this.d[g]!;
    if ((l1 & 3n) === BLOCK) {
      for (let i = 0; i < 512; i++) this.d[g * 512 + i] = (BigInt(g) << 30n) | (BigInt(i) << 21n) | S2_ATTRS | BLOCK;
      this.d[g] = this.tableAt(g) | TABLE_OR_PAGE;
    }
    const i2 = g * 512 + Number((gpa >> 21n) & 511n);
    const k = Number((gpa - Layout.RAM_BASE) >> 21n);
    if ((this.d[i2]! & 3n) === BLOCK) {
      const base = gpa & ~((2n << 20n) - 1n);
      for (let i = 0; i < 512; i++) this.d[(4 + k) * 512 + i] = (base + BigInt(i) * PAGE) | S2_ATTRS | TABLE_OR_PAGE;
      this.d[i2] = this.tableAt(4 + k) | TABLE_OR_PAGE;
    }
    this.d[(4 + k) * 512 + Number((gpa >> 12n) & 511n)] = present ? gpa | S2_ATTRS | TABLE_OR_PAGE : 0n;
  }

  free(): void {
    this.ram.free();
  }
}

// ---- the machine's holes -----------------------------------------------------------------------

/**
 * The removed pages of one machine and their enforcement on every vCPU's engine (see the file
 * comment). Engines are changed only between their runs or from inside the running vCPU's hook
 * (a hypercall handler), never while another engine runs: the machine runs one at a time.
 */
export class GuestPageHoles {
  readonly set: PageHoles;
  private tables: Stage2Tables | undefined;

  constructor(
    private readonly vcpus: readonly Vcpu[],
    private readonly ram: HostRam,
    private readonly ramSize: number,
  ) {
    this.set = new PageHoles(ramSize / GUEST_PAGE_SIZE);
  }

  /** How many pages are removed. */
  get count(): number {
    return this.set.count;
  }

  /** [first page, count] of [gpa, gpa + count pages), checked: inside RAM, 4 KiB aligned. */
  private range(gpa: bigint, count: number, what: string): [number, number] {
    if (typeof gpa !== 'bigint' || gpa % PAGE !== 0n) throw new MachineError(`${what}: address 0x${BigInt(gpa).toString(16)} is not 4 KiB aligned`);
    if (!Number.isInteger(count) || count < 1) throw new MachineError(`${what}: page count must be a positive integer, got ${count}`);
    const first = gpa >= Layout.RAM_BASE ? Number((gpa - Layout.RAM_BASE) / PAGE) : -1;
    if (first < 0 || first + count > this.set.pages) {
      throw new MachineError(`${what}: 0x${gpa.toString(16)} + ${count} pages is not inside RAM (0x${Layout.RAM_BASE.toString(16)} + ${this.ramSize} bytes)`);
    }
    return [first, count];
  }

  isPresent(gpa: bigint): boolean {
    if (gpa < Layout.RAM_BASE) return false;
    const p = Number((gpa - Layout.RAM_BASE) >> 12n);
    return p < this.set.pages && !this.set.has(p);
  }

  /** Removes the present pages of [gpa, gpa + count pages); returns how many were removed. */
  remove(gpa: bigint, count: number): number {
    const [first] = this.range(gpa, count, 'removeGuestPages');
    const changed: Array<[number, number]> = [];
    for (let p = first; p < first + count; p++) {
      if (this.set.has(p)) continue;
      const last = changed[changed.length - 1];
      if (last && last[0] + last[1] === p) last[1]++;
      else changed.push([p, 1]);
    }
    if (changed.length === 0) return 0;
    const tables = this.ensureTables();
    let n = 0;
    for (const [p, k] of changed) {
      for (let i = p; i < p + k; i++) {
        this.set.set(i, true);
        tables.setPage(pageGpa(i), false);
      }
      this.ram.discard(p * GUEST_PAGE_SIZE, k * GUEST_PAGE_SIZE);
      n += k;
    }
    // Every engine's TLB and translated code of these pages must go before it next runs guest
    // code: `settle`, called by the machine before each slice and after each hypercall (so a
    // handler removing pages in a loop pays for the engine once, not per call).
    for (const v of this.vcpus) {
      const q = (this.pending[v.index] ??= { flush: false, all: false, ranges: [] });
      q.flush = true;
      if (!v.ran || q.all) continue;
      for (const [p, k] of changed) {
        const last = q.ranges[q.ranges.length - 1];
        const begin = pageGpa(p);
        if (last && last[1] === begin) last[1] = pageGpa(p + k);
        else q.ranges.push([begin, pageGpa(p + k)]);
      }
      if (q.ranges.length > MAX_PENDING_RANGES) {
        q.all = true;
        q.ranges.length = 0;
      }
    }
    return n;
  }

  /** Per vCPU: its TLB must be flushed, and its translations of these physical ranges (or all RAM) dropped. */
  private readonly pending: { flush: boolean; all: boolean; ranges: [bigint, bigint][] }[] = [];

  /** Is there engine work pending for `v` (settle)? One property read: the hot path's whole cost. */
  unsettled(v: Vcpu): boolean {
    return this.pending[v.index]?.flush === true;
  }

  /**
   * Makes `v`'s engine see the removals so far: its translated code of removed pages dropped (by
   * physical address: stage 1 and stage 2 off meanwhile, since uc_ctl_remove_cache translates the
   * range's first address and a removed page no longer translates), and its TLB flushed (the
   * HCR_EL2.VM and SCTLR_EL1.M changes flush it: helper.c hcr_write, and Vcpu.withMmuOff).
   */
  settle(v: Vcpu): void {
    const q = this.pending[v.index];
    if (!q?.flush) return;
    const stage2 = this.tables !== undefined;
    if (v.ran && (q.all || q.ranges.length > 0)) {
      v.withMmuOff(() => {
        if (stage2) v.setStage2(false);
        try {
          if (q.all) v.engine.removeCache(Layout.RAM_BASE, Layout.RAM_BASE + BigInt(this.ramSize));
          else for (const [begin, end] of q.ranges) v.engine.removeCache(begin, end);
        } finally {
          if (stage2) v.setStage2(true);
        }
      });
    } else if (stage2) {
      flushStage2(v);
    }
    q.flush = false;
    q.all = false;
    q.ranges.length = 0;
  }

  /** Adds the removed pages of [gpa, gpa + count pages) back, zeroed; returns how many were added. */
  add(gpa: bigint, count: number): number {
    const [first] = this.range(gpa, count, 'addGuestPages');
    let n = 0;
    for (let p = first; p < first + count; p++) {
      if (!this.set.has(p)) continue;
      this.ram.discard(p * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
      this.tables!.setPage(pageGpa(p), true);
      this.set.set(p, false);
      n++;
    }
    // A TLB never holds a failed translation: nothing to flush for pages that appear.
    if (n > 0 && this.set.count === 0) this.dropTables();
    return n;
  }

  /** The removed pages as runs, ascending (the snapshot form). */
  save(): HoleRun[] {
    return this.set.runs().map(([p, n]) => [`0x${pageGpa(p).toString(16)}`, n] as const);
  }

  /** Removes exactly the pages of `runs` (checked: parseHoleRuns), on a machine with none removed. */
  restore(runs: readonly (readonly [number, number])[]): void {
    if (this.set.count !== 0) throw new MachineError('restoring guest page holes onto a machine that already has some');
    for (const [p, n] of runs) this.remove(pageGpa(p), n);
  }

  /**
   * The lowest present RAM address, for dropping an engine's RAM translations by physical range
   * (uc_ctl_remove_cache translates the range's first address: a removed page there would make
   * it drop nothing). Undefined if every page is removed.
   */
  firstPresent(): bigint | undefined {
    if (this.set.count === 0) return Layout.RAM_BASE;
    const p = this.set.firstPresent();
    return p < 0 ? undefined : pageGpa(p);
  }

  /**
   * The vCPU's exception went to EL2 (inside its interrupt hook, after the CPU model took it): if
   * it is a stage 2 abort, inject what Xen injects (file comment) and return true — the engine
   * runs on at the guest's vector — or return the guest fault it is (an address outside RAM, or
   * a guest without a usable vector table). False: not a stage 2 abort.
   */
  onStage2Abort(v: Vcpu, cpu: CpuInternals): boolean | GuestFault {
    const e = v.engine;
    const esr = e.readSys(Sys.ESR_EL2);
    const ec = Number((esr >> 26n) & 0x3fn);
    if (ec !== EC_DABT_LOWER && ec !== EC_IABT_LOWER) return false;
    const far = e.readSys(FAR_EL2);
    const ipa = ((e.readSys(HPFAR_EL2) >> 4n) & ((1n << 40n) - 1n)) << 12n;
    const elr = e.read64(Reg.ELR_EL2);
    const spsr = e.readSys(Sys.SPSR_EL2) & 0xffff_ffffn;
    const kind = ec === EC_DABT_LOWER ? 'data' : 'instruction';
    if (this.isPresent(ipa) || ipa < Layout.RAM_BASE || ipa >= Layout.RAM_BASE + BigInt(this.ramSize)) {
      return new GuestFault(v.index, elr, `${kind} access at 0x${far.toString(16)} (physical 0x${(ipa | (far & 0xfffn)).toString(16)}): outside RAM and devices`);
    }
    const fromEl0 = ((spsr >> 2n) & 3n) === 0n;
    const vbar = e.readSys(Sys.VBAR_EL1);
    const what = `${kind} abort at 0x${far.toString(16)} (a removed page)`;
    if (vbar === 0n) return new GuestFault(v.index, elr, `unhandled ${what}: VBAR_EL1 is 0`);
    if (elr >= vbar && elr < vbar + 0x800n) return new GuestFault(v.index, elr, `recursive fault: ${what} inside the vector table`);
    const injected = (ec === EC_DABT_LOWER ? EC_DABT_LOWER : EC_IABT_LOWER) + (fromEl0 ? 0 : 1);
    e.writeSys(Sys.SPSR_EL1, spsr);
    e.write64(Reg.ELR_EL1, elr);
    e.writeSys(Sys.FAR_EL1, far);
    e.writeSys(Sys.ESR_EL1, ESR_IL | (BigInt(injected) << 26n));
    // The guest's SP was banked when the exception went to EL2 (helper.c aarch64_save_sp).
    e.write64(Reg.SP, e.read64(Reg.SP_EL1));
    e.write64(Reg.PSTATE, XEN_INJECT_PSTATE);
    e.write64(Reg.PC, vbar + (fromEl0 ? 0x400n : 0x200n));
    cpu.rebuildFlags();
    return true;
  }

  private ensureTables(): Stage2Tables {
    if (this.tables) return this.tables;
    for (const v of this.vcpus) {
      if (!v.cpu) throw new MachineError('removing guest pages needs the CPU internals of Unicorn (README "CPU"): this libunicorn build lacks them');
    }
    const t = new Stage2Tables(this.ramSize);
    const mapped: Vcpu[] = [];
    try {
      for (const v of this.vcpus) {
        v.engine.mapRam(STAGE2_BASE, t.ram);
        mapped.push(v);
        v.engine.writeSys(VTCR_EL2, VTCR);
        v.engine.writeSys(VTTBR_EL2, STAGE2_BASE);
        v.setStage2(true);
      }
    } catch (err) {
      for (const v of mapped) {
        v.setStage2(false);
        v.engine.unmap(STAGE2_BASE, t.ram.size);
      }
      t.free();
      throw err;
    }
    this.tables = t;
    return t;
  }

  /** The last hole is gone: stage 2 off (the TLB flushed with it), tables unmapped and freed. */
  private dropTables(): void {
    const t = this.tables;
    if (!t) return;
    for (const v of this.vcpus) {
      v.setStage2(false);
      v.engine.unmap(STAGE2_BASE, t.ram.size);
    }
    t.free();
    this.tables = undefined;
  }

  /** Frees the tables (the machine closes every engine first). */
  dispose(): void {
    this.tables?.free();
    this.tables = undefined;
  }
}

function pageGpa(page: number): bigint {
  return Layout.RAM_BASE + BigInt(page) * PAGE;
}

/**
 * Drops every stage 2 translation the vCPU's TLB holds: a VTTBR_EL2 write that changes it
 * flushes the stage 1+2 regimes (qemu/target/arm/helper.c vttbr_write); the VMID is changed and
 * changed back.
 */
function flushStage2(v: Vcpu): void {
  const e = v.engine;
  e.writeSys(VTTBR_EL2, STAGE2_BASE | (1n << 48n));
  e.writeSys(VTTBR_EL2, STAGE2_BASE);
}
