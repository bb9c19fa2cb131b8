import { Conduits, EM_AARCH64, type MachineBackend } from '@plugvisor/core';
import { Arm64Machine } from './machine.js';
import { checkArm64Snapshot, machineFromPlan } from './snapshot.js';
import { unicornAvailable } from './ffi/unicorn.js';
import type { HvcImmediates } from './traps.js';

/** The arm64 machine as a backend: aarch64 guests on Unicorn 2; SMCCC and Xen hypercalls. */
export const arm64Backend: MachineBackend = Object.freeze({
  arch: 'arm64',
  description: 'arm64 on Unicorn 2 (libunicorn2)',
  elfMachine: EM_AARCH64,
  conduits: Object.freeze([Conduits.smccc, Conduits.xen]),
  unavailable: () => (unicornAvailable() ? undefined : 'the arm64 machine needs libunicorn2 (run scripts/setup.sh)'),
  // extra.hvcImmediates: an operator's choice of HVC personality (traps.ts); else the build's.
  create: (o) => new Arm64Machine({ vcpus: o.vcpus, memSize: o.memSize, console: o.console, ...(o.extra?.hvcImmediates !== undefined ? { hvcImmediates: o.extra.hvcImmediates as HvcImmediates } : {}) }),
  checkSnapshot: checkArm64Snapshot,
  rebuild: (plan, o) => machineFromPlan(plan, o.console ? { console: o.console } : {}),
} satisfies MachineBackend);
