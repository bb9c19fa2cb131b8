import { PlugvisorError } from '@plugvisor/core';
import { XEN_ERRNO, type XenErrnoName } from './abi.js';

/**
 * A VMM-side call (raiseEvent, vmmBindInterdomain, ...) failed: carries the Xen errno the same
 * operation would give a guest, and a message a person can act on. Guests never see this type:
 * their calls get the negative errno in x0.
 */
export class XenError extends PlugvisorError {
  readonly errno: number;
  constructor(
    readonly errnoName: XenErrnoName,
    message: string,
  ) {
    super(`XEN_${errnoName}`, message);
    this.errno = XEN_ERRNO[errnoName];
  }
}
