import { describe, expect, it } from 'vitest';
import { bootTestGuest } from './testing/guests.js';

describe('pausing at a guest time (pauseAtGuestTime)', () => {
  it('an idle guest waiting in WFI on a timer 1 s away pauses at the time aimed at, then wakes on time', () => {
    const { m, router, console } = bootTestGuest('timer-sleep');
    m.pauseAtGuestTime(0.2);
    const first = m.run();
    expect(first, console()).toMatchObject({ kind: 'paused' });
    // The vCPU sleeps in WFI: the pause ends the sleep, not the timer 1 s later.
    expect(m.guestTime()).toBeGreaterThanOrEqual(0.2);
    expect(m.guestTime()).toBeLessThan(0.3);
    expect(router.reports).toEqual([]);

    const second = m.run();
    expect(second, console()).toEqual({ kind: 'system-event', event: { kind: 'off', vcpu: 0, data: [] } });
    const [armedAt, wokeAt, taken] = router.reports;
    const hz = 62_500_000n; // CNTFRQ_EL0 on Unicorn's QEMU
    expect(taken).toBe(1n);
    expect(wokeAt! - armedAt!).toBeGreaterThanOrEqual(hz);
    expect(wokeAt! - armedAt!).toBeLessThan(hz + hz / 5n);
    m.dispose();
  });
});
