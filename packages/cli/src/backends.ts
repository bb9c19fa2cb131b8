import type { MachineBackend } from '@plugvisor/core';
import { arm64Backend } from '@plugvisor/machine-arm64';
import { x86Backend } from '@plugvisor/machine-x86';

/**
 * The machine backends this CLI ships, in preference order (the first is the default for raw
 * images). Commands iterate these descriptors; adding a backend is one line here.
 */
export const BACKENDS: readonly MachineBackend[] = Object.freeze([arm64Backend, x86Backend]);
