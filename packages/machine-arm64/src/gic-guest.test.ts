import { describe, expect, it } from 'vitest';
import { bootTestGuest } from './testing/guests.js';

describe('GICv2 on a real guest, 2 vCPUs', () => {
  it('Linux-style init, PMR and enable gating, an IPI each way with the source in IAR', () => {
    const { m, router, console } = bootTestGuest('gic', { vcpus: 2 });
    const r = m.run();
    expect(r, console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    // TYPER, ITARGETSR0 on vCPU 0, SGI 7 masked/taken, PPI 27 disabled/taken, ITARGETSR0 on vCPU 1, SGI 3 source, SGI 5 source, spurious
    expect(router.reports).toEqual([0x28n, 0x01010101n, 0n, 1n, 0n, 1n, 0x02020202n, 0n, 1n, 0n]);
    m.dispose();
  });
});
