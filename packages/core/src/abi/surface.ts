/**
 * A service's guest-ABI surface, as plain data. This is what a service adds to a guest's
 * view of the hypervisor; the core builds manifests, per-VM ABI records, firmware
 * registers, dispatch tables and compatibility verdicts from it and from nothing else.
 */

import type { CallSignature } from './signature.js';

/**
 * `legacy-opt-out`: ABI guests already saw unconditionally before a control existed (on by
 * default, an operator may turn it off). `opt-in`: everything new (off unless asked for).
 */
export type FeatureDefault = 'legacy-opt-out' | 'opt-in';

/** A call the service answers: one function id, or an inclusive range, on one conduit. */
export interface CallDecl {
  /** Build-unique name; also the key handlers tap (`hv.hooks.call.for(name)`). */
  readonly name: string;
  /** Conduit name (`smccc`, `xen`, ...). */
  readonly conduit: string;
  /** Function id (u32), or the first id of a range. */
  readonly id: number;
  /** Last id of an inclusive range; absent for a single call. */
  readonly last?: number;
  /** The feature that gates the call: exposed only while the feature is on. */
  readonly feature: string;
  /** Exposed only when the VM's selection of this service's version is at least `minimum`. */
  readonly since?: { readonly version: string; readonly minimum: string };
  /** Exposed only when the VM's selection is at most `maximum` (calls a later version dropped). */
  readonly until?: { readonly version: string; readonly maximum: string };
  /**
   * What the call reads and writes (abi/signature.ts). Absent: no arguments, the conduit's
   * result registers. Probes, behaviour transcripts and register transfer are generated from it.
   */
  readonly signature?: CallSignature;
  /**
   * This call is a sub-op of another declared call (a multiplexed hypercall's command): it has
   * no function id of its own. Its `id` must be the parent's, and the router reaches it with a
   * second-level switch on the parent's selector register (see SubOpDecl).
   */
  readonly subOf?: SubOpDecl;
}

/**
 * Where a sub-op sits under its parent: a call the guest makes with the parent's function id
 * and `value` in the `selector` register. Xen's `event_channel_op(cmd, arg)` is the model:
 * `{ call: 'HYPERVISOR_event_channel_op', selector: 0, value: EVTCHNOP_send }`.
 *
 * Rules (checked when a build is composed): the parent is a declared single-id call on the same
 * conduit and not itself a sub-op; every sub-op of a parent names the same selector register
 * (not the conduit's id register); selector values are unique per parent. A sub-op is gated by
 * its own feature and version bounds, which may belong to another service than the parent's
 * (svc-evtchn-fifo's init_control under svc-xen's event_channel_op), and is exposed only while
 * its parent is too. The router compares the selector register's low 32 bits (a C `int cmd`),
 * without the bits of a continuation field declared there (ContinuationDecl: Xen's memory_op
 * chooses its op from `cmd & MEMOP_CMD_MASK`);
 * a selector value nobody exposes goes to the parent's own handler, which answers it as the
 * hypercall's `default:` case does (Xen: -ENOSYS).
 */
export interface SubOpDecl {
  /** The parent call's name. */
  readonly call: string;
  /** The register holding the selector (x0 for Xen's multiplexed hypercalls). */
  readonly selector: number;
  /** The selector value (u32) this sub-op answers. */
  readonly value: number;
}

/** A firmware bitmap register bit that mirrors a feature (KVM's *_BMAP registers). */
export interface FeatureRegisterBit {
  readonly id: bigint;
  readonly name: string;
  readonly bit: number;
  /**
   * When the register is enumerated (KVM_GET_REG_LIST, `vm.abi.getRegList()`) and recorded in a
   * VM's ABI record. `always` (default): in every VM of a build that has it. `when-set`: only
   * while the register reads non-zero, i.e. only for VMs that turned one of its features on —
   * for a register added after VMs existed, so a VM that did not ask for it keeps the register
   * list it had (a VMM migrates what the list names: QEMU refuses a register the destination
   * kernel lacks, target/arm/machine.c cpu_post_load). It stays readable and writable by id.
   * A bitmap register is `when-set` only if every bit declared in it says so.
   */
  readonly listed?: 'always' | 'when-set';
}

export interface FeatureDecl {
  /** Build-unique name, as operators type it (`--feature trng=off`). */
  readonly name: string;
  readonly default: FeatureDefault;
  readonly description: string;
  /** The firmware register bit through which a VMM reads and sets this feature, if any. */
  readonly register?: FeatureRegisterBit;
  /**
   * Why a `legacy-opt-out` feature is on by default: which guests saw this ABI before a control
   * existed. The conformance kit requires it; new ABI is `opt-in`.
   */
  readonly legacy?: string;
}

export interface VersionValue {
  /** As people write it: `1.1`. */
  readonly name: string;
  /** As the guest and the firmware register see it: `0x10001`. */
  readonly value: number;
}

/** A version selector (e.g. the PSCI version a VM gets). Values are in ascending order. */
export interface VersionDecl {
  readonly name: string;
  readonly description: string;
  readonly values: readonly VersionValue[];
  /** Name of the default value. */
  readonly default: string;
  /** The firmware register that reads and selects it, if any. */
  readonly register?: { readonly id: bigint; readonly name: string };
}

/**
 * A firmware register with a fixed value that a VMM may write back (restore replay): any
 * value in `accepts` is taken and changes nothing; others fail with EINVAL. KVM's Spectre
 * workaround-level registers are this shape.
 */
export interface ConstantRegisterDecl {
  readonly id: bigint;
  readonly name: string;
  readonly description: string;
  readonly value: bigint;
  readonly accepts: readonly bigint[];
}

/** Per-VM state the service keeps, carried in snapshots under its own schema version. */
export interface StateDecl {
  readonly id: string;
  readonly version: number;
  /** Oldest schema version this package still reads (default: `version`). */
  readonly minReadable?: number;
  /** Whether this service's state record is needed to restore (default true). */
  readonly mandatory?: boolean;
}

/**
 * One field of a continuation encoding: `width` bits of register x`reg` from bit `shift` carry
 * the call's progress when it is re-issued (Xen's memory_op: the start extent in cmd[63:6],
 * `{ name: 'start extent', reg: 0, shift: 6, width: 58 }`: xen/include/xen/hypercall.h
 * MEMOP_EXTENT_SHIFT). Zero in every field is the call's first leg.
 */
export interface ContinuationField {
  readonly name: string;
  readonly reg: number;
  readonly shift: number;
  readonly width: number;
  readonly description?: string;
}

/**
 * A call's continuation (restart) encoding. Declared because it is ABI: a handler that ends a
 * leg with `continueCall` rewrites the guest's argument registers and the vCPU re-executes the
 * trapping instruction (Xen's hypercall_create_continuation, xen/arch/arm/domain.c), so the
 * rewritten registers may sit in a descheduled guest task's saved context — in guest memory —
 * when the VM moves. Restore refuses a build whose encoding for the call differs, and a handler
 * that preempts a call without one is a service failure.
 *
 * `otherSubOps`: for a sub-op whose field lies in its parent's selector register (Xen's cmd),
 * the router strips the field's bits before choosing the sub-op, and a sub-op of that parent
 * that declares no continuation and sees non-zero bits there gets this answer without its
 * handler running (Xen's do_memory_op: `if ( unlikely(start_extent) ) return -EINVAL;`, xen/
 * common/memory.c) — the rule that keeps a later encoding change compatible (core README).
 */
export interface ContinuationDecl {
  readonly call: string;
  readonly description: string;
  /** The fields that carry the progress, compared exactly: the encoding is ABI. */
  readonly encoding: readonly ContinuationField[];
  /** Register and signed value the parent's other sub-ops answer when the field is non-zero. */
  readonly otherSubOps?: { readonly reg: number; readonly value: number };
}

/** A continuation encoding as one canonical line: `x0[63:6] start extent`, fields by register and bit. */
export function formatContinuation(encoding: readonly ContinuationField[]): string {
  if (encoding.length === 0) return 'none';
  return [...encoding]
    .sort((a, b) => a.reg - b.reg || a.shift - b.shift)
    .map((f) => `x${f.reg}[${f.shift + f.width - 1}:${f.shift}] ${f.name}`)
    .join(', ');
}

/** The bits of register `reg` that the encoding's fields occupy. */
export function continuationMask(encoding: readonly ContinuationField[], reg: number): bigint {
  let m = 0n;
  for (const f of encoding) if (f.reg === reg) m |= ((1n << BigInt(f.width)) - 1n) << BigInt(f.shift);
  return m;
}

/**
 * What the ABI layer knows of a service: its identity and surface. The plugin API's
 * `ServicePlugin` extends it with handlers and state; abi/ never needs those.
 */
export interface ServiceDecl {
  /** npm package name, e.g. `@plugvisor/svc-trng`. */
  readonly name: string;
  /** The package version: its version line is an ABI identifier. */
  readonly version: string;
  readonly description?: string;
  readonly surface: ServiceSurface;
  /** Packages this service needs in the same build (e.g. a vendor service's base). */
  readonly requires?: readonly string[];
}

export interface ServiceSurface {
  readonly calls: readonly CallDecl[];
  readonly features: readonly FeatureDecl[];
  readonly versions?: readonly VersionDecl[];
  readonly constants?: readonly ConstantRegisterDecl[];
  readonly state?: StateDecl;
  readonly continuations?: readonly ContinuationDecl[];
}

export const hex = (v: number | bigint, width = 0): string =>
  '0x' + (typeof v === 'bigint' ? v : BigInt(v >>> 0)).toString(16).padStart(width, '0');
