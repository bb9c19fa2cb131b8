import { describe, expect, it } from 'vitest';
import { encodeXsave, initState, kvmSetXcrsChecks, kvmSetXsaveChecks, guestXfeatures, type KvmCheckName, type KvmXcrs } from '@plugvisor/xsave';
import { X86Machine } from './machine.js';
import { kvmUnavailable } from './host.js';
import { EINVAL, errnoName, KvmError } from './ffi/kvm.js';
import { encodeXcrs } from './cpu/structs.js';
import { pvmDetected } from './testing/capabilities.js';

const noKvm = kvmUnavailable();
const d = noKvm ? describe.skip : describe;
if (noKvm) describe('KVM EINVAL cases', () => it.skip(`needs /dev/kvm: ${noKvm}`, () => {}));

/**
 * Linux arch/x86/kvm/x86.c (kvm_vcpu_ioctl_x86_set_xsave, __kvm_set_xcr): KVM_SET_XSAVE / KVM_SET_XCRS refusals reproduced against the real
 * ioctls and compared, by name, with @plugvisor/xsave's predictions (kvmSetXsaveChecks /
 * kvmSetXcrsChecks). A case predicted clean must succeed; a case predicted to fail must fail
 * with EINVAL, and the prediction names the check.
 */
d('KVM_SET_XSAVE / KVM_SET_XCRS EINVAL cases against /dev/kvm', () => {
  const m = noKvm ? undefined! : new X86Machine({ memSize: 4 << 20, console: () => {} });
  const host = noKvm ? undefined! : m.host.xsave;
  const vcpu = () => m.kvmVcpu(0).kvm;
  // x87 and SSE present (XSTATE_BV = 3), everything else init: KVM validates MXCSR then.
  const base = () => {
    const b = encodeXsave(initState(host), host, new Uint8Array(Math.max(4096, host.uabiSize)));
    new DataView(b.buffer).setBigUint64(512, 3n, true);
    return b;
  };
  const withBv = (bv: bigint) => {
    const b = base();
    new DataView(b.buffer).setBigUint64(512, bv, true);
    return b;
  };
  const poke = (f: (dv: DataView) => void) => {
    const b = base();
    f(new DataView(b.buffer));
    return b;
  };
  const cases: [string, () => Uint8Array, KvmCheckName | undefined][] = [
    ['a valid x87+SSE image', base, undefined],
    ['XSTATE_BV bit 62 (LWP: no KVM supports it)', () => withBv(3n | (1n << 62n)), 'XSTATE_BV_UNSUPPORTED'],
    ['XSTATE_BV bit 11 (cet_user, a supervisor component)', () => withBv(3n | (1n << 11n)), 'XSTATE_BV_SUPERVISOR'],
    ['XSTATE_BV bit 18 (AMX tile data without arch_prctl permission)', () => withBv(3n | (1n << 18n)), undefined /* predicted below */],
    ['XSTATE_BV bit 9 (pkru)', () => withBv(3n | (1n << 9n)), undefined],
    ['XCOMP_BV != 0 (compacted format)', () => poke((dv) => dv.setBigUint64(520, (1n << 63n) | 3n, true)), 'XCOMP_BV_NONZERO'],
    ['reserved header byte 528 != 0', () => poke((dv) => dv.setUint8(528, 1)), 'HEADER_RESERVED_NONZERO'],
    ['MXCSR = 0xFFFFFFFF with x87/SSE present', () => poke((dv) => dv.setUint32(24, 0xffff_ffff, true)), 'MXCSR_RESERVED_BITS'],
    ['MXCSR = 0xFFFFFFFF with every component in its init state (not checked)', () => poke((dv) => (dv.setUint32(24, 0xffff_ffff, true), dv.setBigUint64(512, 0n, true))), undefined],
  ];

  for (const [what, make, expected] of cases) {
    it(`KVM_SET_XSAVE: ${what}`, () => {
      const buf = make();
      const predicted = kvmSetXsaveChecks(buf, host);
      const errno = vcpu().tryIoctl('SET_XSAVE', buf);
      console.log(`KVM_SET_XSAVE ${what}: KVM ${errno ? errnoName(errno) : 'ok'}; predicted ${predicted.map((p) => p.check).join(', ') || 'ok'}`);
      if (expected) expect(predicted[0]?.check).toBe(expected);
      expect(errno).toBe(predicted.length ? EINVAL : 0);
    });
  }

  const policyXcr0 = noKvm ? 0n : BigInt(m.xsaveAbi.xcr0);
  const xcrCases: [string, KvmXcrs, KvmCheckName | undefined][] = [
    ['XCR0 = x87|SSE', { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 3n }] }, undefined],
    ['XCR0 = the VM’s whole set', { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: policyXcr0 }] }, undefined],
    ['XCR0 = 0x5 (avx without sse)', { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 5n }] }, 'XCR0_YMM_WITHOUT_SSE'],
    ['XCR0 = 0x2 (x87 clear)', { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 2n }] }, 'XCR0_X87_CLEAR'],
    ['XCR0 = 0x27 (opmask without the rest of AVX-512)', { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 0x27n }] }, undefined],
    ['flags = 1', { nrXcrs: 1, flags: 1, xcrs: [{ xcr: 0, value: 3n }] }, 'XCRS_FLAGS_NONZERO'],
    ['nr_xcrs = 17', { nrXcrs: 17, flags: 0, xcrs: [{ xcr: 0, value: 3n }] }, 'XCRS_TOO_MANY'],
  ];
  for (const [what, xcrs, expected] of xcrCases) {
    it(`KVM_SET_XCRS: ${what}`, () => {
      const predicted = kvmSetXcrsChecks(xcrs, guestXfeatures(m.guestPolicy, host).supportedXcr0);
      const errno = vcpu().tryIoctl('SET_XCRS', encodeXcrs(xcrs));
      console.log(`KVM_SET_XCRS ${what}: KVM ${errno ? errnoName(errno) : 'ok'}; predicted ${predicted.map((p) => p.check).join(', ') || 'ok'}`);
      if (expected) expect(predicted[0]?.check).toBe(expected);
      expect(errno).toBe(predicted.length ? EINVAL : 0);
    });
  }

  it('a refused ioctl surfaces as a KvmError naming the ioctl and errno', () => {
    const buf = withBv(3n | (1n << 62n));
    let err: unknown;
    try {
      vcpu().setXsave(buf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect((err as KvmError).ioctl).toBe('KVM_SET_XSAVE');
    expect((err as KvmError).errnoName).toBe('EINVAL');
    expect((err as KvmError).message).toBe('KVM_SET_XSAVE failed: EINVAL (22)');
  });

  it('KVM_SET_XCRS: an XCR0 bit outside the guest CPUID (XCR0_NOT_GUEST_SUPPORTED)', (ctx) => {
    // A VM shown only x87|SSE|AVX, asked to enable AVX-512.
    const host2 = m.host.xsave;
    if ((host2.kvmXcr0 & 0xe7n) !== 0xe7n) return ctx.skip('needs a host whose KVM supports AVX-512');
    const small = new X86Machine({ memSize: 4 << 20, console: () => {}, xsave: { xcr0: 7n } });
    try {
      const xcrs: KvmXcrs = { nrXcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 0xe7n }] };
      const predicted = kvmSetXcrsChecks(xcrs, guestXfeatures(small.guestPolicy, host2).supportedXcr0);
      expect(predicted.map((p) => p.check)).toEqual(['XCR0_NOT_GUEST_SUPPORTED']);
      const errno = small.kvmVcpu(0).kvm.tryIoctl('SET_XCRS', encodeXcrs(xcrs));
      if (errno === 0 && pvmDetected()) {
        return ctx.skip('kvm_pvm ignores the guest CPUID 0xD for XCR0 (it accepts any XCR0 the host allows): needs upstream hardware KVM');
      }
      expect(errnoName(errno)).toBe('EINVAL');
    } finally {
      small.dispose();
    }
  });
});
