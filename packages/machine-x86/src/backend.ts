import { EM_X86_64, type MachineBackend } from '@plugvisor/core';
import type { GuestXsavePolicy } from '@plugvisor/xsave';
import { X86Machine } from './machine.js';
import { checkX86Snapshot, machineFromPlan } from './snapshot.js';
import { kvmUnavailable } from './host.js';
import { X86_PORT_CONDUIT } from './traps.js';
import { x86HostReport } from './host-report.js';

/** The x86 machine as a backend: x86-64 guests on Linux KVM; the x86-port hypercall conduit. */
export const x86Backend: MachineBackend = Object.freeze({
  arch: 'x86_64',
  description: 'x86-64 on Linux KVM (/dev/kvm)',
  elfMachine: EM_X86_64,
  conduits: Object.freeze([X86_PORT_CONDUIT]),
  unavailable: () => {
    const why = kvmUnavailable();
    return why ? `the x86 machine needs /dev/kvm: ${why}` : undefined;
  },
  create: (o) => {
    const xsave = o.extra?.xsave as GuestXsavePolicy | undefined;
    return new X86Machine({ vcpus: o.vcpus, memSize: o.memSize, console: o.console, ...(xsave ? { xsave } : {}) });
  },
  checkSnapshot: checkX86Snapshot,
  rebuild: (plan, o) => machineFromPlan(plan, o.console ? { console: o.console } : {}),
  hostReport: x86HostReport,
} satisfies MachineBackend);
