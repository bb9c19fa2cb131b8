// Behaviour transcripts of the default build: what `pnpm lint` and `plugvisor check` pay to see
// behaviour. Each round builds the default build afresh (transcripts are cached per build) and
// generates every service's transcript. Baseline, same run: the same probes dispatched bare
// through the same router on one VM (no fresh VMs, no observation), to show what observation costs.
import { Hypervisor, ProbeMachine, probesFor, serviceBehaviour, idRegister } from '@plugvisor/core';
import { loadBuild } from '../dist/build-file.js';

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function runTranscriptBench() {
  const services = (await loadBuild()).hv.services;
  let probes = 0;
  const full = [];
  const bare = [];
  for (let round = 0; round < 5; round++) {
    let hv = Hypervisor.compose(services, { name: 'default' });
    let t0 = performance.now();
    probes = 0;
    for (const s of hv.services) {
      for (const t of Object.values(serviceBehaviour(hv, s))) for (const c of Object.values(t)) probes += Object.keys(c).length;
    }
    full.push(performance.now() - t0);

    hv = Hypervisor.compose(services, { name: 'default' });
    const m = new ProbeMachine();
    const vm = hv.createVm();
    vm.attachMachine(m);
    vm.start();
    const v = m.vcpus[0];
    t0 = performance.now();
    for (const { decl } of hv.catalog.calls.values()) {
      const conduit = hv.conduits.get(decl.conduit);
      for (const p of probesFor(decl, conduit)) {
        m.reset();
        v.regs.set(idRegister(conduit), BigInt(p.id >>> 0));
        for (const [r, x] of p.regs) v.regs.set(r, x);
        try {
          vm.dispatch(conduit, v);
        } catch {
          // counted all the same
        }
      }
    }
    bare.push(performance.now() - t0);
  }
  const value = median(full);
  const baseline = median(bare);
  return [
    {
      name: `every transcript of the default build (${probes} probe outputs)`,
      value,
      unit: 'ms',
      baseline,
      baselineName: 'the default VM\'s probes dispatched bare',
      ratio: value / baseline,
      goal: '< 5000 ms (it runs in pnpm lint)',
      pass: value < 5000,
      spread: `${Math.min(...full).toFixed(0)}–${Math.max(...full).toFixed(0)} ms`,
    },
  ];
}
