import { describe, expect, it } from 'vitest';
import { raiseEvent, vmmBindInterdomain } from '@plugvisor/svc-xen';
import { boot, prng, runGuest, xenBuild } from './harness.js';

// guests/src/fifo.c's report tags
const TAG = { FAIL: 0xdead, ABI: 1, BIND_VMM: 2, BATCH: 3, LOG: 4, RAISE: 5, COUNT: 6, SELF: 7, IPI: 8, SET_BUSY: 9, CLEAR_BUSY: 10, BUSY: 11, MASK: 12, CLOSE: 13, EXPAND: 14, RESET: 15, DONE: 16 };
const BUSY_BIT = 1 << 28;
const BURST = 100_000;

describe('FIFO event channels: Linux events_fifo.c consumer in a real aarch64 guest', () => {
  it('VMM burst of 100k in priority order, loopback, IPIs, BUSY, masked ports, close while linked, expand to the limit, reset to 2-level', () => {
    const hv = xenBuild({ fifo: true });
    const run = boot(hv, 'fifo', { vcpus: 2, features: { 'evtchn-fifo': true } });
    const { vm, m, t } = run;
    const mem = m.memory;

    const ports: number[] = [];
    const prio = new Map<number, number>();
    const expectedCount = new Map<number, number>();
    let logAddr = 0n;
    let raised = 0;
    let lastBatch: number[] = [];
    let pending: number[] | undefined; // a batch to raise at the next pause
    const orderErrors: string[] = [];
    const rnd = prng(5);

    const raise = (batch: number[]) => {
      for (const p of batch) raiseEvent(vm, p);
    };
    t.onSync = (tag, a, b) => {
      switch (tag) {
        case TAG.BIND_VMM: {
          const port = Number(a);
          vmmBindInterdomain(vm, port);
          ports.push(port);
          prio.set(port, Number(b));
          expectedCount.set(port, 0);
          return 0;
        }
        case TAG.BATCH: {
          // The previous batch as the guest handled it: priority order, FIFO within a priority.
          const k = Number(a);
          const got = Array.from({ length: k }, (_, i) => mem.readU32(logAddr + BigInt(4 * i)));
          const want = lastBatch.map((p, i) => [p, i] as const).sort((x, y) => prio.get(x[0])! - prio.get(y[0])! || x[1] - y[1]).map(([p]) => p);
          if (got.join() !== want.join() && orderErrors.length < 3) orderErrors.push(`batch ${b}: got ${got.join()} want ${want.join()}`);
          if (raised >= BURST) return 0;
          // Next: a random subset of the ports in random order (each at most once: a port
          // raised twice before it is handled is one event, by design of every event ABI).
          const shuffled = [...ports].sort(() => rnd() - 0.5);
          const n = Math.min(BURST - raised, 1 + Math.floor(rnd() * ports.length));
          lastBatch = shuffled.slice(0, n);
          for (const p of lastBatch) expectedCount.set(p, expectedCount.get(p)! + 1);
          raised += n;
          // Odd batches are raised from inside the guest's call, even ones while the machine
          // is paused between runs (the VMM raising as the guest runs).
          if (Number(b) % 2) raise(lastBatch);
          else {
            pending = lastBatch;
            m.requestPause('raise batch');
          }
          return n;
        }
        case TAG.RAISE:
          raiseEvent(vm, Number(a));
          return 0;
        case TAG.SET_BUSY:
          mem.writeU32(b, mem.readU32(b) | BUSY_BIT);
          return 0;
        case TAG.CLEAR_BUSY:
          mem.writeU32(b, mem.readU32(b) & ~BUSY_BIT);
          return 0;
      }
      return 0;
    };
    const origReport = t.reports.push.bind(t.reports);
    t.reports.push = (...r) => {
      for (const x of r) if (x.tag === TAG.LOG) logAddr = x.a;
      return origReport(...r);
    };

    const r = runGuest(m, () => {
      if (pending) raise(pending);
      pending = undefined;
    });
    const text = run.console();
    expect(t.tagged(TAG.FAIL), text).toEqual([]);
    expect(r).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(text).toContain('xen:events: Using FIFO-based ABI\n');
    expect(t.tagged(TAG.ABI)[0]).toMatchObject({ a: 1n, b: 0n });

    // 1: none lost, none duplicated, every batch in priority order
    expect(raised).toBe(BURST);
    expect(orderErrors).toEqual([]);
    expect(text).toContain(`burst: ${BURST} events on 64 ports\n`);
    const counts = new Map(t.tagged(TAG.COUNT).map((x) => [Number(x.a), Number(x.b)]));
    expect(counts).toEqual(expectedCount);
    expect(new Set(prio.values()).size).toBe(16);

    // 2: loopback: 1000 sends each way, +1 pending at bind, +1 for two coalesced sends
    expect(t.tagged(TAG.SELF)[0]).toMatchObject({ a: 1000n, b: 1002n });
    // 3: 1000 IPI round trips (+1 "up", +1 after the BUSY step), all on vCPU 1's queues
    expect(t.tagged(TAG.IPI)[0]).toMatchObject({ a: 1000n, b: 1001n });
    expect(t.tagged(TAG.IPI + 100)[0]!.a).toBe(1000n);
    expect(t.tagged(TAG.BUSY)[0]).toMatchObject({ a: 1n, b: 1n, vcpu: 0 });
    // 4: masked: not delivered; unmask re-raised it exactly once
    const mask = t.tagged(TAG.MASK)[0]!;
    expect(mask.b).toBe(mask.a + 1n);
    // 5: close while linked: a new port skipped the LINKED one, which is reused after consumption
    const close = t.tagged(TAG.CLOSE)[0]!;
    expect(close.b).toBe(BigInt(ports[1]!));
    expect(close.a).not.toBe(close.b);
    // 6: 128 pages, then -ENOSPC
    expect(t.tagged(TAG.EXPAND)[0]).toMatchObject({ a: 128n, b: BigInt.asUintN(64, -28n) });
    // 7: after reset: set_priority -ENOSYS, expand_array -EOPNOTSUPP; 2-level events; init again 0
    expect(t.tagged(TAG.RESET)[0]).toMatchObject({ a: BigInt.asUintN(64, -38n), b: BigInt.asUintN(64, -95n) });
    expect(t.tagged(TAG.RESET + 200)[0]).toMatchObject({ a: 0n });
    expect(text).toContain('fifo: done\n');
    m.dispose();
  });
});
