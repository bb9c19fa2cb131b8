/**
 * The one module of this package that touches koffi and native pointers: Linux KVM's uAPI
 * (`/dev/kvm` ioctls and mmaps) for x86-64. Everything above sees typed methods, numbers,
 * bigints and byte arrays — never a pointer. Struct layouts are decoded elsewhere
 * (`src/cpu/structs.ts`) from the raw bytes these methods fill.
 *
 * Rules:
 *  - `ioctl` is declared with fixed prototypes (value argument / pointer argument): cheaper
 *    than koffi's variadic form and ABI-safe on x86-64, where a variadic call passes the
 *    third argument in rdx like a fixed one (System V AMD64 psABI §3.2.3; koffi's
 *    "Variadic functions" documentation);
 *  - errno is read only right after a call failed (errno(3): a successful call may change it);
 *  - guest RAM and kvm_run come from mmap (page aligned); MAP_FAILED is the BigInt
 *    0xffff_ffff_ffff_ffff; views are dropped only after the mapping's users are closed;
 *  - every request number below is x86-64's _IOR/_IOW/_IOWR from include/uapi/linux/kvm.h
 *    (include/uapi/asm-generic/ioctl.h), computed by gcc from the uapi headers;
 *  - kvm_run is decoded in one place, `KvmVcpu.exit()` (Documentation/virt/kvm/api.rst
 *    "The kvm_run structure").
 */
import koffi from 'koffi';
import { PlugvisorError } from '@plugvisor/core';

// ---- request numbers (include/uapi/linux/kvm.h; KVM_GET_XSAVE2: api.rst 4.137) ---------------

export const KVM = Object.freeze({
  GET_API_VERSION: 0xae00,
  CREATE_VM: 0xae01,
  GET_MSR_INDEX_LIST: 0xc004ae02,
  CHECK_EXTENSION: 0xae03,
  GET_VCPU_MMAP_SIZE: 0xae04,
  GET_SUPPORTED_CPUID: 0xc008ae05,
  CREATE_VCPU: 0xae41,
  SET_USER_MEMORY_REGION: 0x4020ae46,
  SET_TSS_ADDR: 0xae47,
  SET_IDENTITY_MAP_ADDR: 0x4008ae48,
  CREATE_IRQCHIP: 0xae60,
  GET_IRQCHIP: 0xc208ae62,
  SET_IRQCHIP: 0x8208ae63, // _IOR in kvm.h: a historical quirk (include/uapi/linux/kvm.h)
  SET_CLOCK: 0x4030ae7b,
  GET_CLOCK: 0x8030ae7c,
  RUN: 0xae80,
  GET_REGS: 0x8090ae81,
  SET_REGS: 0x4090ae82,
  GET_SREGS: 0x8138ae83,
  SET_SREGS: 0x4138ae84,
  GET_MSRS: 0xc008ae88,
  SET_MSRS: 0x4008ae89,
  GET_LAPIC: 0x8400ae8e,
  SET_LAPIC: 0x4400ae8f,
  SET_CPUID2: 0x4008ae90,
  GET_CPUID2: 0xc008ae91,
  GET_MP_STATE: 0x8004ae98,
  SET_MP_STATE: 0x4004ae99,
  GET_VCPU_EVENTS: 0x8040ae9f,
  SET_VCPU_EVENTS: 0x4040aea0,
  GET_DEBUGREGS: 0x8080aea1,
  SET_DEBUGREGS: 0x4080aea2,
  GET_XSAVE: 0x9000aea4,
  SET_XSAVE: 0x5000aea5,
  SIGNAL_MSI: 0x4020aea5,
  GET_XCRS: 0x8188aea6,
  SET_XCRS: 0x4188aea7,
  KVMCLOCK_CTRL: 0xaead,
  GET_XSAVE2: 0x9000aecf,
  GET_DEVICE_ATTR: 0x4018aee2,
} as const);
export type KvmIoctl = keyof typeof KVM;

/** KVM_CAP_* numbers (kvm.h). */
export const CAP = Object.freeze({
  IRQCHIP: 0,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  MP_STATE: 14,
  VCPU_EVENTS: 41,
  DEBUGREGS: 50,
  XSAVE: 55,
  XCRS: 56,
  MAX_VCPUS: 66,
  SYNC_REGS: 74,
  SIGNAL_MSI: 77,
  IMMEDIATE_EXIT: 136,
  XSAVE2: 208,
  SYS_ATTRIBUTES: 209,
} as const);

/** Sizes of the fixed uAPI structs (bytes). */
export const SIZE = Object.freeze({ REGS: 144, SREGS: 312, LAPIC: 1024, EVENTS: 64, XCRS: 392, DEBUGREGS: 128, XSAVE: 4096, CPUID_ENTRY: 40, MSR_ENTRY: 16 });

const ERRNO: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 7: 'E2BIG', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM',
  13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 25: 'ENOTTY', 28: 'ENOSPC',
  38: 'ENOSYS', 95: 'EOPNOTSUPP',
};
export const errnoName = (n: number): string => ERRNO[n] ?? `errno ${n}`;
export const EINTR = 4;
export const EINVAL = 22;

/** A KVM ioctl (or open/mmap of /dev/kvm) failed: names the call and the errno. */
export class KvmError extends PlugvisorError {
  readonly errnoName: string;
  constructor(
    readonly ioctl: string,
    readonly errno: number,
    detail = '',
  ) {
    super('KVM', `${ioctl} failed: ${errnoName(errno)} (${errno})${detail ? `: ${detail}` : ''}`);
    this.errnoName = errnoName(errno);
  }
}

// ---- library binding (lazy, once per process) ------------------------------------------------

interface Lib {
  open: (path: string, flags: number, mode: number) => number;
  close: (fd: number) => number;
  ioctlVal: (fd: number, req: number, arg: number | bigint) => number;
  ioctlBuf: (fd: number, req: number, arg: Uint8Array) => number;
  ioctlPtr: (fd: number, req: number, arg: bigint) => number;
  mmap: (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => bigint;
  munmap: (addr: bigint, length: number) => number;
  mprotect: (addr: bigint, length: number, prot: number) => number;
}

let lib: Lib | undefined;
function load(): Lib {
  if (lib) return lib;
  const libc = koffi.load('libc.so.6');
  lib = {
    open: libc.func('int open(const char *path, int flags, uint32_t mode)'),
    close: libc.func('int close(int fd)'),
    // Fixed prototypes for the variadic ioctl (koffi docs, "Variadic functions": declare a fixed prototype).
    ioctlVal: libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
    ioctlBuf: libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
    ioctlPtr: libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
    mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: libc.func('int munmap(void *addr, size_t length)'),
    mprotect: libc.func('int mprotect(void *addr, size_t len, int prot)'),
  } as unknown as Lib;
  return lib;
}

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const PROT_RW = 3;
const MAP_SHARED = 0x01;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

const errno = (): number => koffi.errno();

function checked(call: string, rc: number, detail?: string): number {
  if (rc < 0) throw new KvmError(call, errno(), detail);
  return rc;
}

/** Why /dev/kvm cannot be used here, or undefined if it can. */
export function kvmUnavailableReason(path = '/dev/kvm'): string | undefined {
  let l: Lib;
  try {
    l = load();
  } catch (e) {
    return `cannot load libc through koffi: ${(e as Error).message}`;
  }
  const fd = l.open(path, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return `cannot open ${path}: ${errnoName(errno())}`;
  try {
    const v = l.ioctlVal(fd, KVM.GET_API_VERSION, 0);
    if (v !== 12) return `${path}: KVM_GET_API_VERSION is ${v}, not 12`;
  } finally {
    l.close(fd);
  }
  return undefined;
}

// ---- the host CPU itself --------------------------------------------------------------------

/*
 * Two tiny native routines, run on the host (not in a guest) through a function pointer:
 *   cpuid_stub(leaf, subleaf, u32 out[4]):  push rbx; mov eax,edi; mov ecx,esi; mov r8,rdx; cpuid;
 *                                           mov [r8..r8+12], eax/ebx/ecx/edx; pop rbx; ret
 *   fxsave_stub(u8 out[512], 16-aligned):   fxsave64 [rdi]; ret
 * Assembled with GNU as 2.40 (the bytes below). They give what no ioctl reports: the host's
 * raw CPUID leaf 0xD (the layout the kernel's XSAVE uAPI buffer really uses) and the FXSAVE
 * MXCSR_MASK KVM checks MXCSR against (Intel SDM Vol. 1 §11.6.6; arch/x86/kernel/fpu/xstate.c).
 */
const CPUID_STUB = [0x53, 0x89, 0xf8, 0x89, 0xf1, 0x49, 0x89, 0xd0, 0x0f, 0xa2, 0x41, 0x89, 0x00, 0x41, 0x89, 0x58, 0x04, 0x41, 0x89, 0x48, 0x08, 0x41, 0x89, 0x50, 0x0c, 0x5b, 0xc3];
const FXSAVE_STUB = [0x48, 0x0f, 0xae, 0x07, 0xc3];
let stubs: { cpuid: (leaf: number, sub: number, out: Uint32Array) => void; fxsave: (out: bigint) => void } | undefined;

function hostStubs(): NonNullable<typeof stubs> {
  if (stubs) return stubs;
  if (process.arch !== 'x64') throw new PlugvisorError('NOT_X86', `host CPUID needs an x86-64 host (this is ${process.arch})`);
  const l = load();
  const page = l.mmap(null, 4096, PROT_RW, 0x02 | MAP_ANONYMOUS, -1, 0);
  if (page === MAP_FAILED) throw new KvmError('mmap(host stubs)', errno());
  const code = new Uint8Array(koffi.view(page, 4096));
  code.set(CPUID_STUB, 0);
  code.set(FXSAVE_STUB, 64);
  checked('mprotect(host stubs)', l.mprotect(page, 4096, 5 /* PROT_READ|PROT_EXEC */));
  const cpuidProto = koffi.proto('void plugvisor_cpuid_stub(uint32_t leaf, uint32_t sub, _Out_ uint32_t *out)');
  const fxsaveProto = koffi.proto('void plugvisor_fxsave_stub(void *out)');
  stubs = {
    cpuid: (leaf, sub, out) => koffi.call(page, cpuidProto, leaf, sub, out),
    fxsave: (out) => koffi.call(page + 64n, fxsaveProto, out),
  };
  return stubs;
}

/** The host CPU's own CPUID(leaf, subleaf), run natively (not KVM's view). */
export function hostCpuid(leaf: number, subleaf = 0): { eax: number; ebx: number; ecx: number; edx: number } {
  const out = new Uint32Array(4);
  hostStubs().cpuid(leaf >>> 0, subleaf >>> 0, out);
  return { eax: out[0]!, ebx: out[1]!, ecx: out[2]!, edx: out[3]! };
}

/** The host's FXSAVE MXCSR_MASK (0 means the architectural default 0xFFBF). */
export function hostMxcsrMask(): number {
  const area = koffi.alloc('uint8_t', 512 + 64) as unknown as bigint;
  try {
    const aligned = (area + 63n) & ~63n;
    hostStubs().fxsave(aligned);
    return new DataView(koffi.view(aligned, 512)).getUint32(28, true);
  } finally {
    koffi.free(area as never);
  }
}

// ---- memory --------------------------------------------------------------------------------

/** Page-aligned anonymous shared host memory for guest RAM, viewed zero-copy from JS. */
export class HostRam {
  readonly bytes: Uint8Array;
  private freed = false;
  private constructor(
    /** @internal native address, for KVM_SET_USER_MEMORY_REGION only */
    readonly ptr: bigint,
    readonly size: number,
  ) {
    this.bytes = new Uint8Array(koffi.view(ptr, size));
  }

  static allocate(size: number): HostRam {
    if (size <= 0 || size % 4096 !== 0) throw new PlugvisorError('BAD_RAM_SIZE', `RAM size must be a positive multiple of 4 KiB, got ${size}`);
    const ptr = load().mmap(null, size, PROT_RW, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ptr === MAP_FAILED || ptr === 0n) throw new KvmError('mmap(guest RAM)', errno(), `${size} bytes`);
    return new HostRam(ptr, size);
  }

  /** Unmaps the memory: only after the VM using it is closed (the views into it die with the mapping). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    load().munmap(this.ptr, this.size);
  }
}

// ---- /dev/kvm ------------------------------------------------------------------------------

/** One CPUID entry as `struct kvm_cpuid_entry2` (registers unsigned 32-bit). */
export interface RawCpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

function encodeCpuid(entries: readonly RawCpuidEntry[]): Uint8Array {
  const buf = new Uint8Array(8 + entries.length * SIZE.CPUID_ENTRY);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * SIZE.CPUID_ENTRY;
    dv.setUint32(o, e.function >>> 0, true);
    dv.setUint32(o + 4, e.index >>> 0, true);
    dv.setUint32(o + 8, e.flags >>> 0, true);
    dv.setUint32(o + 12, e.eax >>> 0, true);
    dv.setUint32(o + 16, e.ebx >>> 0, true);
    dv.setUint32(o + 20, e.ecx >>> 0, true);
    dv.setUint32(o + 24, e.edx >>> 0, true);
  });
  return buf;
}

function decodeCpuid(buf: Uint8Array): RawCpuidEntry[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = dv.getUint32(0, true);
  const out: RawCpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * SIZE.CPUID_ENTRY;
    out.push({
      function: dv.getUint32(o, true),
      index: dv.getUint32(o + 4, true),
      flags: dv.getUint32(o + 8, true),
      eax: dv.getUint32(o + 12, true),
      ebx: dv.getUint32(o + 16, true),
      ecx: dv.getUint32(o + 20, true),
      edx: dv.getUint32(o + 24, true),
    });
  }
  return out;
}

/** The KVM system fd. */
export class KvmSystem {
  private closed = false;
  private constructor(readonly fd: number) {}

  static open(path = '/dev/kvm'): KvmSystem {
    const l = load();
    const fd = l.open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw new KvmError(`open(${path})`, errno());
    const sys = new KvmSystem(fd);
    const v = l.ioctlVal(fd, KVM.GET_API_VERSION, 0);
    if (v !== 12) {
      sys.close();
      throw new KvmError('KVM_GET_API_VERSION', 0, `API version ${v}, this machine needs 12`);
    }
    return sys;
  }

  apiVersion(): number {
    return checked('KVM_GET_API_VERSION', load().ioctlVal(this.fd, KVM.GET_API_VERSION, 0));
  }

  /** KVM_CHECK_EXTENSION: 0 = absent; otherwise the capability's value. */
  checkExtension(cap: number): number {
    const rc = load().ioctlVal(this.fd, KVM.CHECK_EXTENSION, cap);
    return rc < 0 ? 0 : rc;
  }

  vcpuMmapSize(): number {
    return checked('KVM_GET_VCPU_MMAP_SIZE', load().ioctlVal(this.fd, KVM.GET_VCPU_MMAP_SIZE, 0));
  }

  /** KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG. */
  supportedCpuid(): RawCpuidEntry[] {
    for (let n = 128; n <= 4096; n *= 2) {
      const buf = new Uint8Array(8 + n * SIZE.CPUID_ENTRY);
      new DataView(buf.buffer).setUint32(0, n, true);
      if (load().ioctlBuf(this.fd, KVM.GET_SUPPORTED_CPUID, buf) >= 0) return decodeCpuid(buf);
      const e = errno();
      if (e !== 7) throw new KvmError('KVM_GET_SUPPORTED_CPUID', e);
    }
    throw new KvmError('KVM_GET_SUPPORTED_CPUID', 7, 'more than 4096 entries');
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores for a vCPU. */
  msrIndexList(): number[] {
    const probe = new Uint8Array(8);
    const l = load();
    if (l.ioctlBuf(this.fd, KVM.GET_MSR_INDEX_LIST, probe) >= 0) return [];
    const e = errno();
    if (e !== 7) throw new KvmError('KVM_GET_MSR_INDEX_LIST', e);
    const n = new DataView(probe.buffer).getUint32(0, true);
    const buf = new Uint8Array(4 + 4 * n);
    new DataView(buf.buffer).setUint32(0, n, true);
    checked('KVM_GET_MSR_INDEX_LIST', l.ioctlBuf(this.fd, KVM.GET_MSR_INDEX_LIST, buf));
    const dv = new DataView(buf.buffer);
    const count = dv.getUint32(0, true);
    return Array.from({ length: count }, (_, i) => dv.getUint32(4 + 4 * i, true));
  }

  /**
   * KVM_GET_DEVICE_ATTR(group 0, KVM_X86_XCOMP_GUEST_SUPP): KVM's supported XCR0, or undefined
   * when the kernel lacks KVM_CAP_SYS_ATTRIBUTES or the attribute (ENXIO/EINVAL).
   */
  xcompGuestSupp(): bigint | undefined {
    if (!this.checkExtension(CAP.SYS_ATTRIBUTES)) return undefined;
    const value = koffi.alloc('uint64_t', 1) as unknown as bigint;
    try {
      const out = new BigUint64Array(koffi.view(value, 8));
      out[0] = 0n;
      const attr = new Uint8Array(24);
      const dv = new DataView(attr.buffer);
      dv.setUint32(0, 0, true); // flags
      dv.setUint32(4, 0, true); // group KVM_X86_GRP_SYSTEM
      dv.setBigUint64(8, 0n, true); // attr KVM_X86_XCOMP_GUEST_SUPP
      dv.setBigUint64(16, value, true); // addr
      if (load().ioctlBuf(this.fd, KVM.GET_DEVICE_ATTR, attr) < 0) {
        const e = errno();
        if (e === 6 || e === 22) return undefined;
        throw new KvmError('KVM_GET_DEVICE_ATTR(KVM_X86_XCOMP_GUEST_SUPP)', e);
      }
      return out[0]!;
    } finally {
      koffi.free(value as never);
    }
  }

  createVm(): KvmVm {
    const fd = checked('KVM_CREATE_VM', load().ioctlVal(this.fd, KVM.CREATE_VM, 0));
    return new KvmVm(fd, this);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    load().close(this.fd);
  }
}

/** One VM fd. */
export class KvmVm {
  private closed = false;
  /** @internal */
  constructor(
    readonly fd: number,
    readonly system: KvmSystem,
  ) {}

  checkExtension(cap: number): number {
    const rc = load().ioctlVal(this.fd, KVM.CHECK_EXTENSION, cap);
    return rc < 0 ? 0 : rc;
  }

  setTssAddr(addr: number): void {
    checked('KVM_SET_TSS_ADDR', load().ioctlVal(this.fd, KVM.SET_TSS_ADDR, addr));
  }

  setIdentityMapAddr(addr: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, addr, true);
    checked('KVM_SET_IDENTITY_MAP_ADDR', load().ioctlBuf(this.fd, KVM.SET_IDENTITY_MAP_ADDR, b));
  }

  /** KVM_SET_USER_MEMORY_REGION: maps `ram` at guest-physical `gpa` in `slot`. */
  setUserMemoryRegion(slot: number, gpa: bigint, ram: HostRam, flags = 0): void {
    const b = new Uint8Array(32);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, slot, true);
    dv.setUint32(4, flags, true);
    dv.setBigUint64(8, gpa, true);
    dv.setBigUint64(16, BigInt(ram.size), true);
    dv.setBigUint64(24, ram.ptr, true);
    checked('KVM_SET_USER_MEMORY_REGION', load().ioctlBuf(this.fd, KVM.SET_USER_MEMORY_REGION, b), `slot ${slot}, 0x${gpa.toString(16)}+${ram.size}`);
  }

  createIrqchip(): void {
    checked('KVM_CREATE_IRQCHIP', load().ioctlVal(this.fd, KVM.CREATE_IRQCHIP, 0));
  }

  /** KVM_GET_IRQCHIP for chip 0 (PIC master), 1 (PIC slave) or 2 (IOAPIC): the 520-byte kvm_irqchip. */
  getIrqchip(chip: number): Uint8Array {
    const b = new Uint8Array(520);
    new DataView(b.buffer).setUint32(0, chip, true);
    checked('KVM_GET_IRQCHIP', load().ioctlBuf(this.fd, KVM.GET_IRQCHIP, b), `chip ${chip}`);
    return b;
  }

  setIrqchip(buf: Uint8Array): void {
    checked('KVM_SET_IRQCHIP', load().ioctlBuf(this.fd, KVM.SET_IRQCHIP, buf), `chip ${new DataView(buf.buffer, buf.byteOffset).getUint32(0, true)}`);
  }

  /** KVM_GET_CLOCK: the 48-byte kvm_clock_data (clock ns at 0). */
  getClock(): Uint8Array {
    const b = new Uint8Array(48);
    checked('KVM_GET_CLOCK', load().ioctlBuf(this.fd, KVM.GET_CLOCK, b));
    return b;
  }

  /** KVM_SET_CLOCK with `clock` (ns) and flags 0 (Firecracker: no KVM_CLOCK_REALTIME unless wanted). */
  setClock(clock: bigint): void {
    const b = new Uint8Array(48);
    new DataView(b.buffer).setBigUint64(0, clock, true);
    checked('KVM_SET_CLOCK', load().ioctlBuf(this.fd, KVM.SET_CLOCK, b));
  }

  /** KVM_SIGNAL_MSI: an MSI write (address, data) delivered by the in-kernel LAPICs. */
  signalMsi(address: bigint, data: number): number {
    const b = new Uint8Array(32);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, Number(address & 0xffff_ffffn), true);
    dv.setUint32(4, Number(address >> 32n), true);
    dv.setUint32(8, data >>> 0, true);
    return checked('KVM_SIGNAL_MSI', load().ioctlBuf(this.fd, KVM.SIGNAL_MSI, b));
  }

  /** KVM_CREATE_VCPU with `id` as the APIC id; maps its kvm_run. */
  createVcpu(id: number): KvmVcpu {
    const l = load();
    const fd = checked('KVM_CREATE_VCPU', l.ioctlVal(this.fd, KVM.CREATE_VCPU, id), `vcpu id ${id}`);
    const size = this.system.vcpuMmapSize();
    const ptr = l.mmap(null, size, PROT_RW, MAP_SHARED, fd, 0);
    if (ptr === MAP_FAILED || ptr === 0n) {
      const e = errno();
      l.close(fd);
      throw new KvmError('mmap(kvm_run)', e);
    }
    return new KvmVcpu(fd, id, ptr, size);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    load().close(this.fd);
  }
}

/**
 * Why KVM_RUN returned, decoded from `struct kvm_run` (include/uapi/linux/kvm.h; the exit
 * union at byte 32; Documentation/virt/kvm/api.rst §5 "The kvm_run structure"), like
 * kvm-ioctls' `VcpuExit`. The only place kvm_run's layout is read. One object per kind per
 * vCPU, reused on every exit: read it before the next KVM_RUN.
 */
export type KvmExit =
  | { readonly kind: 'io'; out: boolean; size: number; port: number; count: number; /** offset of the data in kvm_run (`run8`) */ dataOffset: number }
  | { readonly kind: 'mmio'; address: bigint; length: number; write: boolean }
  | { readonly kind: 'hlt' }
  | { readonly kind: 'interrupted' }
  | { readonly kind: 'system-event'; type: number }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'internal-error'; suberror: number; data: bigint[] }
  | { readonly kind: 'fail-entry'; hardwareReason: bigint }
  | { readonly kind: 'other'; reason: number };

/** KVM exit reasons (include/uapi/linux/kvm.h KVM_EXIT_*). */
export const Exit = Object.freeze({
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7, SHUTDOWN: 8,
  FAIL_ENTRY: 9, INTR: 10, NMI: 16, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
});
export const EXIT_NAME = Object.fromEntries(Object.entries(Exit).map(([k, v]) => [v, k])) as Record<number, string>;
/** KVM_SYNC_X86_REGS (arch/x86/include/uapi/asm/kvm.h). */
const KVM_SYNC_X86_REGS = 1;

/** One vCPU fd and its mmapped `struct kvm_run`. */
export class KvmVcpu {
  private readonly exits = {
    io: { kind: 'io' as const, out: false, size: 0, port: 0, count: 0, dataOffset: 0 },
    mmio: { kind: 'mmio' as const, address: 0n, length: 0, write: false },
    hlt: { kind: 'hlt' as const },
    interrupted: { kind: 'interrupted' as const },
    systemEvent: { kind: 'system-event' as const, type: 0 },
    shutdown: { kind: 'shutdown' as const },
    internal: { kind: 'internal-error' as const, suberror: 0, data: [] as bigint[] },
    failEntry: { kind: 'fail-entry' as const, hardwareReason: 0n },
    other: { kind: 'other' as const, reason: 0 },
  };

  /** The kvm_run page(s), zero-copy: exit_reason at byte 8, the exit union at 32 (include/uapi/linux/kvm.h struct kvm_run). */
  readonly run8: Uint8Array;
  readonly run32: Uint32Array;
  readonly runView: DataView;
  /** run->s.regs (struct kvm_regs at 304) as 36 u32 halves: the sync-regs transfer area. */
  readonly syncRegs32: Uint32Array;
  private closed = false;

  /** @internal */
  constructor(
    readonly fd: number,
    readonly id: number,
    private readonly runPtr: bigint,
    private readonly runSize: number,
  ) {
    const ab = koffi.view(runPtr, runSize);
    this.run8 = new Uint8Array(ab);
    this.run32 = new Uint32Array(ab);
    this.runView = new DataView(ab);
    this.syncRegs32 = new Uint32Array(ab, 304, 36);
  }

  /** The exit of the last KVM_RUN (kvm_run.exit_reason at byte 8 and the union at 32). */
  exit(): KvmExit {
    const r8 = this.run8;
    const dv = this.runView;
    const e = this.exits;
    const reason = this.run32[2]!;
    switch (reason) {
      case Exit.IO: {
        // struct { __u8 direction; __u8 size; __u16 port; __u32 count; __u64 data_offset; } io
        const io = e.io;
        io.out = r8[32] === 1; // KVM_EXIT_IO_OUT
        io.size = r8[33]!;
        io.port = r8[34]! | (r8[35]! << 8);
        io.count = this.run32[9]!;
        io.dataOffset = this.run32[10]!;
        return io;
      }
      case Exit.MMIO:
        // struct { __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write; } mmio
        e.mmio.address = dv.getBigUint64(32, true);
        e.mmio.length = dv.getUint32(48, true);
        e.mmio.write = r8[52] !== 0;
        return e.mmio;
      case Exit.HLT:
        return e.hlt;
      case Exit.INTR:
      case Exit.IRQ_WINDOW_OPEN:
        return e.interrupted;
      case Exit.SYSTEM_EVENT:
        e.systemEvent.type = dv.getUint32(32, true);
        return e.systemEvent;
      case Exit.SHUTDOWN:
        return e.shutdown;
      case Exit.INTERNAL_ERROR: {
        e.internal.suberror = dv.getUint32(32, true);
        const nd = Math.min(dv.getUint32(36, true), 16);
        e.internal.data = Array.from({ length: nd }, (_, i) => dv.getBigUint64(40 + 8 * i, true));
        return e.internal;
      }
      case Exit.FAIL_ENTRY:
        e.failEntry.hardwareReason = dv.getBigUint64(32, true);
        return e.failEntry;
      default:
        e.other.reason = reason;
        return e.other;
    }
  }

  /** The raw exit reason of the last KVM_RUN (for fault detail). */
  get exitReason(): number {
    return this.run32[2]!;
  }

  /** Asks KVM to copy kvm_regs into run->s.regs at every exit (kvm_valid_regs, byte 288). */
  enableSyncRegs(): void {
    this.runView.setBigUint64(288, BigInt(KVM_SYNC_X86_REGS), true);
  }

  /** Makes the next KVM_RUN load run->s.regs (kvm_dirty_regs, byte 296). */
  markSyncRegsDirty(): void {
    this.run32[74] = KVM_SYNC_X86_REGS;
  }

  /** Sets kvm_run.immediate_exit (byte 1): KVM_RUN returns EINTR before entering the guest. */
  set immediateExit(on: boolean) {
    this.run8[1] = on ? 1 : 0;
  }

  /** KVM_RUN: 0, or the errno (EINTR when immediate_exit was set or a signal arrived). Never throws. */
  run(): number {
    const l = load();
    return l.ioctlVal(this.fd, KVM.RUN, 0) < 0 ? errno() : 0;
  }

  private io(name: KvmIoctl, buf: Uint8Array): number {
    return checked(`KVM_${name}`, load().ioctlBuf(this.fd, KVM[name], buf));
  }

  /** The raw ioctl for tests that reproduce KVM's refusals: the errno, or 0. */
  tryIoctl(name: KvmIoctl, buf: Uint8Array): number {
    return load().ioctlBuf(this.fd, KVM[name], buf) < 0 ? errno() : 0;
  }

  getRegs(out = new Uint8Array(SIZE.REGS)): Uint8Array {
    this.io('GET_REGS', out);
    return out;
  }
  setRegs(buf: Uint8Array): void {
    this.io('SET_REGS', buf);
  }
  getSregs(out = new Uint8Array(SIZE.SREGS)): Uint8Array {
    this.io('GET_SREGS', out);
    return out;
  }
  setSregs(buf: Uint8Array): void {
    this.io('SET_SREGS', buf);
  }
  /** KVM_GET_XSAVE2 when `size` > 4096 or `xsave2` is set, else KVM_GET_XSAVE. */
  getXsave(size: number, xsave2: boolean): Uint8Array {
    const out = new Uint8Array(Math.max(SIZE.XSAVE, size));
    this.io(xsave2 ? 'GET_XSAVE2' : 'GET_XSAVE', out);
    return out;
  }
  setXsave(buf: Uint8Array): void {
    this.io('SET_XSAVE', buf);
  }
  getXcrs(): Uint8Array {
    const out = new Uint8Array(SIZE.XCRS);
    this.io('GET_XCRS', out);
    return out;
  }
  setXcrs(buf: Uint8Array): void {
    this.io('SET_XCRS', buf);
  }
  getLapic(): Uint8Array {
    const out = new Uint8Array(SIZE.LAPIC);
    this.io('GET_LAPIC', out);
    return out;
  }
  setLapic(buf: Uint8Array): void {
    this.io('SET_LAPIC', buf);
  }
  getVcpuEvents(): Uint8Array {
    const out = new Uint8Array(SIZE.EVENTS);
    this.io('GET_VCPU_EVENTS', out);
    return out;
  }
  setVcpuEvents(buf: Uint8Array): void {
    this.io('SET_VCPU_EVENTS', buf);
  }
  getDebugregs(): Uint8Array {
    const out = new Uint8Array(SIZE.DEBUGREGS);
    this.io('GET_DEBUGREGS', out);
    return out;
  }
  setDebugregs(buf: Uint8Array): void {
    this.io('SET_DEBUGREGS', buf);
  }
  getMpState(): number {
    const b = new Uint8Array(4);
    this.io('GET_MP_STATE', b);
    return new DataView(b.buffer).getUint32(0, true);
  }
  setMpState(state: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, state, true);
    this.io('SET_MP_STATE', b);
  }
  setCpuid(entries: readonly RawCpuidEntry[]): void {
    this.io('SET_CPUID2', encodeCpuid(entries));
  }
  getCpuid(max = 512): RawCpuidEntry[] {
    const buf = new Uint8Array(8 + max * SIZE.CPUID_ENTRY);
    new DataView(buf.buffer).setUint32(0, max, true);
    this.io('GET_CPUID2', buf);
    return decodeCpuid(buf);
  }

  /**
   * KVM_GET_MSRS for `indices`: the values read, in order. KVM stops at the first MSR it
   * cannot read; the result is then shorter than `indices`.
   */
  getMsrs(indices: readonly number[]): bigint[] {
    const buf = new Uint8Array(8 + indices.length * SIZE.MSR_ENTRY);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, indices.length, true);
    indices.forEach((idx, i) => dv.setUint32(8 + i * SIZE.MSR_ENTRY, idx >>> 0, true));
    const n = this.io('GET_MSRS', buf);
    return Array.from({ length: n }, (_, i) => dv.getBigUint64(8 + i * SIZE.MSR_ENTRY + 8, true));
  }

  /** KVM_SET_MSRS: the number of MSRs written (KVM stops at the first it refuses). */
  setMsrs(entries: readonly (readonly [number, bigint])[]): number {
    const buf = new Uint8Array(8 + entries.length * SIZE.MSR_ENTRY);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, entries.length, true);
    entries.forEach(([idx, v], i) => {
      dv.setUint32(8 + i * SIZE.MSR_ENTRY, idx >>> 0, true);
      dv.setBigUint64(8 + i * SIZE.MSR_ENTRY + 8, BigInt.asUintN(64, v), true);
    });
    return this.io('SET_MSRS', buf);
  }

  /** KVM_KVMCLOCK_CTRL: tell the guest's kvmclock it was paused. EINVAL without kvmclock: ignored. */
  kvmclockCtrl(): void {
    load().ioctlVal(this.fd, KVM.KVMCLOCK_CTRL, 0);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const l = load();
    l.munmap(this.runPtr, this.runSize);
    l.close(this.fd);
  }
}
