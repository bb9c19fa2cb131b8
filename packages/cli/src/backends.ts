import { BuildConduits, type ConduitDefinition, type MachineBackend } from '@plugvisor/core';
import { arm64Backend } from '@plugvisor/machine-arm64';
import { x86Backend } from '@plugvisor/machine-x86';

/**
 * The machine backends this CLI ships, in preference order (the first is the default for raw
 * images). Commands iterate these descriptors; adding a backend is one line here.
 */
export const BACKENDS: readonly MachineBackend[] = Object.freeze([
  arm64Backend,
  x86Backend,
]);

/**
 * Every conduit the shipped backends declare (arm64: smccc, xen; x86: x86-port), each once: what
 * the CLI composes its builds with, so a build file may declare services on any of them. A
 * conduit belongs to the build it is composed into; nothing is registered in the process.
 */
export const BACKEND_CONDUITS: readonly ConduitDefinition[] = Object.freeze(new BuildConduits(BACKENDS.flatMap((b) => b.conduits)).list);
