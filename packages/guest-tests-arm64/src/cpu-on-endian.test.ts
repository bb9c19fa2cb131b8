import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Hypervisor } from '@plugvisor/core';
import { Arm64Machine, unicornAvailable } from '@plugvisor/machine-arm64';
import { createPsciService } from '@plugvisor/svc-psci';
import { createSmcccArchService } from '@plugvisor/svc-smccc-arch';

// PSCI CPU_ON through svc-psci carries the caller's data endianness to the target, as KVM's
// kvm_psci_vcpu_on does (Linux arch/arm64/kvm/psci.c: reset_state.be = kvm_vcpu_is_be(source_vcpu);
// kvm_reset_vcpu then sets SCTLR_EL1.EE). The guest is machine-arm64's cpu-on-endian.c: vCPU 0
// sets SCTLR_EL1.EE around one CPU_ON (vCPU 1) and not around another (vCPU 2); each target
// reports SCTLR_EL1.EE at its first instruction and the first byte of a word it stored with it.
const guest = fileURLToPath(new URL('../../machine-arm64/guests/bin/cpu-on-endian.elf', import.meta.url));

describe.skipIf(!unicornAvailable())('PSCI CPU_ON and the caller\'s endianness (real guest, svc-psci)', () => {
  it('the big-endian caller\'s target starts big-endian, the little-endian caller\'s little-endian', () => {
    const hv = Hypervisor.compose([createSmcccArchService(), createPsciService()], { name: 'psci' });
    const vm = hv.createVm();
    let out = '';
    const m = new Arm64Machine({ vcpus: 3, memSize: 16 << 20, console: (b) => (out += Buffer.from(b).toString('latin1')) });
    try {
      m.boot(m.loadImage(readFileSync(guest)).entry);
      vm.attachMachine(m);
      m.attach(vm);
      expect(m.run(), out).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
      const o = Object.fromEntries([...out.matchAll(/^obs ([^=]+)=(.*)$/gm)].map((x) => [x[1]!, x[2]!]));
      expect(o['engine-be-byte0']).toBe('0x11');
      expect([o['be-caller-rc'], o['le-caller-rc']]).toEqual(['0', '0']);
      expect([o['cpu1-sctlr-ee'], o['cpu1-byte0']]).toEqual(['1', '0x11']);
      expect([o['cpu2-sctlr-ee'], o['cpu2-byte0']]).toEqual(['0', '0x44']);
      expect(o['cpu1-sctlr-rest']).toBe(o['cpu2-sctlr-rest']);
      expect(o.done).toBe('1');
    } finally {
      m.dispose();
    }
  });
});
