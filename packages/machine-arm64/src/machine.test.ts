import { describe, expect, it } from 'vitest';
import { Arm64Machine, type RunResult } from './machine.js';
import { TestRouter } from './testing/test-router.js';
import { guestImage } from './testing/guests.js';

function boot(name: string, opts: { vcpus?: number; mode?: number; sliceUs?: number } = {}) {
  let out = '';
  const m = new Arm64Machine({
    vcpus: opts.vcpus ?? 1,
    memSize: 16 << 20,
    console: (b) => (out += Buffer.from(b).toString('latin1')),
    ...(opts.sliceUs ? { sliceUs: opts.sliceUs } : {}),
  });
  const router = new TestRouter(m, { mode: opts.mode ?? 0 });
  m.attach(router);
  const img = m.loadImage(guestImage(name));
  m.boot(img.entry);
  return { m, router, console: () => out };
}

describe('arm64 machine: boot and console', () => {
  it('runs the hello guest to SYSTEM_OFF', () => {
    const { m, router, console } = boot('hello');
    const r = m.run();
    expect(r).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    expect(router.started).toBe(1);
    expect(console()).toBe('hello from plugvisor arm64\nx0=0 mpidr=80000000 el=1\nsmccc version 10001\n');
    m.dispose();
  });
});
