import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Hypervisor, type ServicePlugin } from '@plugvisor/core';
import { Arm64Machine, unicornAvailable } from '@plugvisor/machine-arm64';
import { createPsciService } from '@plugvisor/svc-psci';

// The core's vcpuReset hook fires when a guest's PSCI CPU_ON takes effect on the target vCPU.
const smp = fileURLToPath(new URL('../../machine-arm64/guests/bin/smp.elf', import.meta.url));

describe.skipIf(!unicornAvailable())('vcpuReset hook', () => {
  it('fires for the vCPU a real guest starts with CPU_ON, once, before it runs', () => {
    const resets: number[] = [];
    const watcher: ServicePlugin = {
      name: '@plugvisor/test-reset-watcher',
      version: '0.0.0',
      surface: { features: [{ name: 'watch', default: 'opt-in', description: 'none' }], calls: [] },
      apply(hv) {
        hv.hooks.vcpuReset.tap('@plugvisor/test-reset-watcher', (_vm, vcpu) => resets.push(vcpu));
      },
    };
    const hv = Hypervisor.compose([createPsciService(), watcher]);
    const vm = hv.createVm();
    const out: string[] = [];
    const m = new Arm64Machine({ vcpus: 2, memSize: 16 << 20, console: (b) => out.push(Buffer.from(b).toString()) });
    try {
      m.boot(m.loadImage(readFileSync(smp)).entry);
      vm.attachMachine(m);
      m.attach(vm);
      const r = m.run();
      expect(r.kind).toBe('system-event');
      expect(out.join('')).toContain('cpu0: done');
      expect(resets).toEqual([1]);
    } finally {
      m.dispose();
    }
  });
});
