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

export class PlugvisorError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A ONE_REG / ABI-configuration call failed the way KVM would fail it. */
export class AbiError extends PlugvisorError {
  readonly errno: number;
  constructor(
    readonly errnoName: ErrnoName,
    message: string,
  ) {
    super(errnoName, message);
    this.errno = Errno[errnoName];
  }
}

/** A build could not be composed: names every package involved. */
export class ComposeError extends PlugvisorError {
  constructor(
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super('COMPOSE', message);
  }
}

/** A guest-physical access outside guest RAM. Services map it to their ABI's error. */
export class GuestMemoryError extends PlugvisorError {
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
  | 'INCOMPATIBLE';

/** A snapshot was refused, whole. `problems` names every record, feature or version at fault. */
export class SnapshotError extends PlugvisorError {
  constructor(
    readonly snapshotCode: SnapshotErrorCode,
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super(`SNAPSHOT_${snapshotCode}`, message);
  }
}

/** Bad operator input (CLI flags, build files): reported and exits non-zero. */
export class UsageError extends PlugvisorError {
  constructor(message: string) {
    super('USAGE', message);
  }
}
