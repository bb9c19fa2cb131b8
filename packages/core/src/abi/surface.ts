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
}

/** A firmware bitmap register bit that mirrors a feature (KVM's *_BMAP registers). */
export interface FeatureRegisterBit {
  readonly id: bigint;
  readonly name: string;
  readonly bit: number;
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
 * A continuation (restart) encoding a service uses for preemptible calls. Declared because
 * it is ABI: a guest (or a migrated vCPU) may re-issue a call with it.
 */
export interface ContinuationDecl {
  readonly call: string;
  readonly description: string;
  /** e.g. which register bits carry the restart state. */
  readonly encoding: string;
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
