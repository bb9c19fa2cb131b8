/**
 * What this host's KVM can do, detected (not guessed) for tests that need more than kvm_pvm
 * offers (kvm_pvm emulates CPL0 code): SIMD at CPL0 ends in KVM_EXIT_INTERNAL_ERROR there.
 */
import { existsSync } from 'node:fs';
import { X86Machine } from '../machine.js';
import { Exit } from '../machine.js';
import { kvmUnavailable } from '../host.js';
import { TestRouter } from './test-router.js';

/** /sys/module/kvm_pvm exists: this KVM is PVM (CPL0 guest code is emulated). */
export const pvmDetected = (): boolean => existsSync('/sys/module/kvm_pvm');

let simd: { ok: boolean; reason: string } | undefined;

/**
 * Runs `pxor xmm0, xmm0; movdqu [rsp-16], xmm0` at CPL0 in a fresh VM, then powers off. `ok` when
 * that works; otherwise `reason` says what happened (e.g. kvm_pvm's internal error).
 */
export function simdAtCpl0(): { ok: boolean; reason: string } {
  if (simd) return simd;
  const why = kvmUnavailable();
  if (why) return (simd = { ok: false, reason: why });
  const m = new X86Machine({ memSize: 4 << 20, console: () => {} });
  try {
    // pxor xmm0,xmm0 ; movdqu [rsp-16],xmm0 ; mov dx,0x604 ; xor eax,eax ; out dx,eax
    const code = [0x66, 0x0f, 0xef, 0xc0, 0xf3, 0x0f, 0x7f, 0x44, 0x24, 0xf0, 0x66, 0xba, 0x04, 0x06, 0x31, 0xc0, 0xef];
    const img = m.loadImage(Uint8Array.from(code));
    m.boot(img.entry);
    m.attach(new TestRouter());
    const r = m.run();
    if (r.kind === 'system-event') return (simd = { ok: true, reason: 'SSE at CPL0 runs' });
    if (r.kind === 'fault' && r.fault.exitReason === Exit.INTERNAL_ERROR) {
      return (simd = { ok: false, reason: `SSE at CPL0 ends in KVM_EXIT_INTERNAL_ERROR here${pvmDetected() ? ' (kvm_pvm: CPL0 code is emulated)' : ''}: needs hardware KVM (VMX/SVM)` });
    }
    return (simd = { ok: false, reason: `SSE probe ended with ${r.kind}${r.kind === 'fault' ? `: ${r.fault.message}` : ''}` });
  } finally {
    m.dispose();
  }
}
