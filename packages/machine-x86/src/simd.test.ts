import { describe, expect, it } from 'vitest';
import { planRestore, saveSnapshot } from '@plugvisor/core';
import { X86Machine } from './machine.js';
import { kvmUnavailable } from './host.js';
import { checkX86Snapshot, machineFromPlan } from './snapshot.js';
import { guestImage } from './testing/guests.js';
import { x86TestBuild } from './testing/build.js';
import { simdAtCpl0 } from './testing/capabilities.js';

/**
 * Guest SIMD at CPL0 needs hardware KVM (VMX/SVM). kvm_pvm emulates CPL0 code and ends SSE/AVX
 * in KVM_EXIT_INTERNAL_ERROR (suberror 1, emulation): detected by running an SSE probe guest.
 */
const noKvm = kvmUnavailable();
const simd = noKvm ? { ok: false, reason: `needs /dev/kvm: ${noKvm}` } : simdAtCpl0();

describe('guest SIMD state across a snapshot (hardware KVM)', () => {
  it.skipIf(!simd.ok)(`XMM/YMM registers the guest loaded survive snapshot and restore into a new VM${simd.ok ? '' : ` — skipped: ${simd.reason}`}`, () => {
    const hv = x86TestBuild();
    const vm = hv.createVm();
    const out: string[] = [];
    const m = new X86Machine({ memSize: 4 << 20, console: (b) => out.push(Buffer.from(b).toString('latin1')) });
    m.boot(m.loadImage(guestImage('simd')).entry);
    vm.attachMachine(m);
    m.attach(vm);
    expect(m.run({ pauseAfterTraps: 1 })).toEqual({ kind: 'paused', reason: 'trap budget reached' });
    const bytes = saveSnapshot(vm, m.image());
    m.dispose();
    const plan = planRestore(bytes, hv, { arch: 'x86_64', checkMachine: checkX86Snapshot });
    const b = machineFromPlan(plan, { console: (x) => out.push(Buffer.from(x).toString('latin1')) });
    try {
      expect(b.run().kind).toBe('system-event');
      expect(out.join('')).toBe('simd ok\n');
    } finally {
      b.dispose();
    }
  });

  it('the SIMD probe reports what it found', () => {
    expect(typeof simd.reason).toBe('string');
    console.log(`SIMD at CPL0: ${simd.ok ? 'available' : simd.reason}`);
  });
});
