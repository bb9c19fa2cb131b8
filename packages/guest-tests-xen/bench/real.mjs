// Event delivery on the real arm64 machine (Unicorn): the VMM raises a FIFO event channel
// (svc-xen's raiseEvent → svc-evtchn-fifo's raise path → PPI 31) and the C guest's Linux-style
// consumer (guests/src/xenlib.c) runs the handler, which reports with a trap where the clock
// stops. Baseline, same run, same guest binary and loop: the test raises PPI 31 on the machine
// directly and the guest's IRQ vector reports it — the machine's own interrupt round trip, so
// the ratio is what the event-channel layer adds (hooks, FIFO queue words, the guest's
// upcall/consume loop). Each event starts with the guest idle (parked in TEST_BLOCK) and is
// one `machine.run()`: IRQ taken, IAR, upcall, consume, handler (clock stops at its report),
// EOIR, park again (the machine returns 'hang': every vCPU idle). events/s counts that whole
// cycle; the latency is raise → handler.
// Needs the built packages (pnpm build) and libunicorn2.
import { raiseEvent, vmmBindInterdomain } from '@plugvisor/svc-xen';
import { boot, xenBuild } from '../dist/index.js';

const TAG = { BIND_VMM: 2, READY: 3, HANDLED: 4 };

function session(mode) {
  const run = boot(xenBuild({ fifo: true }), 'evbench', { features: { 'evtchn-fifo': true }, params: [mode] });
  let port = 0;
  let t1 = 0n;
  let handled = 0;
  run.t.onSync = (tag, a) => {
    if (tag === TAG.BIND_VMM) vmmBindInterdomain(run.vm, (port = Number(a)));
    else if (tag === TAG.READY) run.m.requestPause('ready');
    else if (tag === TAG.HANDLED) {
      t1 = process.hrtime.bigint();
      handled++;
    }
    return 0;
  };
  let r = run.m.run();
  if (r.kind === 'paused') r = run.m.run(); // from READY to parked, the registration upcall taken
  if (r.kind !== 'hang') throw new Error(`evbench guest did not get ready: ${JSON.stringify(r)} ${run.console()}`);
  const raise = mode === 0 ? () => raiseEvent(run.vm, port) : () => run.m.setInterrupt(0, 31, true);
  return {
    /** n events; returns [total ns, per-event raise→handler ns]. */
    events(n) {
      const lat = new Float64Array(n);
      const before = handled;
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        raise();
        // The guest handles the event, EOIs, and parks in TEST_BLOCK: with nothing pending
        // the machine returns 'hang' (every vCPU idle), which here means "done, idle again".
        const res = run.m.run();
        if (res.kind !== 'hang') throw new Error(`evbench stopped: ${JSON.stringify(res)}`);
        lat[i] = Number(t1 - t0);
      }
      const total = Number(process.hrtime.bigint() - start);
      if (handled - before !== n) throw new Error(`lost events: raised ${n}, handled ${handled - before}`);
      return [total, lat];
    },
    dispose: () => run.m.dispose(),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export function runRealMachineEvtchnRows({ rounds = 7, events = 2000 } = {}) {
  const s = { fifo: session(0), irq: session(1) };
  try {
    for (const x of Object.values(s)) x.events(200); // warm-up (JIT, translation caches)
    const perEvent = { fifo: [], irq: [] };
    const lat = { fifo: [], irq: [] };
    for (let round = 0; round < rounds; round++) {
      for (const name of round % 2 ? ['fifo', 'irq'] : ['irq', 'fifo']) {
        const [total, l] = s[name].events(events);
        perEvent[name].push(total / events);
        lat[name].push(...l);
      }
    }
    const fifoNs = median(perEvent.fifo);
    const irqNs = median(perEvent.irq);
    const fifoLat = median(lat.fifo);
    const irqLat = median(lat.irq);
    const perSec = (ns) => 1e9 / ns;
    return [
      {
        name: 'FIFO event channels on the arm64 machine: VMM raiseEvent → C guest handler (Linux consumer), events/s',
        value: perSec(fifoNs),
        unit: 'events/s',
        baselineName: 'same guest loop woken by PPI 31 raised on the machine directly (no event channel)',
        baseline: perSec(irqNs),
        ratio: fifoNs / irqNs,
        goal: '>= 20,000 events/s',
        spread: `${perSec(Math.max(...perEvent.fifo)).toFixed(0)}–${perSec(Math.min(...perEvent.fifo)).toFixed(0)} events/s`,
        pass: perSec(fifoNs) >= 20_000,
      },
      {
        name: 'FIFO event channels on the arm64 machine: raise → guest handler latency (median)',
        value: fifoLat / 1000,
        unit: 'µs',
        baselineName: 'PPI 31 raised directly',
        baseline: irqLat / 1000,
        ratio: fifoLat / irqLat,
        goal: '<= 50 µs',
        spread: `p10 ${(quantile(lat.fifo, 0.1) / 1000).toFixed(1)} – p90 ${(quantile(lat.fifo, 0.9) / 1000).toFixed(1)} µs`,
        pass: fifoLat <= 50_000,
      },
    ];
  } finally {
    s.fifo.dispose();
    s.irq.dispose();
  }
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
