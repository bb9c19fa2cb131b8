// Event-channel delivery: VMM raise → Xen's FIFO raise path (svc-evtchn-fifo, through svc-xen's
// hooks) → upcall → the TypeScript mirror of Linux's events_fifo.c consuming from guest RAM on
// a MemoryMachine, one event at a time (the guest takes each interrupt as it comes). Beside it,
// in the same run: the same raise/consume loop written as plain array operations (a pending
// bitmap and a ring buffer), i.e. what delivery costs with no ABI, no guest memory and no hooks.
// Then the same delivery on the real arm64 machine with a C guest (rows from
// packages/guest-tests-xen/bench/real.mjs; baseline there: the same guest woken by PPI 31 raised
// on the machine directly).
import { existsSync } from 'node:fs';
import { Hypervisor } from '@plugvisor/core';
import { MemoryMachine } from '@plugvisor/core/testing';
import { createXenService, raiseEvent, vmmBindInterdomain } from '@plugvisor/svc-xen';
import { XenGuest } from '@plugvisor/svc-xen/testing';
import { createEvtchnFifoService } from '@plugvisor/svc-evtchn-fifo';
import { LinuxFifoGuest } from '@plugvisor/svc-evtchn-fifo/testing';

const RAM = 0x4000_0000n;
const gfn = (page) => (RAM >> 12n) + BigInt(page);
const PORTS = 64;

function fifoLoop() {
  const hv = Hypervisor.compose([createXenService(), createEvtchnFifoService()], { name: 'bench' });
  const vm = hv.createVm({ features: { 'evtchn-fifo': true } });
  const m = new MemoryMachine(1, RAM, 1 << 20);
  vm.attachMachine(m);
  vm.start();
  const g = new XenGuest(vm, m);
  let handled = 0;
  const linux = new LinuxFifoGuest(g, m, () => void handled++);
  g.mapSharedInfo(gfn(1));
  g.registerVcpuInfo(0, gfn(2), 0);
  linux.setVcpuInfo(0, gfn(2), 0);
  linux.upcall(0);
  linux.initControlBlock(0, gfn(4));
  linux.expandArray(gfn(16));
  const ports = [];
  for (let k = 0; k < PORTS; k++) {
    const [, p] = g.allocUnbound(0);
    vmmBindInterdomain(vm, p);
    linux.setPriority(p, k % 4);
    linux.unmask(p);
    ports.push(p);
  }
  return (n) => {
    const before = handled;
    for (let i = 0; i < n; i++) {
      raiseEvent(vm, ports[i & (PORTS - 1)]);
      linux.upcall(0);
    }
    if (handled - before !== n) throw new Error(`lost events: ${n - (handled - before)}`);
    return handled;
  };
}

function arrayLoop() {
  // Same contract (a raise of a non-pending port queues it once; the consumer takes it and
  // clears pending), as plain arrays: no guest memory, no priorities, no hooks.
  const pending = new Uint8Array(PORTS + 1);
  const ring = new Uint32Array(1024);
  let head = 0, tail = 0, handled = 0, irq = false;
  return (n) => {
    const before = handled;
    for (let i = 0; i < n; i++) {
      const port = (i & (PORTS - 1)) + 1;
      if (!pending[port]) {
        pending[port] = 1;
        ring[tail++ & 1023] = port;
        irq = true;
      }
      if (irq) {
        irq = false;
        while (head !== tail) {
          const p = ring[head++ & 1023];
          pending[p] = 0;
          handled++;
        }
      }
    }
    if (handled - before !== n) throw new Error('lost events');
    return handled;
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function runEvtchnBench({ rounds = 7, events = 200_000 } = {}) {
  const loops = { fifo: fifoLoop(), array: arrayLoop() };
  for (const f of Object.values(loops)) f(events);
  const ns = { fifo: [], array: [] };
  for (let round = 0; round < rounds; round++) {
    for (const [name, f] of round % 2 ? Object.entries(loops) : Object.entries(loops).reverse()) {
      const t0 = process.hrtime.bigint();
      f(events);
      ns[name].push(Number(process.hrtime.bigint() - t0) / events);
    }
  }
  const fifoNs = median(ns.fifo);
  const arrayNs = median(ns.array);
  const perSec = (x) => 1e9 / x;
  return [...mirrorRows(fifoNs, arrayNs, ns, perSec), ...(await realMachineRows())];
}

/** The real-machine rows, or one row saying why they are missing (no Unicorn, not built). */
async function realMachineRows() {
  const url = new URL('../../guest-tests-xen/bench/real.mjs', import.meta.url);
  if (!existsSync(url)) return [];
  try {
    const { runRealMachineEvtchnRows } = await import(url.href);
    return runRealMachineEvtchnRows();
  } catch (e) {
    return [{ name: 'FIFO event channels on the arm64 machine', value: NaN, unit: '', note: `skipped: ${e.message}` }];
  }
}

function mirrorRows(fifoNs, arrayNs, ns, perSec) {
  return [
    {
      name: 'FIFO event channels: VMM raise → Linux-mirror consumer (MemoryMachine), events/s',
      value: perSec(fifoNs),
      unit: 'events/s',
      baselineName: 'same raise/consume loop as plain array operations',
      baseline: perSec(arrayNs),
      ratio: fifoNs / arrayNs,
      goal: '>= 1,000,000 events/s',
      spread: `${perSec(Math.max(...ns.fifo)).toFixed(0)}–${perSec(Math.min(...ns.fifo)).toFixed(0)} events/s`,
      pass: perSec(fifoNs) >= 1_000_000,
    },
    {
      name: 'FIFO event channels: raise → handler latency (one event, synchronous)',
      value: fifoNs,
      unit: 'ns/event',
      baselineName: 'plain array operations',
      baseline: arrayNs,
      ratio: fifoNs / arrayNs,
      goal: '<= 1000 ns',
      spread: `${Math.min(...ns.fifo).toFixed(0)}–${Math.max(...ns.fifo).toFixed(0)} ns`,
      pass: fifoNs <= 1000,
    },
  ];
}
