/**
 * One x86-64 vCPU on KVM: its fd and kvm_run, the register transfer for hypercalls, the
 * long-mode entry, and state save/restore in Firecracker's order (firecracker
 * src/vmm/src/arch/x86_64/vcpu.rs save_state / restore_state). Power state and a pending
 * CPU_ON are the machine runtime's (@plugvisor/core MachineRuntime), not the vCPU's.
 */
import { RegisterFile, type Machine, type VcpuContext } from '@plugvisor/core';
import { decodeXsave, encodeXsave, planXsaveSet, type GuestXsavePolicy, type HostCapabilities } from '@plugvisor/xsave';
import { EINTR, KvmError, SIZE, type KvmVcpu } from '../ffi/kvm.js';
import { VcpuStateError } from '../errors.js';
import { Layout, longModeSregs, entryRegs } from './longmode.js';
import { decodeRegs, decodeSregs, decodeXcrs, encodeRegs, encodeSregs, encodeXcrs, R } from './structs.js';
import type { VcpuState } from './state.js';

export const MSR = Object.freeze({ TSC: 0x10, TSC_DEADLINE: 0x6e0, XSS: 0xda0 });

/** What a vCPU needs from its machine and host. */
export interface VcpuEnv {
  readonly machine: Machine;
  readonly host: HostCapabilities;
  readonly guestPolicy: GuestXsavePolicy;
  readonly xsave2: boolean;
  readonly syncRegs: boolean;
  readonly irqchip: boolean;
  readonly immediateExit: boolean;
}

export class X86Vcpu {
  readonly regs = new RegisterFile(18);
  readonly ctx: VcpuContext;
  /** MSRs this vCPU saves: KVM's index list, those it can read for this guest (set by the machine). */
  msrList: number[] = [];
  private readonly regBuf = new Uint8Array(SIZE.REGS);
  private readonly regBuf32 = new Uint32Array(this.regBuf.buffer);

  constructor(
    readonly index: number,
    readonly kvm: KvmVcpu,
    private readonly env: VcpuEnv,
  ) {
    // A preempted call (core continueCall) re-executes the OUT's opcode byte, EE/EF (`out dx, al|eax`:
    // the only OUTs that reach port 0x600); a 0x66 prefix before it is not repeated, which the
    // port conduit does not see (any width is the same hypercall). Rewinding needs the pending
    // I/O completed first (settle: KVM_RUN with immediate_exit), so without it there is none.
    this.ctx = { index, regs: this.regs, machine: env.machine, ...(env.immediateExit ? { trapLength: 1 } : {}) };
    if (env.syncRegs) kvm.enableSyncRegs();
  }

  /** The APIC id (= the KVM vcpu id). */
  get apicId(): number {
    return this.kvm.id;
  }

  /** Loads rax..rflags of the exit into `regs` (sync regs: no ioctl). */
  loadRegs(): void {
    if (this.env.syncRegs) this.regs.u32.set(this.kvm.syncRegs32);
    else {
      this.kvm.getRegs(this.regBuf);
      this.regs.u32.set(this.regBuf32);
    }
  }

  /** Writes rax back for the next KVM_RUN. */
  storeRax(): void {
    const r = this.regs.u32;
    if (this.env.syncRegs) {
      const s = this.kvm.syncRegs32;
      s[0] = r[0]!;
      s[1] = r[1]!;
      this.kvm.markSyncRegsDirty();
    } else {
      this.regBuf32[0] = r[0]!;
      this.regBuf32[1] = r[1]!;
      this.kvm.setRegs(this.regBuf);
    }
  }

  /**
   * A preempted call: the OUT runs again with the registers the handler left (all of rax..r15:
   * a continuation rewrites arguments). The pending I/O is completed first (settle), so RIP is
   * past the OUT however KVM advances it (before the exit, or on completion: arch/x86/kvm/x86.c
   * complete_fast_pio_out), then moved back `bytes` onto it.
   */
  continueAt(bytes: number): void {
    this.settle();
    const b = this.kvm.getRegs(this.regBuf);
    const v = new BigUint64Array(b.buffer, b.byteOffset, 18);
    for (let r = 0; r < 16; r++) v[r] = this.regs.u64[r]!;
    v[R.RIP] = BigInt.asUintN(64, v[R.RIP]! - BigInt(bytes));
    this.kvm.setRegs(b);
  }

  /** Enters 64-bit long mode at `entry` with rdi = `context` (CPL0, paging on, IF = 0). */
  reset(entry: bigint, context: bigint): void {
    // With the in-kernel LAPIC an application processor starts in KVM_MP_STATE_UNINITIALIZED
    // (waiting for INIT/SIPI: KVM_RUN would block); we start it directly.
    if (this.env.irqchip) this.kvm.setMpState(0 /* KVM_MP_STATE_RUNNABLE */);
    const sregs = decodeSregs(this.kvm.getSregs());
    this.kvm.setSregs(encodeSregs(longModeSregs(sregs)));
    // Each vCPU its own 1 KiB boot stack below 0x8ff0 (vCPUs 28+ share: set your own stack).
    this.kvm.setRegs(encodeRegs(entryRegs(entry, context, BigInt(Layout.STACK_TOP - 0x400 * (this.index % 28)))));
    // x87/SSE init state (FCW 0x37F, MXCSR 0x1F80) is KVM's reset state already.
  }

  /**
   * Completes a pending I/O exit and applies dirty sync regs without running guest code: KVM_RUN
   * with immediate_exit = 1 (api.rst §5: "IO ... complete only on the next KVM_RUN"). Must run
   * before state is read for a snapshot.
   */
  settle(): void {
    if (!this.env.immediateExit) return;
    this.kvm.immediateExit = true;
    const rc = this.kvm.run();
    this.kvm.immediateExit = false;
    if (rc !== 0 && rc !== EINTR) throw new KvmError('KVM_RUN(immediate_exit)', rc);
  }

  /** Reads the whole vCPU state (Firecracker's order: mp_state first, events last); the runtime adds `run`. */
  save(): Omit<VcpuState, 'run'> {
    this.settle();
    const k = this.kvm;
    const mpState = this.env.irqchip ? k.getMpState() : undefined;
    const regs = decodeRegs(k.getRegs());
    const sregs = decodeSregs(k.getSregs());
    const xsave = decodeXsave(k.getXsave(this.env.host.uabiSize, this.env.xsave2), this.env.host);
    const xcrs = decodeXcrs(k.getXcrs());
    const debugregs = k.getDebugregs();
    const lapic = this.env.irqchip ? k.getLapic() : undefined;
    const values = k.getMsrs(this.msrList);
    if (values.length !== this.msrList.length) {
      throw new KvmError('KVM_GET_MSRS', 0, `read ${values.length} of ${this.msrList.length} MSRs: 0x${this.msrList[values.length]!.toString(16)} failed`);
    }
    const msrs = msrOrder(this.msrList.map((idx, i) => [idx, values[i]!] as const));
    const events = k.getVcpuEvents();
    return {
      regs,
      sregs,
      xsave,
      xcrs,
      msrs,
      ...(lapic ? { lapic } : {}),
      events,
      debugregs,
      ...(mpState !== undefined ? { mpState } : {}),
    };
  }

  /**
   * Writes a saved state (Firecracker's restore order; CPUID was set when the vCPU was made).
   * XSAVE is re-encoded at this host's offsets after the xsave policy accepted it.
   */
  restore(s: VcpuState): void {
    const k = this.kvm;
    const plan = planXsaveSet(s.xsave, this.env.guestPolicy, this.env.host);
    const xbuf = encodeXsave(plan.state, this.env.host, new Uint8Array(Math.max(SIZE.XSAVE, this.env.host.uabiSize)));
    if (this.env.irqchip && s.mpState !== undefined) k.setMpState(s.mpState);
    k.setRegs(encodeRegs(s.regs));
    k.setSregs(encodeSregs(s.sregs));
    k.setXsave(xbuf);
    k.setXcrs(encodeXcrs(s.xcrs));
    const dr = new Uint8Array(s.debugregs);
    new DataView(dr.buffer).setUint32(48, 0, true); // flags must be 0 on SET
    k.setDebugregs(dr);
    if (this.env.irqchip && s.lapic) k.setLapic(s.lapic);
    const msrs = msrOrder(s.msrs);
    const n = k.setMsrs(msrs);
    if (n !== msrs.length) throw new VcpuStateError(`KVM_SET_MSRS wrote ${n} of ${msrs.length} MSRs: MSR 0x${msrs[n]![0].toString(16)} was refused`);
    k.setVcpuEvents(s.events);
    k.kvmclockCtrl();
  }

  /** rip, for messages (an ioctl; not for the hot path). */
  rip(): bigint {
    return decodeRegs(this.kvm.getRegs()).rip;
  }
}

/** IA32_TSC_DEADLINE after IA32_TSC (Firecracker restore_state), everything else in order. */
function msrOrder(m: readonly (readonly [number, bigint])[]): (readonly [number, bigint])[] {
  return [...m.filter(([i]) => i !== MSR.TSC_DEADLINE), ...m.filter(([i]) => i === MSR.TSC_DEADLINE)];
}

export { R };
