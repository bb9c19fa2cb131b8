import type { RegisterFile } from '../machine/registers.js';

/**
 * A conduit is a calling convention: where the function id sits and what "not supported"
 * looks like. It is not a service; a backend decides which trap maps to which conduit. It is
 * plain frozen data: a build (Hypervisor.conduits) holds the conduits it was composed with and
 * numbers them itself, so one conduit can sit in many builds, at different indexes.
 */
export interface Conduit {
  readonly name: string;
  /**
   * A fixed slot of the core's own arm64 conduits (smccc 0, xen 1), which an arm64 backend may
   * key its own trap tables on. The router does not use it: each build gives each of its
   * conduits a dense index of its own (BuildConduits). A machine's conduit has none
   * (ConduitDefinition).
   */
  readonly index: number;
  /**
   * Where the function id sits: index into `RegisterFile.u32` (register n's low word is 2n).
   * Data rather than code so the router can inline it into each VM's compiled dispatcher.
   */
  readonly functionIdWord: number;
  /**
   * For conventions whose id is a whole 64-bit register: the index of its high word, which must
   * be zero for the call to be known (Xen compares all of x16; SMCCC looks at w0 only).
   */
  readonly functionIdHighWord?: number;
  /** The function id of the call in `regs` (u32). */
  functionId(regs: RegisterFile): number;
  /** Writes the architected "not supported" answer. */
  notSupported(regs: RegisterFile): void;
  /** Registers a handler may have changed; the backend writes these back after dispatch. */
  readonly resultRegisters: readonly number[];
  readonly description: string;
}

/**
 * A conduit as a machine package declares it (its backend descriptor's `conduits`), and what a
 * build, the router and the behaviour probes take: the calling convention, without a slot.
 */
export type ConduitDefinition = Omit<Conduit, 'index'>;

const ENOSYS = 38;

/**
 * KVM's `smccc_set_retval(vcpu, x0, x1, x2, x3)`: every handled SMCCC call rewrites x0–x3.
 * Each value is a 32-bit quantity: negative codes are sign-extended to 64 bits (−1 →
 * 0xFFFF_FFFF_FFFF_FFFF), non-negative ones (up to 0xFFFF_FFFF) are zero-extended.
 */
export function smcccReturn(regs: RegisterFile, x0: number, x1 = 0, x2 = 0, x3 = 0): void {
  regs.setSigned(0, x0);
  regs.setSigned(1, x1);
  regs.setSigned(2, x2);
  regs.setSigned(3, x3);
}

/** Arm SMCCC (HVC #0 / SMC #0): function id in w0; NOT_SUPPORTED is x0 = −1, x1–x3 = 0. */
export const smccc: Conduit = Object.freeze({
  name: 'smccc',
  index: 0,
  description: 'Arm SMCCC: w0 = function id, x1..x7 arguments, results in x0..x3',
  resultRegisters: Object.freeze([0, 1, 2, 3]),
  functionIdWord: 0, // w0
  functionId: (regs: RegisterFile) => regs.u32[0]!,
  notSupported(regs: RegisterFile) {
    const r = regs.u32;
    r[0] = 0xffff_ffff;
    r[1] = 0xffff_ffff;
    r[2] = 0;
    r[3] = 0;
    r[4] = 0;
    r[5] = 0;
    r[6] = 0;
    r[7] = 0;
  },
});

/** Xen on Arm (HVC #0xEA1): op in x16, arguments x0..x4, result in x0; unknown op → −ENOSYS. */
export const xen: Conduit = Object.freeze({
  name: 'xen',
  index: 1,
  description: 'Xen on Arm: x16 = hypercall number, x0..x4 arguments, result in x0',
  resultRegisters: Object.freeze([0]),
  functionIdWord: 32, // low word of x16
  functionIdHighWord: 33, // x16 ≥ 2^32 is no hypercall
  functionId: (regs: RegisterFile) => regs.u32[32]!,
  notSupported(regs: RegisterFile) {
    regs.setSigned(0, -ENOSYS);
  },
});

/**
 * The core's conduits, as constants. There is no registry: which conduits a build has is
 * decided when it is composed (`Hypervisor.compose(services, { conduits })`, from the machine
 * backend's descriptor) and held by the build (`hv.conduits`), so nothing depends on what a
 * process happened to import.
 */
export const Conduits = Object.freeze({
  smccc,
  xen,
  /** The conduits every build has: the core's arm64 calling conventions. */
  core: Object.freeze([smccc, xen]) as readonly Conduit[],
});

/** The data that makes two definitions of one name the same calling convention. */
export function sameConvention(a: ConduitDefinition, b: ConduitDefinition): boolean {
  return (
    a.name === b.name &&
    a.functionIdWord === b.functionIdWord &&
    a.functionIdHighWord === b.functionIdHighWord &&
    a.resultRegisters.length === b.resultRegisters.length &&
    a.resultRegisters.every((r, i) => r === b.resultRegisters[i])
  );
}
