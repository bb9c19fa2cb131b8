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
 * The base class. `C` is the class's union of codes; the base class itself takes any code
 * (components without an error class of their own use it with their own codes).
 */
export class PlugvisorError<C extends string = string> extends Error {
  constructor(
    readonly code: C,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
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
