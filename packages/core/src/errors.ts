/**
 * Typed errors. Every error Plugvisor raises toward an operator or a VMM carries a stable
 * `code` and a message a person can act on. Guest-caused faults never surface as these:
 * services turn them into the architected error of their ABI.
 */

/** errno values as Linux KVM returns them (asm-generic/errno-base.h). */
export const Errno = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  ENOEXEC: 8,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
} as const);
export type ErrnoName = keyof typeof Errno;

/**
 * The brand every PlugvisorError carries, under a key from the global symbol registry
 * (`Symbol.for`, ECMA-262 "GlobalSymbolRegistry"): the same symbol in every copy of this module.
 * Its value is the names of the error's classes, most derived first (`['UsageError',
 * 'PlugvisorError']`).
 */
export const PLUGVISOR_ERROR_BRAND: unique symbol = Symbol.for('@plugvisor/core:error') as never;

/**
 * The class names an error carries in its brand, most derived first, or undefined if it is no
 * PlugvisorError of any copy of @plugvisor/core.
 */
export function plugvisorErrorKinds(e: unknown): readonly string[] | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const kinds = (e as { [PLUGVISOR_ERROR_BRAND]?: unknown })[PLUGVISOR_ERROR_BRAND];
  return Array.isArray(kinds) && kinds.every((k) => typeof k === 'string') ? (kinds as readonly string[]) : undefined;
}

/**
 * The base class. `C` is the class's union of codes; the base class itself takes any code
 * (components without an error class of their own use it with their own codes).
 *
 * Recognised across copies of @plugvisor/core: a service installed with its own copy throws
 * errors whose prototype chain is that copy's, so a plain `instanceof` (ECMA-262
 * OrdinaryHasInstance: the prototype chain) would not know them. Every instance carries the
 * brand above, and the class defines `Symbol.hasInstance` (ECMA-262 InstanceofOperator), so
 * `e instanceof UsageError` is true for a UsageError of any copy: the prototype chain first,
 * then the brand's class names. Subclasses are recognised by their class name: give a subclass
 * a name no other PlugvisorError subclass has (prefix it with the package's own word, as
 * XenError, XsaveError).
 */
export class PlugvisorError<C extends string = string> extends Error {
  declare readonly [PLUGVISOR_ERROR_BRAND]: readonly string[];

  constructor(
    readonly code: C,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
    const kinds: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
      kinds.push((c as { name: string }).name);
    }
    Object.defineProperty(this, PLUGVISOR_ERROR_BRAND, { value: Object.freeze(kinds), enumerable: false });
  }

  static override [Symbol.hasInstance]<T>(this: abstract new (...args: any[]) => T, value: unknown): value is T {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    return plugvisorErrorKinds(value)?.includes(this.name) ?? false;
  }
}

/** `e` is a PlugvisorError, made by this copy of @plugvisor/core or any other. */
export function isPlugvisorError(e: unknown): e is PlugvisorError {
  return e instanceof PlugvisorError;
}

/** A ONE_REG / ABI-configuration call failed the way KVM would fail it. */
export class AbiError extends PlugvisorError<ErrnoName> {
  readonly errno: number;
  constructor(
    readonly errnoName: ErrnoName,
    message: string,
  ) {
    super(errnoName, message);
    this.errno = Errno[errnoName];
  }
}

export type ComposeErrorCode = 'COMPOSE';

/** A build could not be composed: names every package involved. */
export class ComposeError extends PlugvisorError<ComposeErrorCode> {
  constructor(
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super('COMPOSE', message);
  }
}

/** A guest-physical access outside guest RAM. Services map it to their ABI's error. */
export class GuestMemoryError extends PlugvisorError<'GUEST_MEMORY'> {
  constructor(
    readonly gpa: bigint,
    readonly length: number,
  ) {
    super('GUEST_MEMORY', `guest-physical range 0x${gpa.toString(16)}+${length} is outside guest RAM`);
  }
}

export type SnapshotErrorCode =
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'TRUNCATED'
  | 'BAD_CHECKSUM'
  | 'BAD_DIGEST'
  | 'BAD_RECORD'
  | 'UNKNOWN_MANDATORY'
  | 'DUPLICATE'
  | 'MISSING'
  | 'INCOMPATIBLE'
  // a key was given: the stream carries no MAC record, or its HMAC-SHA-256 does not match
  | 'UNSIGNED'
  | 'BAD_MAC';

/** A snapshot was refused, whole. `problems` names every record, feature or version at fault. */
export class SnapshotError extends PlugvisorError<`SNAPSHOT_${SnapshotErrorCode}`> {
  constructor(
    readonly snapshotCode: SnapshotErrorCode,
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super(`SNAPSHOT_${snapshotCode}`, message);
  }
}

/**
 * What an operator got wrong:
 * - BAD_ARGUMENT: a command-line flag or argument (the default);
 * - BAD_BUILD_FILE: a build file that is missing, malformed, names a service that cannot be
 *   found or loaded, or does not compose;
 * - BAD_OPTION: a service option a build file passes that the service does not declare, a
 *   value its declared schema refuses, or options the service's factory rejects;
 * - BAD_INPUT_FILE: another input file (a VM record, a snapshot, a guest image, a host dump)
 *   that is missing or unreadable;
 * - HOST_UNAVAILABLE: this host lacks what the command needs (/dev/kvm, libunicorn).
 */
export type UsageErrorCode = 'BAD_ARGUMENT' | 'BAD_BUILD_FILE' | 'BAD_OPTION' | 'BAD_INPUT_FILE' | 'HOST_UNAVAILABLE';

/** Bad operator input (CLI flags, build files): the CLI prints the message and exits 2. */
export class UsageError extends PlugvisorError<UsageErrorCode> {
  constructor(message: string, code: UsageErrorCode = 'BAD_ARGUMENT') {
    super(code, message);
  }
}

/** `e` is a UsageError, made by this copy of @plugvisor/core or any other. */
export function isUsageError(e: unknown): e is UsageError {
  return e instanceof UsageError;
}

/** Where in a service's life a failure happened: one of its call handlers, a hook tap, its state handler. */
export type ServiceFailurePhase =
  | 'call'
  | 'vmCreate'
  | 'firstRun'
  | 'vcpuReset'
  | 'snapshotSave'
  | 'snapshotRestore'
  | 'state create'
  | 'state load'
  | 'state save';

/** What a ServiceFailure knows of where it happened. */
export interface ServiceFailureSite {
  /** The service package and version (`?` if the tap's name is no service of the build). */
  readonly service: string;
  readonly version: string;
  readonly phase: ServiceFailurePhase;
  /** For a call: its function id (the id register's low word, as the guest passed it) and declared name. */
  readonly call?: { readonly id: number; readonly name: string };
  /** The vCPU the call trapped on (a call, vcpuReset). */
  readonly vcpu?: number;
}

/** What a hypercall watchdog reports as the cause of a handler that never returned. */
export class HypercallTimeout extends Error {
  constructor(readonly seconds: number) {
    super(`the handler did not return within ${seconds} s (hypercall watchdog)`);
    this.name = 'HypercallTimeout';
  }
}

/** An error's gist on one line: `TypeError: …` for an Error, the value otherwise (a thrown string, undefined). */
export function describeThrown(e: unknown): string {
  let text: string;
  if (e instanceof Error) text = `${e.name}: ${e.message}`;
  else if (typeof e === 'string') text = `threw the string ${JSON.stringify(e)}`;
  else {
    let s: string;
    try {
      s = typeof e === 'object' && e !== null ? JSON.stringify(e) ?? String(e) : String(e);
    } catch {
      s = Object.prototype.toString.call(e);
    }
    text = `threw ${s}`;
  }
  text = text.replace(/\s*\n\s*/g, '; ');
  return text.length > 300 ? text.slice(0, 297) + '...' : text;
}

/**
 * A service failed: a call handler, a hook tap or its state handler threw (or, seen by a
 * watchdog, never returned). Not the guest's doing and not the operator's: the VM stops with
 * this internal error, which names the service package and version, the call (id and name),
 * the vCPU and, once the machine owner located it, the PC of the trapping instruction. `cause`
 * is what was thrown (anything: an Error, a string, undefined).
 */
export class ServiceFailure extends PlugvisorError<'SERVICE_FAILURE'> {
  /** The guest PC of the trapping instruction, set by whoever owns the machine (locate). */
  pc: bigint | undefined;

  constructor(
    readonly site: ServiceFailureSite,
    override readonly cause: unknown,
  ) {
    super('SERVICE_FAILURE', '');
    this.message = this.describe();
  }

  /** Records the trapping instruction's PC and puts it in the message. */
  locate(pc: bigint | undefined): this {
    this.pc = pc;
    this.message = this.describe();
    return this;
  }

  /** One line: `service P@V failed in call 0x… NAME on vCPU n at PC 0x…: TypeError: …`. */
  describe(): string {
    const s = this.site;
    const where =
      s.phase === 'call'
        ? `call 0x${((s.call?.id ?? 0) >>> 0).toString(16).padStart(8, '0')} ${s.call?.name ?? '?'}`
        : s.phase === 'state create' || s.phase === 'state load' || s.phase === 'state save'
          ? `its ${s.phase} handler`
          : `its ${s.phase} hook`;
    const vcpu = s.vcpu !== undefined ? ` on vCPU ${s.vcpu}` : '';
    const pc = this.pc !== undefined ? ` at PC 0x${this.pc.toString(16)}` : '';
    return `service ${s.service}@${s.version} failed in ${where}${vcpu}${pc}: ${describeThrown(this.cause)}`;
  }
}

/** `e` is a ServiceFailure, made by this copy of @plugvisor/core or any other. */
export function isServiceFailure(e: unknown): e is ServiceFailure {
  return e instanceof ServiceFailure;
}
