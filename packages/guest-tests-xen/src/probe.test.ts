import { describe, expect, it } from 'vitest';
import { planRestore, saveSnapshot, SnapshotError, type Hypervisor, type Vm } from '@plugvisor/core';
import { checkArm64Snapshot, machineFromPlan } from '@plugvisor/machine-arm64';
import { raiseEvent, vmmBindInterdomain } from '@plugvisor/svc-xen';
import { attach, boot, consoleSink, runGuest, xenBuild, type GuestRun } from './harness.js';

// guests/src/probe.c's report tags
const TAG = { FAIL: 0xdead, ABI: 1, BIND_VMM: 2, ROUND: 3, FIFO_OPS: 4, DONE: 5 };
const ENOSYS_ALL = (38n << 32n) | (38n << 16n) | 38n;

/** The VMM side of probe.c: bind its VMM port, raise it at every round (pause at `pauseAt`). */
function serve(run: GuestRun, pauseAt = 0): void {
  let vport = 0;
  run.t.onSync = (tag, a) => {
    if (tag === TAG.BIND_VMM) {
      vport = Number(a);
      vmmBindInterdomain(run.vm, vport);
    } else if (tag === TAG.ROUND) {
      raiseEvent(run.vm, vport);
      if (Number(a) === pauseAt) run.m.requestPause('hibernate');
    }
    return 0;
  };
}

function probe(hv: Hypervisor, features: Record<string, boolean>, rounds = 3) {
  const run = boot(hv, 'probe', { features, params: [0, rounds] });
  serve(run);
  const r = runGuest(run.m);
  run.m.dispose();
  expect(run.t.tagged(TAG.FAIL), run.console()).toEqual([]);
  expect(r).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
  return run;
}

const fifoExposed = (vm: Vm) => vm.exposesCall('EVTCHNOP_init_control');

describe("Linux's probe in a real guest: FIFO if init_control works, else 2-level", () => {
  it('a domain with evtchn-fifo on gets FIFO', () => {
    const run = probe(xenBuild({ fifo: true }), { 'evtchn-fifo': true });
    expect(fifoExposed(run.vm)).toBe(true);
    expect(run.console()).toMatch(/^xen:events: Using FIFO-based ABI\n/);
    expect(run.t.tagged(TAG.ABI)[0]).toMatchObject({ a: 1n, b: 0n });
    expect(run.console()).toContain('probe: FIFO ABI, 3 rounds, vmm 3, loopback 4, total 7\n');
  });

  it('a domain without it (same build, feature off by default) falls back to 2-level on -ENOSYS', () => {
    const run = probe(xenBuild({ fifo: true }), {});
    expect(run.console()).toMatch(/^xen:events: Using 2-level ABI \(init_control: -38\)\n/);
    expect(run.t.tagged(TAG.FIFO_OPS).map((x) => x.b)).toEqual([ENOSYS_ALL, ENOSYS_ALL, ENOSYS_ALL]);
    expect(run.console()).toContain('probe: 2-level ABI, 3 rounds, vmm 3, loopback 4, total 7\n');
  });

  it('a build without svc-evtchn-fifo: 2-level, identical transcript', () => {
    const a = probe(xenBuild({ fifo: false }), {});
    const b = probe(xenBuild({ fifo: true }), {});
    expect(a.console()).toBe(b.console());
  });
});

describe('hibernation: a 2-level domain snapshotted mid-run and restored on a build with FIFO', () => {
  for (const source of [
    { name: 'a build without svc-evtchn-fifo', hv: () => xenBuild({ fifo: false, name: 'old' }) },
    { name: 'a build with it, feature off', hv: () => xenBuild({ fifo: true, name: 'old-off' }) },
  ]) {
    it(`from ${source.name}: keeps 2-level, FIFO ops stay -ENOSYS, transcript as if never interrupted`, () => {
      const ROUNDS = 8;
      const ref = probe(source.hv(), {}, ROUNDS);

      const a = boot(source.hv(), 'probe', { params: [0, ROUNDS] });
      serve(a, 4);
      const first = a.m.run();
      expect(first).toEqual({ kind: 'paused', reason: 'hibernate' });
      const snap = saveSnapshot(a.vm, a.m.image());
      const before = a.console();
      a.m.dispose();

      const dest = xenBuild({ fifo: true, name: 'new' });
      const plan = planRestore(snap, dest, { arch: 'arm64', checkMachine: checkArm64Snapshot });
      const out: string[] = [];
      const m = machineFromPlan(plan, { console: consoleSink(out) });
      const b = attach(plan.vm, m, out);
      expect(fifoExposed(plan.vm)).toBe(false);
      serve(b);
      // the restored guest's VMM port is the one bound before the snapshot
      b.t.onSync = ((orig) => (tag, x, y, v) => {
        if (tag === TAG.ROUND) raiseEvent(plan.vm, Number(y));
        return tag === TAG.ROUND ? 0 : orig(tag, x, y, v);
      })(b.t.onSync);
      const rest = runGuest(m);
      m.dispose();
      expect(b.t.tagged(TAG.FAIL), before + b.console()).toEqual([]);
      expect(rest).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
      expect(before + b.console()).toBe(ref.console());
      // rounds 4..8 finished on the new build (paused at round 4's sync): 2-level, FIFO ops -ENOSYS
      expect(b.t.tagged(TAG.FIFO_OPS).map((x) => [x.a, x.b])).toEqual([4n, 5n, 6n, 7n, 8n].map((r) => [r, ENOSYS_ALL]));
      expect(b.t.tagged(TAG.DONE)[0]).toMatchObject({ a: 8n, b: 9n });
    });
  }

  it('the reverse is refused: a FIFO domain on a build without svc-evtchn-fifo, named, nothing built', () => {
    const a = boot(xenBuild({ fifo: true }), 'probe', { features: { 'evtchn-fifo': true }, params: [0, 3] });
    serve(a, 2);
    expect(a.m.run()).toEqual({ kind: 'paused', reason: 'hibernate' });
    expect(a.console()).toContain('Using FIFO-based ABI');
    const snap = saveSnapshot(a.vm, a.m.image());
    a.m.dispose();
    let err: unknown;
    try {
      planRestore(snap, xenBuild({ fifo: false }), { arch: 'arm64', checkMachine: checkArm64Snapshot });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as Error).message).toMatch(/@plugvisor\/svc-evtchn-fifo/);
    expect((err as Error).message).toMatch(/evtchn-fifo/);
  });
});
