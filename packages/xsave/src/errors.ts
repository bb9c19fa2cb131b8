import { Errno, PlugvisorError, type ErrnoName } from '@plugvisor/core';

/**
 * Why an XSAVE operation was refused:
 * - `BAD_DUMP`: a host capability dump is malformed or self-contradictory;
 * - `BAD_BUFFER`: an XSAVE buffer or a portable state record is malformed;
 * - `BAD_POLICY`: a guest's CPUID/XCR0 policy breaks the architectural rules;
 * - `KVM_EINVAL`: KVM would fail the ioctl with EINVAL (the checks are named in `checks`);
 * - `LAYOUT`: a buffer cannot be re-laid out for another host;
 * - `INCOMPATIBLE`: a VM's xfeature ABI cannot be reproduced on a destination host.
 */
export type XsaveErrorCode = 'BAD_DUMP' | 'BAD_BUFFER' | 'BAD_POLICY' | 'KVM_EINVAL' | 'LAYOUT' | 'INCOMPATIBLE';

/**
 * A typed XSAVE refusal. `components` names every component at fault (`opmask (bit 5)`),
 * `problems` has one line per fault, `errno` is KVM's errno where the refusal mirrors an ioctl.
 */
export class XsaveError extends PlugvisorError {
  readonly errno: number | undefined;
  constructor(
    readonly xsaveCode: XsaveErrorCode,
    message: string,
    readonly problems: readonly string[] = [message],
    readonly components: readonly string[] = [],
    readonly errnoName?: ErrnoName,
  ) {
    super(`XSAVE_${xsaveCode}`, message);
    this.errno = errnoName ? Errno[errnoName] : undefined;
  }
}

/** Throws one XsaveError listing every problem, or returns when there is none. */
export function refuse(code: XsaveErrorCode, what: string, problems: readonly string[], components: readonly string[] = [], errnoName?: ErrnoName): void {
  if (!problems.length) return;
  const message = problems.length === 1 ? `${what}: ${problems[0]}` : `${what}:\n- ${problems.join('\n- ')}`;
  throw new XsaveError(code, message, problems, [...new Set(components)], errnoName);
}
