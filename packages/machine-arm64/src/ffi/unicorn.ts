/**
 * The one module of this package that touches koffi and native pointers.
 *
 * It wraps libunicorn 2.0.1 (Debian `libunicorn2`) for one purpose: running aarch64 guest code
 * over a host RAM buffer shared by several engines (one engine per vCPU). Everything above this
 * file sees typed methods, numbers, bigints and typed arrays, never a pointer.
 *
 * What this file guards against:
 *  - A JS exception thrown inside a koffi callback does not unwind through C: the C caller gets
 *    a default return value and the engine runs on (koffi documentation, "Callbacks": exceptions
 *    cannot cross the C boundary). Every hook body is wrapped: the error is kept, the engine is
 *    stopped (uc_emu_stop), and `start()` rethrows it.
 *  - Unicorn keeps one translated-block cache per uc_engine and does not see code changed behind
 *    its back (through the host view of shared RAM, or another engine): `removeCache()`
 *    (uc_ctl_remove_cache, include/unicorn/unicorn.h) drops a range. UC_CTL_TB_FLUSH is not
 *    offered: it rewrites the engine's whole code buffer (seconds of page zeroing).
 *  - The CPU model (UC_CTL_CPU_MODEL) can only be set before the CPU is instantiated, which the
 *    first memory mapping or register access does (include/unicorn/unicorn.h): it is set right
 *    after uc_open.
 *  - Guest RAM comes from mmap(2), so it is page aligned as uc_mem_map_ptr requires (4 KiB
 *    granularity, unicorn.h); mmap returns MAP_FAILED, (void *) -1, which koffi hands back as the
 *    pointer BigInt 0xffffffffffffffffn, and is checked as such; a koffi view of the mapping must
 *    not be touched after munmap, so RAM is freed only after every engine mapping it is closed.
 */
import { randomFillSync } from 'node:crypto';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { PlugvisorError } from '@plugvisor/core';

// ---- constants from unicorn.h / arm64.h (2.0.1) ---------------------------------------------

export const UC_ARCH_ARM64 = 2;
export const UC_MODE_ARM = 0;
export const UC_CPU_ARM64_MAX = 3;

export const UC_PROT_READ = 1;
export const UC_PROT_WRITE = 2;
export const UC_PROT_EXEC = 4;
export const UC_PROT_ALL = 7;

export const UC_HOOK_INTR = 1 << 0;
export const UC_HOOK_INSN = 1 << 1;
/** uc_arm64_insn: SYS (IC, DC, TLBI, AT ... instructions). */
const UC_ARM64_INS_MRS = 1;
const UC_ARM64_INS_MSR = 2;
const UC_ARM64_INS_SYS = 3;
/** An instruction count no slice reaches: "no limit" for an engine in count mode. */
export const UNLIMITED_COUNT = 2 ** 48;
export const UC_HOOK_MEM_READ_UNMAPPED = 1 << 4;
export const UC_HOOK_MEM_WRITE_UNMAPPED = 1 << 5;
export const UC_HOOK_MEM_FETCH_UNMAPPED = 1 << 6;
export const UC_HOOK_MEM_READ_PROT = 1 << 7;
export const UC_HOOK_MEM_WRITE_PROT = 1 << 8;
export const UC_HOOK_MEM_FETCH_PROT = 1 << 9;
const UC_HOOK_MEM_INVALID =
  UC_HOOK_MEM_READ_UNMAPPED |
  UC_HOOK_MEM_WRITE_UNMAPPED |
  UC_HOOK_MEM_FETCH_UNMAPPED |
  UC_HOOK_MEM_READ_PROT |
  UC_HOOK_MEM_WRITE_PROT |
  UC_HOOK_MEM_FETCH_PROT;

/** uc_mem_type values passed to invalid-memory hooks. */
export const UcMemType = Object.freeze({
  19: 'read from unmapped memory',
  20: 'write to unmapped memory',
  21: 'instruction fetch from unmapped memory',
  22: 'write to read-only memory',
  23: 'read from read-protected memory',
  24: 'instruction fetch from non-executable memory',
} as Record<number, string>);


/** UC_CTL(type, nr, rw) = type | nr << 26 | rw << 30 */
const UC_CTL_WRITE = (type: number, nr: number) => (type | (nr << 26) | (1 << 30)) >>> 0;
const UC_CTL_CPU_MODEL = 7;
const UC_CTL_TB_REMOVE_CACHE = 9;

/** Register ids (enum uc_arm64_reg, include/unicorn/arm64.h): X29 and X30 are 1 and 2 (UC_ARM64_REG_X29/X30, aliases FP/LR), not X0 + 29 / X0 + 30. */
export const Reg = Object.freeze({
  X29: 1,
  X30: 2,
  NZCV: 3,
  SP: 4,
  X0: 199,
  V0: 228,
  PC: 260,
  CPACR_EL1: 261,
  TPIDR_EL0: 262,
  TPIDRRO_EL0: 263,
  TPIDR_EL1: 264,
  PSTATE: 265,
  ELR_EL0: 266,
  ELR_EL1: 267,
  ELR_EL2: 268,
  ELR_EL3: 269,
  SP_EL0: 270,
  SP_EL1: 271,
  SP_EL2: 272,
  SP_EL3: 273,
  TTBR0_EL1: 274,
  TTBR1_EL1: 275,
  ESR_EL1: 277,
  FAR_EL1: 281,
  MAIR_EL1: 285,
  VBAR_EL1: 287,
  CP_REG: 290,
  FPCR: 291,
  FPSR: 292,
});

/** Unicorn register id of general-purpose register xN (0..30). */
export function xReg(n: number): number {
  if (n === 29) return Reg.X29;
  if (n === 30) return Reg.X30;
  if (n >= 0 && n <= 28) return Reg.X0 + n;
  throw new RangeError(`no register x${n}`);
}

/** A system register by its MRS/MSR encoding. */
export interface SysReg {
  readonly name: string;
  readonly op0: number;
  readonly op1: number;
  readonly crn: number;
  readonly crm: number;
  readonly op2: number;
}

// ---- errors --------------------------------------------------------------------------------

/** A libunicorn call failed (setup problems: missing library, bad mapping, bad register). */
export class UnicornError extends PlugvisorError {
  constructor(
    readonly call: string,
    readonly ucErr: number,
  ) {
    super('UNICORN', `${call} failed: ${ucErr} (${describeUcErr(ucErr)})`);
  }
}

// ---- library binding (lazy, once per process) ------------------------------------------------

interface Lib {
  uc_open: (arch: number, mode: number, out: (unknown | null)[]) => number;
  uc_close: (uc: unknown) => number;
  uc_strerror: (code: number) => string;
  uc_ctl: (uc: unknown, control: number, ...args: unknown[]) => number;
  uc_mem_map: (uc: unknown, address: bigint | number, size: number, perms: number) => number;
  uc_mem_map_ptr: (uc: unknown, address: bigint | number, size: number, perms: number, ptr: bigint) => number;
  uc_mem_write: (uc: unknown, address: bigint | number, bytes: Uint8Array, size: number) => number;
  uc_mem_unmap: (uc: unknown, address: bigint | number, size: number) => number;
  uc_mmio_map: (uc: unknown, address: bigint | number, size: number, rd: unknown, urd: null, wr: unknown, uwr: null) => number;
  uc_reg_read: (uc: unknown, regid: number, value: ArrayBufferView | bigint) => number;
  uc_reg_write: (uc: unknown, regid: number, value: ArrayBufferView | bigint) => number;
  uc_reg_read_batch: (uc: number, ids: number, vals: number, count: number) => number;
  uc_reg_write_batch: (uc: number, ids: number, vals: number, count: number) => number;
  uc_emu_start: (uc: unknown, begin: bigint, until: bigint, timeout: number, count: number) => number;
  uc_emu_stop: (uc: unknown) => number;
  uc_hook_add: (uc: unknown, hh: BigUint64Array, type: number, cb: unknown, ud: null, begin: number, end: number, ...extra: unknown[]) => number;
  uc_query: (uc: unknown, type: number, out: BigUint64Array) => number;
  mmap: (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => bigint;
  munmap: (addr: bigint, length: number) => number;
  madvise: (addr: bigint, length: number, advice: number) => number;
  getpid: () => number;
  process_vm_readv: (pid: number, local: BigUint64Array, liovcnt: number, remote: BigUint64Array, riovcnt: number, flags: number) => number | bigint;
  /**
   * QEMU functions libunicorn exports under their `_aarch64` names (see "CPU internals" below);
   * undefined where this build lacks one.
   */
  internal: {
    doInterrupt?: (cs: number) => void;
    rebuildHflags?: (env: number) => void;
    memoryRwDebug?: (cs: number, addr: bigint, buf: Uint8Array, len: number, isWrite: boolean) => number;
    physPageDebug?: (cs: number, addr: bigint, attrs: Uint32Array) => bigint;
  };
  IntrHook: TypeObject;
  MemHook: TypeObject;
  InsnSysHook: TypeObject;
  MmioRead: TypeObject;
  MmioWrite: TypeObject;
}

let lib: Lib | undefined;
let loadError: Error | undefined;

function load(): Lib {
  if (lib) return lib;
  if (loadError) throw loadError;
  try {
    const uc = koffi.load('libunicorn.so.2');
    const libc = koffi.load('libc.so.6');
    koffi.opaque('uc_engine');
    lib = {
      uc_open: uc.func('int uc_open(int arch, int mode, _Out_ uc_engine **uc)'),
      uc_close: uc.func('int uc_close(uc_engine *uc)'),
      uc_strerror: uc.func('const char *uc_strerror(int code)'),
      uc_ctl: uc.func('int uc_ctl(uc_engine *uc, int control, ...)'),
      uc_mem_map: uc.func('int uc_mem_map(uc_engine *uc, uint64_t address, size_t size, uint32_t perms)'),
      uc_mem_map_ptr: uc.func('int uc_mem_map_ptr(uc_engine *uc, uint64_t address, size_t size, uint32_t perms, void *ptr)'),
      uc_mem_write: uc.func('int uc_mem_write(uc_engine *uc, uint64_t address, const void *bytes, size_t size)'),
      uc_mem_unmap: uc.func('int uc_mem_unmap(uc_engine *uc, uint64_t address, size_t size)'),
      uc_mmio_map: uc.func(
        'int uc_mmio_map(uc_engine *uc, uint64_t address, size_t size, void *read_cb, void *user_data_read, void *write_cb, void *user_data_write)',
      ),
      uc_reg_read: uc.func('int uc_reg_read(uc_engine *uc, int regid, void *value)'),
      uc_reg_write: uc.func('int uc_reg_write(uc_engine *uc, int regid, const void *value)'),
      // The trap path's calls. The engine, ids and value pointers are addresses of stable native
      // memory passed as plain numbers (user-space addresses are below 2^47): koffi converts a
      // number to uintptr_t faster than a BigInt pointer (~13 ns a call, measured).
      uc_reg_read_batch: uc.func('int uc_reg_read_batch(uintptr_t uc, uintptr_t regs, uintptr_t vals, int count)'),
      uc_reg_write_batch: uc.func('int uc_reg_write_batch(uintptr_t uc, uintptr_t regs, uintptr_t vals, int count)'),
      uc_emu_start: uc.func('int uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count)'),
      uc_emu_stop: uc.func('int uc_emu_stop(uc_engine *uc)'),
      uc_hook_add: uc.func(
        'int uc_hook_add(uc_engine *uc, _Out_ size_t *hh, int type, void *callback, void *user_data, uint64_t begin, uint64_t end, ...)',
      ),
      uc_query: uc.func('int uc_query(uc_engine *uc, int type, _Out_ size_t *result)'),
      mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      munmap: libc.func('int munmap(void *addr, size_t length)'),
      madvise: libc.func('int madvise(void *addr, size_t length, int advice)'),
      getpid: libc.func('int getpid(void)'),
      process_vm_readv: libc.func(
        'intptr_t process_vm_readv(int pid, const void *local_iov, unsigned long liovcnt, const void *remote_iov, unsigned long riovcnt, unsigned long flags)',
      ),
      internal: bindInternals(uc),
      // Called for every trap. The hook ignores the engine pointer and user data, so they are
      // declared as plain integers: a pointer parameter costs a BigInt allocation per call
      // (~10 ns). Passing a pointer where the callee reads a narrower integer is harmless on
      // every 64-bit ABI koffi supports (register arguments).
      IntrHook: koffi.proto('void plugvisor_uc_hookintr(int uc, uint32_t intno, int user_data)'),
      MemHook: koffi.proto(
        'bool plugvisor_uc_hookmem(uc_engine *uc, int type, uint64_t address, int size, int64_t value, void *user_data)',
      ),
      InsnSysHook: koffi.proto('uint32_t plugvisor_uc_insn_sys(uc_engine *uc, int reg, void *cp_reg, void *user_data)'),
      MmioRead: koffi.proto('uint64_t plugvisor_uc_mmio_read(uc_engine *uc, uint64_t offset, unsigned int size, void *user_data)'),
      MmioWrite: koffi.proto(
        'void plugvisor_uc_mmio_write(uc_engine *uc, uint64_t offset, unsigned int size, uint64_t value, void *user_data)',
      ),
    } as unknown as Lib;
    return lib;
  } catch (e) {
    loadError = new PlugvisorError(
      'NO_UNICORN',
      `cannot load libunicorn.so.2 (install the Debian package libunicorn2: scripts/setup.sh does): ${(e as Error).message}`,
    );
    throw loadError;
  }
}

function bindInternals(uc: LibraryHandle): Lib['internal'] {
  const bind = <T>(decl: string): T | undefined => {
    try {
      return uc.func(decl) as unknown as T;
    } catch {
      return undefined;
    }
  };
  return {
    doInterrupt: bind('void arm_cpu_do_interrupt_aarch64(uintptr_t cs)'),
    rebuildHflags: bind('void arm_rebuild_hflags_aarch64(uintptr_t env)'),
    memoryRwDebug: bind('int cpu_memory_rw_debug_aarch64(uintptr_t cs, uint64_t addr, _Inout_ uint8_t *buf, uint64_t len, bool is_write)'),
    // MemTxAttrs is a 32-bit bitfield struct (qemu/include/exec/memattrs.h), written through the pointer.
    physPageDebug: bind('uint64_t arm_cpu_get_phys_page_attrs_debug_aarch64(uintptr_t cs, uint64_t addr, _Out_ uint32_t *attrs)'),
  };
}

/** True if libunicorn 2 can be loaded on this host. */
export function unicornAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

function describeUcErr(code: number): string {
  try {
    return load().uc_strerror(code);
  } catch {
    return 'unknown';
  }
}

function check(call: string, rc: number): void {
  if (rc !== 0) throw new UnicornError(call, rc);
}

// ---- host RAM ------------------------------------------------------------------------------

/** Page-aligned anonymous host memory, shared zero-copy by every engine and by JS. */
export class HostRam {
  readonly bytes: Uint8Array;
  private freed = false;

  private constructor(
    /** @internal native address, for uc_mem_map_ptr only */
    readonly ptr: bigint,
    readonly size: number,
  ) {
    this.bytes = new Uint8Array(koffi.view(ptr, size));
  }

  static allocate(size: number): HostRam {
    if (size <= 0 || size % 4096 !== 0) {
      throw new PlugvisorError('BAD_RAM_SIZE', `RAM size must be a positive multiple of 4 KiB, got ${size}`);
    }
    const l = load();
    // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE: pages cost nothing until touched.
    const ptr = l.mmap(null, size, 3, 0x02 | 0x20 | 0x4000, -1, 0);
    if (ptr === 0xffff_ffff_ffff_ffffn || ptr === 0n) {
      throw new PlugvisorError('NO_MEMORY', `cannot map ${size} bytes of guest RAM`);
    }
    return new HostRam(ptr, size);
  }

  /**
   * Gives the host pages of [offset, offset + length) back and makes them read as zero
   * (madvise(2) MADV_DONTNEED on a private anonymous mapping: "subsequent accesses of pages in
   * the range ... will result in zero-fill-on-demand pages"); offset and length are multiples of
   * 4 KiB. Where the host refuses (another page size), the bytes are zeroed instead.
   */
  discard(offset: number, length: number): void {
    if (length <= 0) return;
    if (load().madvise(this.ptr + BigInt(offset), length, 4 /* MADV_DONTNEED */) !== 0) this.bytes.fill(0, offset, offset + length);
  }

  /** Unmaps the memory. Only call after every engine mapping it is closed (a koffi view of unmapped memory faults). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    load().munmap(this.ptr, this.size);
  }
}

// ---- register batches ----------------------------------------------------------------------

/**
 * A fixed list of registers read or written with one FFI call. Values live in stable native
 * memory viewed as `u64` and as `u32` halves (low word first), so the hot path allocates nothing.
 */
export class RegBatch {
  readonly u64: BigUint64Array;
  readonly u32: Uint32Array;
  /** The register ids, in value order. */
  readonly ids: readonly number[];
  private readonly count: number;
  private readonly idsAddr: number;
  private readonly ptrsAddr: number;
  private readonly uc: number;
  /** @internal the native blocks, freed by the engine's close() */
  readonly blocks: readonly bigint[];

  constructor(engine: UcEngine, ids: readonly number[]) {
    const n = ids.length;
    this.count = n;
    this.ids = Object.freeze([...ids]);
    this.uc = engine.address;
    const idsPtr = koffi.alloc('int', Math.max(n, 1)) as unknown as bigint;
    new Int32Array(koffi.view(idsPtr, n * 4)).set(ids);
    const vals = koffi.alloc('uint64_t', Math.max(n, 1)) as unknown as bigint;
    const ptrs = koffi.alloc('void *', Math.max(n, 1)) as unknown as bigint;
    this.blocks = [idsPtr, vals, ptrs];
    this.u64 = new BigUint64Array(koffi.view(vals, n * 8));
    this.u32 = new Uint32Array(this.u64.buffer, this.u64.byteOffset, n * 2);
    const ptrArr = new BigUint64Array(koffi.view(ptrs, n * 8));
    for (let i = 0; i < n; i++) ptrArr[i] = vals + BigInt(8 * i);
    this.idsAddr = Number(idsPtr);
    this.ptrsAddr = Number(ptrs);
  }

  read(): void {
    const rc = load().uc_reg_read_batch(this.uc, this.idsAddr, this.ptrsAddr, this.count);
    if (rc !== 0) throw new UnicornError('uc_reg_read_batch', rc);
  }

  write(): void {
    const rc = load().uc_reg_write_batch(this.uc, this.idsAddr, this.ptrsAddr, this.count);
    if (rc !== 0) throw new UnicornError('uc_reg_write_batch', rc);
  }
}

// ---- the engine ----------------------------------------------------------------------------

export type MmioReadFn = (offset: number, size: number) => number;
export type MmioWriteFn = (offset: number, size: number, value: number) => void;
export interface MemFault {
  readonly type: number;
  readonly address: bigint;
  readonly size: number;
}

/** One Unicorn aarch64 engine (one vCPU). */
export class UcEngine {
  /** @internal the uc_engine pointer */
  readonly handle: unknown;
  /** @internal the same pointer as a number, for the trap path's calls (RegBatch) */
  readonly address: number;
  private readonly callbacks: unknown[] = [];
  private readonly cell = new BigUint64Array(1);
  private readonly vcell = new BigUint64Array(2);
  private readonly cp = new DataView(new ArrayBuffer(32));
  private readonly cpBytes = new Uint8Array(this.cp.buffer);
  private readonly hh = new BigUint64Array(1);
  /** An exception thrown by a hook body, rethrown by start() (exceptions do not cross koffi callbacks). */
  private hookError: unknown = undefined;
  private closed = false;

  private constructor(handle: unknown) {
    this.handle = handle;
    this.address = Number(typeof handle === 'bigint' ? handle : koffi.address(handle));
  }

  /** Opens an aarch64 engine with the `max` CPU model (before a mapping or register access instantiates the CPU: unicorn.h UC_CTL_CPU_MODEL). */
  static open(): UcEngine {
    const l = load();
    const out: (unknown | null)[] = [null];
    check('uc_open', l.uc_open(UC_ARCH_ARM64, UC_MODE_ARM, out));
    const e = new UcEngine(out[0]);
    check('uc_ctl(CPU_MODEL)', l.uc_ctl(e.handle, UC_CTL_WRITE(UC_CTL_CPU_MODEL, 1), 'int', UC_CPU_ARM64_MAX));
    return e;
  }

  mapRam(base: bigint, ram: HostRam): void {
    check('uc_mem_map_ptr', load().uc_mem_map_ptr(this.handle, base, ram.size, UC_PROT_ALL, ram.ptr));
  }

  /** Removes the whole mapping at [base, base + size) (uc_mem_unmap of a region mapped as one: no split). */
  unmap(base: bigint, size: number): void {
    check('uc_mem_unmap', load().uc_mem_unmap(this.handle, base, size));
  }

  /** Maps a private read-only, executable page range and fills it (a boot ROM). */
  mapRom(base: bigint, size: number, contents: Uint8Array): void {
    const l = load();
    check('uc_mem_map', l.uc_mem_map(this.handle, base, size, UC_PROT_READ | UC_PROT_EXEC));
    check('uc_mem_write', l.uc_mem_write(this.handle, base, contents, contents.byteLength));
  }

  /** Maps a device region whose accesses call `read`/`write` (offset from `base`). */
  mapMmio(base: bigint, size: number, read: MmioReadFn, write: MmioWriteFn): void {
    const l = load();
    const rd = this.register((_uc: unknown, offset: number | bigint, sz: number) => {
      try {
        return read(Number(offset), sz);
      } catch (e) {
        this.fail(e);
        return 0;
      }
    }, l.MmioRead);
    const wr = this.register((_uc: unknown, offset: number | bigint, sz: number, value: number | bigint) => {
      try {
        write(Number(offset), sz, Number(BigInt.asUintN(32, BigInt(value))));
      } catch (e) {
        this.fail(e);
      }
    }, l.MmioWrite);
    check('uc_mmio_map', l.uc_mmio_map(this.handle, base, size, rd, null, wr, null));
  }

  /** Calls `fn(intno)` for every CPU exception (HVC = 11, SMC = 13, UDEF = 1, SVC = 2, ...). */
  onInterrupt(fn: (intno: number) => void): void {
    const l = load();
    const cb = this.register((_uc: unknown, intno: number) => {
      try {
        fn(intno);
      } catch (e) {
        this.fail(e);
      }
    }, l.IntrHook);
    check('uc_hook_add(INTR)', l.uc_hook_add(this.handle, this.hh, UC_HOOK_INTR, cb, null, 1, 0));
  }

  /**
   * Calls `fn` for an access to unmapped or protected memory; the engine then stops with the
   * matching UC_ERR_* (the access is not retried).
   */
  onInvalidMemory(fn: (fault: MemFault) => void): void {
    const l = load();
    const cb = this.register((_uc: unknown, type: number, address: number | bigint, size: number) => {
      try {
        fn({ type, address: BigInt.asUintN(64, BigInt(address)), size });
      } catch (e) {
        this.fail(e);
      }
      return false;
    }, l.MemHook);
    check('uc_hook_add(MEM_INVALID)', l.uc_hook_add(this.handle, this.hh, UC_HOOK_MEM_INVALID, cb, null, 1, 0));
  }

  /**
   * Calls `fn(op1, crn, crm, op2)` when the guest executes a SYS instruction (cache and TLB
   * maintenance, address translation). Used to notice instruction-cache invalidation, after
   * which other engines must drop translated code (one TB cache per engine: uc_ctl_remove_cache). Cost: one callback per SYS executed.
   */
  onSys(fn: (op1: number, crn: number, crm: number, op2: number) => void): void {
    const l = load();
    const cb = this.register((_uc: unknown, _reg: number, cp: unknown) => {
      try {
        // struct uc_arm64_cp_reg { u32 crn, crm, op0, op1, op2; u64 val; }
        const f = koffi.decode(cp, 'uint32_t', 5) as number[];
        fn(f[3]!, f[0]!, f[1]!, f[4]!);
      } catch (e) {
        this.fail(e);
      }
      return 0; // not handled: the instruction executes normally
    }, l.InsnSysHook);
    check('uc_hook_add(INSN SYS)', l.uc_hook_add(this.handle, this.hh, UC_HOOK_INSN, cb, null, 1, 0, 'int', UC_ARM64_INS_SYS));
  }

  /**
   * Calls `fn(op0, op1, crn, crm, op2, lo, hi)` (the value's 32-bit halves) before the guest executes an MSR (register form)
   * to a system register; `fn` returning true skips the instruction (the register keeps its
   * value). Cost: one callback per such MSR executed (MSR immediate, e.g. `msr daifclr, #2`,
   * is not hooked: Unicorn's qemu/target/arm/translate-a64.c hooks only handle_sys).
   */
  onMsr(fn: (op0: number, op1: number, crn: number, crm: number, op2: number, lo: number, hi: number) => boolean): void {
    const l = load();
    const cb = this.register((_uc: unknown, _reg: number, cp: unknown) => {
      try {
        // struct uc_arm64_cp_reg { u32 crn, crm, op0, op1, op2; u64 val; } (val at offset 24),
        // in one decode: a kernel writes DAIF this way on every irqrestore, so no BigInt here.
        const f = koffi.decode(cp, 'uint32_t', 8) as number[];
        return fn(f[2]!, f[3]!, f[0]!, f[1]!, f[4]!, f[6]!, f[7]!) ? 1 : 0;
      } catch (e) {
        this.fail(e);
        return 0;
      }
    }, l.InsnSysHook);
    check('uc_hook_add(INSN MSR)', l.uc_hook_add(this.handle, this.hh, UC_HOOK_INSN, cb, null, 1, 0, 'int', UC_ARM64_INS_MSR));
  }

  /**
   * Calls `fn(op0, op1, crn, crm, op2)` before the guest executes an MRS (register form) of a
   * system register; if `fn` returns a value, the instruction is skipped and its destination
   * register gets that value (XZR: discarded). Cost: one callback per MRS executed.
   */
  onMrs(fn: (op0: number, op1: number, crn: number, crm: number, op2: number) => bigint | undefined): void {
    const l = load();
    const cb = this.register((_uc: unknown, reg: number, cp: unknown) => {
      try {
        const f = koffi.decode(cp, 'uint32_t', 5) as number[];
        const value = fn(f[2]!, f[3]!, f[0]!, f[1]!, f[4]!);
        if (value === undefined) return 0;
        if ((reg >= Reg.X0 && reg <= Reg.X0 + 28) || reg === Reg.X29 || reg === Reg.X30) this.write64(reg, value);
        return 1;
      } catch (e) {
        this.fail(e);
        return 0;
      }
    }, l.InsnSysHook);
    check('uc_hook_add(INSN MRS)', l.uc_hook_add(this.handle, this.hh, UC_HOOK_INSN, cb, null, 1, 0, 'int', UC_ARM64_INS_MRS));
  }

  private register(fn: (...args: any[]) => unknown, proto: TypeObject): unknown {
    const cb = koffi.register(fn, koffi.pointer(proto));
    this.callbacks.push(cb);
    return cb;
  }

  private fail(e: unknown): void {
    if (this.hookError === undefined) this.hookError = e ?? new Error('hook failed');
    load().uc_emu_stop(this.handle);
  }

  /**
   * Runs from `begin` until `until` is reached, a hook stops the engine, the guest executes WFI
   * (EXCP_HLT ends the run), `timeoutUs` elapses (0 = no timeout) or `count` instructions ran
   * (0 = no limit). Returns the uc_err code; rethrows an exception a hook raised.
   */
  start(begin: bigint, until: bigint, timeoutUs: number, count = 0): number {
    // Unicorn counts instructions with a code hook, and a start with count 0 removes that hook
    // and drops every translated block (~100 ms). So once an engine has run counted, it stays
    // counted: a later "no limit" start passes an unlimited count instead of 0.
    if (count > 0) this.counted = true;
    else if (this.counted) count = UNLIMITED_COUNT;
    const rc = load().uc_emu_start(this.handle, begin, until, timeoutUs, count);
    const err = this.hookError;
    if (err !== undefined) {
      this.hookError = undefined;
      throw err;
    }
    return rc;
  }

  private counted = false;

  /** Ask the running engine to stop at the next instruction boundary. */
  stop(): void {
    load().uc_emu_stop(this.handle);
  }

  /** Drops translated blocks of [begin, end) (uc_ctl_remove_cache). */
  removeCache(begin: bigint, end: bigint): void {
    check(
      'uc_ctl(TB_REMOVE_CACHE)',
      load().uc_ctl(this.handle, UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), 'uint64_t', begin, 'uint64_t', end),
    );
  }

  read64(id: number): bigint {
    // Some registers are stored as 32 bits (PSTATE, FPCR, FPSR): the upper half must not be a
    // leftover of the previous read.
    this.cell[0] = 0n;
    check('uc_reg_read', load().uc_reg_read(this.handle, id, this.cell));
    return this.cell[0]!;
  }

  write64(id: number, value: bigint): void {
    this.cell[0] = BigInt.asUintN(64, value);
    check('uc_reg_write', load().uc_reg_write(this.handle, id, this.cell));
  }

  /** A 128-bit SIMD register (V0..V31) as 16 little-endian bytes. */
  readVector(n: number, into: Uint8Array): void {
    check('uc_reg_read', load().uc_reg_read(this.handle, Reg.V0 + n, this.vcell));
    into.set(new Uint8Array(this.vcell.buffer));
  }

  writeVector(n: number, from: Uint8Array): void {
    new Uint8Array(this.vcell.buffer).set(from.subarray(0, 16));
    check('uc_reg_write', load().uc_reg_write(this.handle, Reg.V0 + n, this.vcell));
  }

  private cpSet(r: SysReg, value: bigint): void {
    const v = this.cp;
    v.setUint32(0, r.crn, true);
    v.setUint32(4, r.crm, true);
    v.setUint32(8, r.op0, true);
    v.setUint32(12, r.op1, true);
    v.setUint32(16, r.op2, true);
    v.setBigUint64(24, BigInt.asUintN(64, value), true);
  }

  /** Reads a system register through UC_ARM64_REG_CP_REG (raw value, no access checks). */
  readSys(r: SysReg): bigint {
    this.cpSet(r, 0n);
    const rc = load().uc_reg_read(this.handle, Reg.CP_REG, this.cpBytes);
    if (rc !== 0) throw new UnicornError(`uc_reg_read(${r.name})`, rc);
    return this.cp.getBigUint64(24, true);
  }

  /** Writes a system register through its write function (side effects such as TLB flushes apply). */
  writeSys(r: SysReg, value: bigint): void {
    this.cpSet(r, value);
    const rc = load().uc_reg_write(this.handle, Reg.CP_REG, this.cpBytes);
    if (rc !== 0) throw new UnicornError(`uc_reg_write(${r.name})`, rc);
  }

  /** A register batch of this engine; its native memory is freed when the engine closes. */
  batch(ids: readonly number[]): RegBatch {
    const b = new RegBatch(this, ids);
    this.batches.push(b);
    return b;
  }

  private readonly batches: RegBatch[] = [];

  /**
   * The engine's x0..x30 and PC as live memory (see findRegisterWindow), or undefined where it
   * cannot be found and proven; the caller then uses batches. Valid until close().
   */
  registerWindow(): Uint32Array | undefined {
    const found = findRegisterWindow(this);
    this.windowAddress = found?.address;
    return found?.view;
  }

  /** Where registerWindow() found x0 (CPUARMState.xregs), for cpuInternals(). */
  private windowAddress: bigint | undefined;
  private internals: CpuInternals | null | undefined;

  /**
   * This engine's CPU internals (see "CPU internals" below), or undefined where this build does
   * not offer them or they cannot be located and proven. Needs registerWindow() first.
   */
  cpuInternals(): CpuInternals | undefined {
    if (this.internals === undefined) this.internals = (this.windowAddress !== undefined && locateInternals(this, this.windowAddress)) || null;
    return this.internals ?? undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    load().uc_close(this.handle);
    for (const cb of this.callbacks) koffi.unregister(cb as never);
    this.callbacks.length = 0;
    for (const b of this.batches) for (const p of b.blocks) koffi.free(p as never);
    this.batches.length = 0;
  }
}

// ---- the register window -------------------------------------------------------------------

/**
 * A trap costs a koffi callback (~140 ns) plus ~50 ns per further FFI call, whatever it does
 * (a register costs ~2 ns inside a batch). Reading the call's registers and writing its results
 * through uc_reg_read_batch / uc_reg_write_batch is two calls more than the C loop pays for.
 *
 * uc_reg_read / uc_reg_write of x0..x30 and PC are plain loads and stores of QEMU's
 * `CPUARMState.xregs[]` / `.pc` (unicorn_aarch64.c reg_read/reg_write; PC writes also request a
 * translation-loop exit, which the trap path never does). While the engine is stopped in a hook
 * that memory is the architectural state (QEMU syncs it before raising the exception). So the
 * window is a typed-array view of `xregs[0..31]` then `pc`, as u32 halves: x_n at [2n, 2n+1],
 * PC at [WINDOW_PC, WINDOW_PC + 1] — the same layout as the core's RegisterFile.
 *
 * Finding it: libunicorn exports no address for it, so we write random sentinels into x0..x30
 * and PC through the API, then look for them behind the pointers in the engine's uc_struct
 * (`uc->cpu`; the ARMCPU holds the env). Every probe of memory goes through
 * process_vm_readv on our own pid, which fails with EFAULT instead of faulting. A location
 * found is then proven both ways (a store through the window is what uc_reg_read returns, a
 * uc_reg_write shows in the window) and the registers are put back. The location (which
 * uc_struct word, what offset) is the build's, so later engines check it directly. Anything
 * unexpected — another build, process_vm_readv refused — leaves `undefined`: batches are used.
 */
export const WINDOW_PC = 64;
const WINDOW_WORDS = 66;
const WINDOW_BYTES = WINDOW_WORDS * 4;
/** uc_struct words searched for pointers, and how far behind each pointer. */
const SCAN_WORDS = 512;
const SCAN_BYTES = 64 * 1024;

/** Where the window was last found: [uc_struct word index, byte offset from that pointer]. */
let windowLocation: readonly [number, number] | undefined;
/** A scan found nothing: this build's layout is unknown, do not scan again. */
let windowUnknown = false;

interface SafeReader {
  /** Copies `len` bytes at `addr` into the buffer; returns the count copied (0 if unreadable). */
  read(addr: bigint, len: number): number;
  readonly u32: Uint32Array;
  readonly u64: BigUint64Array;
}

let reader: SafeReader | null | undefined;

function safeReader(): SafeReader | null {
  if (reader !== undefined) return reader;
  try {
    const l = load();
    const pid = l.getpid();
    const scratch = koffi.alloc('uint8_t', SCAN_BYTES) as unknown as bigint;
    const ab = koffi.view(scratch, SCAN_BYTES);
    const local = new BigUint64Array(2);
    const remote = new BigUint64Array(2);
    local[0] = scratch;
    const r: SafeReader = {
      u32: new Uint32Array(ab),
      u64: new BigUint64Array(ab),
      read(addr, len) {
        local[1] = BigInt(len);
        remote[0] = addr;
        remote[1] = BigInt(len);
        const n = Number(l.process_vm_readv(pid, local, 1, remote, 1, 0));
        return n > 0 ? n : 0;
      },
    };
    // Refused (seccomp, Yama)? Then nothing can be probed safely.
    const probe = koffi.alloc('uint64_t', 1) as unknown as bigint;
    new BigUint64Array(koffi.view(probe, 8))[0] = 0x1234_5678_9abc_def0n;
    reader = r.read(probe, 8) === 8 && r.u64[0] === 0x1234_5678_9abc_def0n ? r : null;
  } catch {
    reader = null;
  }
  return reader;
}

const plausiblePointer = (p: bigint) => p >= 0x10000n && p < 1n << 47n && (p & 7n) === 0n;

/** Does the reader's buffer hold the sentinels at u32 index j? (xregs[31], SP, is not ours.) */
function sentinelsAt(u: Uint32Array, j: number, sent: Uint32Array): boolean {
  for (let k = 0; k < WINDOW_WORDS; k++) if (k >>> 1 !== 31 && u[j + k] !== sent[k]) return false;
  return true;
}

/** Every place behind a uc_struct pointer that holds the sentinels: [word, offset], nearest first. */
function scanForSentinels(ucAddr: bigint, sent: Uint32Array, r: SafeReader): Array<[number, number]> {
  const n = r.read(ucAddr, SCAN_WORDS * 8) >>> 3;
  const words = r.u64.slice(0, n);
  const hits: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    const p = words[i]!;
    if (!plausiblePointer(p)) continue;
    let len = r.read(p, SCAN_BYTES);
    if (len === 0) len = r.read(p, 4096 - Number(p & 4095n)); // the rest of its page
    const u = r.u32;
    const end = (len >>> 3) * 2 - WINDOW_WORDS;
    for (let j = 0; j <= end; j += 2) if (u[j] === sent[0] && sentinelsAt(u, j, sent)) hits.push([i, j * 4]);
  }
  return hits.sort((a, b) => a[1] - b[1]);
}

/**
 * Is the candidate the live register file? The sentinels can also sit in copies (Unicorn keeps
 * some), so: a uc_reg_write must show there (read safely), and only then a store there must be
 * what uc_reg_read returns.
 */
function proveWindow(engine: UcEngine, r: SafeReader, addr: bigint): { view: Uint32Array; address: bigint } | undefined {
  const fresh = new BigUint64Array(1);
  randomFillSync(fresh);
  engine.write64(xReg(9), fresh[0]!);
  if (r.read(addr, WINDOW_BYTES) !== WINDOW_BYTES || r.u64[9] !== engine.read64(xReg(9))) return undefined;
  const w = new Uint32Array(koffi.view(addr, WINDOW_BYTES));
  w[14] = (w[14]! ^ 0x5a5a_a5a5) >>> 0; // x7, low half
  const x7 = (BigInt(w[15]!) << 32n) | BigInt(w[14]!);
  if (engine.read64(xReg(7)) !== x7) return undefined;
  if (((BigInt(w[WINDOW_PC + 1]!) << 32n) | BigInt(w[WINDOW_PC]!)) !== engine.read64(Reg.PC)) return undefined;
  return { view: w, address: addr };
}

function findRegisterWindow(engine: UcEngine): { view: Uint32Array; address: bigint } | undefined {
  const r = safeReader();
  if (!r || windowUnknown) return undefined;
  const all = engine.batch([...Array.from({ length: 31 }, (_, i) => xReg(i)), Reg.PC]);
  all.read();
  const saved = all.u64.slice();
  try {
    // Random sentinels: nothing left over in memory (another engine's search) can match them.
    const sent = new Uint32Array(WINDOW_WORDS);
    randomFillSync(sent);
    sent[WINDOW_PC] = (sent[WINDOW_PC]! & ~3) >>> 0; // a PC is word aligned
    all.u32.set(sent.subarray(0, 62));
    all.u32[62] = sent[WINDOW_PC]!;
    all.u32[63] = sent[WINDOW_PC + 1]!;
    const ucAddr = BigInt(engine.address);
    const tryAt = (word: number, off: number): { view: Uint32Array; address: bigint } | undefined => {
      all.write(); // (again: a failed proof changed x7 and x9)
      if (r.read(ucAddr + BigInt(word * 8), 8) !== 8) return undefined;
      const p = r.u64[0]!;
      if (!plausiblePointer(p)) return undefined;
      const addr = p + BigInt(off);
      if (r.read(addr, WINDOW_BYTES) !== WINDOW_BYTES || !sentinelsAt(r.u32, 0, sent)) return undefined;
      return proveWindow(engine, r, addr);
    };
    if (windowLocation) {
      const w = tryAt(windowLocation[0], windowLocation[1]);
      if (w) return w;
    }
    all.write();
    for (const [word, off] of scanForSentinels(ucAddr, sent, r)) {
      const w = tryAt(word, off);
      if (w) {
        windowLocation = [word, off];
        return w;
      }
    }
    windowUnknown = true;
    return undefined;
  } catch {
    return undefined;
  } finally {
    all.u64.set(saved);
    all.write();
  }
}

// ---- CPU internals ---------------------------------------------------------------------------

/**
 * Three QEMU functions of the engine's CPU model, which libunicorn exports (as every QEMU symbol,
 * under its `_aarch64` name) but does not wrap in its API:
 *
 *  - `arm_cpu_do_interrupt` (qemu/target/arm/helper.c): takes the exception the CPU just raised
 *    exactly as QEMU does — ESR/FAR/ELR/SPSR of the target EL, PSTATE, the vector, the cached
 *    translation flags. Unicorn hands every exception to its interrupt hook *instead* of this
 *    (qemu/accel/tcg/cpu-exec.c cpu_handle_exception), and does not tell the hook the syndrome or
 *    the fault address, so without it an MMU abort or an exception from EL0 cannot be delivered.
 *    Called from the interrupt hook (the exception is still the CPU's current one there), the
 *    engine continues at the vector, as QEMU's own loop does after do_interrupt.
 *  - `arm_rebuild_hflags` (qemu/target/arm/helper.c): recomputes the cached translation flags
 *    after the host changed PSTATE (uc_reg_write of PSTATE does not).
 *  - `cpu_memory_rw_debug` (qemu/exec.c): reads guest memory through the vCPU's current
 *    translation (the HVC immediate at a virtual PC). Unicorn 2.1.1 has no uc_vmem_read.
 *  - `arm_cpu_get_phys_page_attrs_debug` (qemu/target/arm/helper.c): the physical address of a
 *    virtual one through the current regime, stage 1 and stage 2 (a hypercall's pointer
 *    arguments, as Xen's get_page_from_gva); -1 where it would fault.
 *
 * They take QEMU's CPUState (`cs`) and CPUARMState (`env`). The register window is
 * `env->xregs` (CPUARMState starts with `uint32_t regs[16]` then `uint64_t xregs[32]`:
 * qemu/target/arm/cpu.h), found behind the uc_struct word holding `uc->cpu`, the ARMCPU whose
 * first member is its CPUState. The pair is proven before use: the CPUState between that
 * pointer and env must hold `env_ptr == env` (qemu/include/hw/core/cpu.h).
 */
export interface CpuInternals {
  /** Takes the exception the CPU raised (call from the interrupt hook only). */
  takeException(): void;
  /** Recomputes the cached translation flags after PSTATE was written from outside. */
  rebuildFlags(): void;
  /** Reads `buf.length` bytes at virtual address `va` through the current translation; false if unmapped. */
  readVirtual(va: bigint, buf: Uint8Array): boolean;
  /** The physical address `va` translates to now (stage 1 and stage 2), or undefined where it faults; absent on a build without the function. */
  physicalOf?(va: bigint): bigint | undefined;
}

function locateInternals(engine: UcEngine, xregs: bigint): CpuInternals | undefined {
  const l = load();
  const { doInterrupt, rebuildHflags, memoryRwDebug, physPageDebug } = l.internal;
  const r = safeReader();
  if (!doInterrupt || !rebuildHflags || !memoryRwDebug || !r || !windowLocation) return undefined;
  const env = xregs - 64n;
  if (r.read(BigInt(engine.address) + BigInt(windowLocation[0] * 8), 8) !== 8) return undefined;
  const cs = r.u64[0]!;
  const span = Number(env - cs);
  if (span <= 0 || span > SCAN_BYTES || r.read(cs, span) !== span) return undefined;
  let envPtr = false;
  for (let i = 0; i < span >>> 3 && !envPtr; i++) envPtr = r.u64[i] === env;
  if (!envPtr) return undefined;
  const csAddr = Number(cs);
  const envAddr = Number(env);
  const attrs = new Uint32Array(2);
  return {
    takeException: () => doInterrupt(csAddr),
    rebuildFlags: () => rebuildHflags(envAddr),
    readVirtual: (va, buf) => memoryRwDebug(csAddr, va, buf, buf.length, false) === 0,
    ...(physPageDebug
      ? {
          physicalOf: (va: bigint) => {
            const pa = BigInt.asUintN(64, BigInt(physPageDebug(csAddr, va, attrs)));
            return pa === 0xffff_ffff_ffff_ffffn ? undefined : pa;
          },
        }
      : {}),
  };
}
