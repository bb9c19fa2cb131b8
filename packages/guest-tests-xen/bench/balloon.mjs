// Ballooning on the arm64 machine (pnpm bench balloon): the balloon guest (guests/src/balloon.c)
// with svc-xen's memory-reservation on, booted in this process once per round. It prints, per
// vCPU, how long after the virtual timer fell due its interrupt was taken while task A's
// 1024-page XENMEM_decrease_reservation ran (the call preempted: svc-xen ends a leg as soon as
// the interrupt is pending, or after 256 pages), and how long its 1024-page
// XENMEM_populate_physmap took (legs of 256, no interrupt), both from the guest's virtual
// counter.
// Baselines in the same run:
//   - populate: the same 1024 pages taken out and put back through the machine's own
//     removeGuestPages/addGuestPages from JavaScript, one page a call (no hypercall, no
//     reservation struct, no extent array): the ratio is what the Xen ABI path adds;
//   - interrupt latency: the whole 1024-page populate, i.e. how long the interrupt would wait
//     were the call not preemptible (a build that runs every extent in one leg).
// Needs the built packages (pnpm build) and libunicorn2.
import { Arm64Machine, Layout } from '@plugvisor/machine-arm64';
import { boot, xenBuild } from '../dist/index.js';

const NPAGES = 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const range = (xs, f) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;

function guestRound() {
  const run = boot(xenBuild({ fifo: false }), 'balloon', { features: { 'memory-reservation': true } });
  try {
    const r = run.m.run();
    const out = run.console();
    if (r.kind !== 'system-event' || !out.includes('balloon: ok')) throw new Error(`balloon guest: ${JSON.stringify(r)}\n${out}`);
    const m = /timing: interrupt taken (\d+) ns after it fell due, mid-call; populate of 1024 pages (\d+) ns/.exec(out);
    if (!m) throw new Error(`balloon guest printed no timing:\n${out}`);
    return { latencyNs: Number(m[1]), populateNs: Number(m[2]) };
  } finally {
    run.m.dispose();
  }
}

function machineRound() {
  const m = new Arm64Machine({ vcpus: 1, memSize: 16 << 20, console: () => {} });
  try {
    const base = Layout.RAM_BASE + 0x10_0000n;
    for (let i = 0; i < NPAGES; i++) m.removeGuestPages(base + BigInt(i) * 4096n, 1);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < NPAGES; i++) m.addGuestPages(base + BigInt(i) * 4096n, 1);
    return Number(process.hrtime.bigint() - t0);
  } finally {
    m.dispose();
  }
}

export function runBalloonBench({ rounds = 7 } = {}) {
  guestRound(); // warm-up (JIT, the engine library)
  machineRound();
  const lat = [];
  const pop = [];
  const raw = [];
  for (let i = 0; i < rounds; i++) {
    const g = guestRound();
    lat.push(g.latencyNs);
    pop.push(g.populateNs);
    raw.push(machineRound());
  }
  const us = (ns) => (ns / 1000).toFixed(0);
  const perPage = (ns) => ns / NPAGES / 1000;
  return [
    {
      name: `XENMEM_populate_physmap of ${NPAGES} pages from the balloon guest (legs of 256), µs per page`,
      value: perPage(median(pop)),
      unit: 'µs/page',
      baselineName: 'the same pages put back with Arm64Machine.addGuestPages from JavaScript, one page a call',
      baseline: perPage(median(raw)),
      ratio: median(pop) / median(raw),
      spread: `${range(pop, (x) => perPage(x).toFixed(1))} µs/page`,
    },
    {
      name: `timer interrupt taken during a ${NPAGES}-page XENMEM_decrease_reservation, after it fell due (median)`,
      value: median(lat) / 1000,
      unit: 'µs',
      baselineName: `the whole ${NPAGES}-page populate (the wait were the call not preemptible)`,
      baseline: median(pop) / 1000,
      ratio: median(lat) / median(pop),
      goal: '< 1/2 of the whole call',
      spread: `${range(lat, us)} µs`,
      pass: median(lat) < median(pop) / 2,
    },
  ];
}
