/**
 * Guest exceptions Unicorn hands to the host instead of taking them (QEMU EXCP_* numbers in
 * Unicorn's interrupt hook): delivered to the guest's EL1 vector as the architecture would
 * (Arm ARM D1.10 "Exception entry"), or a fault the machine cannot continue from.
 */
import { Layout } from '../board/layout.js';
import { GuestFault } from '../errors.js';
import { TrapKind } from '../traps.js';
import { EC, Excp, type Vcpu } from './vcpu.js';

/** Delivers a guest exception Unicorn reported (after the slice), or turns it into a fault. */
export function deliverException(v: Vcpu, intno: number, pc: bigint, ram32: Uint32Array, ramSize: number): GuestFault | undefined {
  v.exception = null;
  const word = (addr: bigint): number | undefined => {
    const off = Number(addr - Layout.RAM_BASE);
    return addr >= Layout.RAM_BASE && off + 4 <= ramSize ? ram32[off >>> 2] : undefined;
  };
  switch (intno) {
    case -TrapKind.UNDEF: // HVC with an unknown immediate, legacy rule; PC is past it
      v.injectUndef(pc - 4n);
      return undefined;
    case -TrapKind.UNDEF_PAST: // the same, Xen's rule: ELR_EL1 = the preferred return address, past it
      v.injectUndef(pc);
      return undefined;
    case Excp.UDEF: // PC at the instruction
      v.injectUndef(pc);
      return undefined;
    case Excp.SWI: {
      // SVC: PC past it, preferred return = next instruction
      const imm = ((word(pc - 4n) ?? 0) >>> 5) & 0xffff;
      v.takeException('sync', pc, (1n << 25n) | (BigInt(EC.SVC64) << 26n) | BigInt(imm));
      return undefined;
    }
    case Excp.BKPT: {
      const imm = ((word(pc) ?? 0) >>> 5) & 0xffff;
      v.takeException('sync', pc, (1n << 25n) | (BigInt(EC.BRK64) << 26n) | BigInt(imm));
      return undefined;
    }
    case Excp.PREFETCH_ABORT:
    case Excp.DATA_ABORT:
      // Unicorn consumes the exception syndrome and fault address; we cannot rebuild them.
      return new GuestFault(v.index, pc, `${intno === Excp.DATA_ABORT ? 'data' : 'instruction'} abort (MMU fault); not delivered by this machine`);
    default:
      return new GuestFault(v.index, pc, `unexpected CPU exception ${intno}`);
  }
}
