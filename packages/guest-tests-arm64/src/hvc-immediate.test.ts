import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Arm64Machine, unicornAvailable } from '@plugvisor/machine-arm64';
import { composeBuild } from './harness.js';

// KVM ignores the HVC immediate (Linux arch/arm64/kvm/handle_exit.c, handle_hvc): an HVC #0x123
// with x0 = SMCCC_VERSION is an SMCCC call, and so is HVC #0xEA1 (Xen's tag) with x0 = 1, an id
// KVM does not implement (NOT_SUPPORTED). The SMCCC build serves no Xen calls, so its VMs get
// machine-arm64's 'kvm' HVC personality (README "Traps"); the guest is machine-arm64's abi-facts,
// which reports whether the HVC trapped and x0 after each.
const guest = fileURLToPath(new URL('../../machine-arm64/guests/bin/abi-facts.elf', import.meta.url));

describe.skipIf(!unicornAvailable())('HVC with an immediate other than 0 and 0xEA1 (real guest, SMCCC build)', () => {
  it('is an SMCCC call, #0xEA1 too: SMCCC_VERSION answers 1.1, no exception; Xen op 7 is id 1, NOT_SUPPORTED', () => {
    const vm = composeBuild().createVm();
    let out = '';
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
    try {
      m.boot(m.loadImage(readFileSync(guest)).entry);
      vm.attachMachine(m);
      m.attach(vm);
      expect(m.hvcImmediates).toBe('kvm');
      expect(m.run(), out).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      expect(out).toMatch(/^obs hvc-0x0-x0=0x10001$/m);
      expect(out).toMatch(/^obs hvc-other-traps=0$/m);
      expect(out).toMatch(/^obs hvc-other-x0=0x10001$/m);
      expect(out).toMatch(/^obs hvc-0xea1-x0=0xffffffffffffffff$/m); // SMCCC NOT_SUPPORTED, not Xen's -ENOSYS
      expect(out).toMatch(/^obs done=1$/m);
    } finally {
      m.dispose();
    }
  });
});
