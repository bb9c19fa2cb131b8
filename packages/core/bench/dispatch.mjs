// Trap dispatch through the full router vs a hand-written switch doing the same work.
//
// Both sides see the same stream of SMCCC function ids (a mix of an exact call, a range
// call, a stateful call and an unexposed id that gets NOT_SUPPORTED) in the same register
// file, and write the same results. The router side goes through Vm.dispatch: conduit →
// per-VM Map → tapable's compiled hook → the service's handler with its per-VM binding.
import { Conduits, Hypervisor } from '@plugvisor/core';
import { createEchoService, ECHO, MemoryMachine } from '@plugvisor/core/testing';

const IDS = [ECHO.CALL_ECHO, ECHO.CALL_RANGE_FIRST + 7, ECHO.CALL_COUNT, 0x8400_0000 /* not exposed */];

function routerLoop() {
  const hv = Hypervisor.compose([createEchoService()]);
  const vm = hv.createVm({ features: { 'echo-counter': true } });
  const m = new MemoryMachine();
  vm.attachMachine(m);
  vm.start();
  const vcpu = m.vcpus[0];
  const r = vcpu.regs.u32;
  const dispatch = vm.dispatcher(Conduits.smccc); // what a backend's trap path holds
  return (n) => {
    for (let i = 0; i < n; i++) {
      r[0] = IDS[i & 3];
      r[1] = 0;
      r[2] = i;
      r[4] = 5;
      dispatch(vcpu);
    }
    return r[0];
  };
}

function switchLoop() {
  // The same four outcomes, written by hand: what a hypervisor with no plugin layer does.
  const regs = new MemoryMachine().vcpus[0].regs;
  const r = regs.u32;
  const state = { count: 0 };
  return (n) => {
    for (let i = 0; i < n; i++) {
      r[0] = IDS[i & 3];
      r[1] = 0;
      r[2] = i;
      r[4] = 5;
      const id = r[0];
      switch (id) {
        case ECHO.CALL_ECHO: {
          const sum = (r[2] + r[4]) >>> 0;
          const x1 = regs.get(1);
          regs.setU32(0, sum);
          regs.set(1, regs.get(3));
          regs.set(2, x1);
          regs.setU32(3, 0);
          break;
        }
        case ECHO.CALL_COUNT:
          state.count++;
          regs.setU32(0, state.count);
          regs.setU32(1, 0);
          regs.setU32(2, 0);
          regs.setU32(3, 0);
          break;
        default:
          if (id >= ECHO.CALL_RANGE_FIRST && id <= ECHO.CALL_RANGE_LAST) {
            regs.setU32(0, id & 0xff);
            regs.setU32(1, 0);
            regs.setU32(2, 0);
            regs.setU32(3, 0);
          } else {
            r[0] = 0xffffffff;
            r[1] = 0xffffffff;
            r[2] = 0;
            r[3] = 0;
            r[4] = 0;
            r[5] = 0;
            r[6] = 0;
            r[7] = 0;
          }
      }
    }
    return r[0];
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function runDispatchBench({ rounds = 9, calls = 2_000_000 } = {}) {
  const loops = { router: routerLoop(), switch: switchLoop() };
  for (const f of Object.values(loops)) f(calls); // warm up: compile the hooks, let V8 optimise
  const ns = { router: [], switch: [] };
  for (let round = 0; round < rounds; round++) {
    // interleave so machine noise hits both sides alike
    for (const [name, f] of round % 2 ? Object.entries(loops) : Object.entries(loops).reverse()) {
      const t0 = process.hrtime.bigint();
      f(calls);
      ns[name].push(Number(process.hrtime.bigint() - t0) / calls);
    }
  }
  const router = median(ns.router);
  const baseline = median(ns.switch);
  return [
    {
      name: 'SMCCC dispatch, full router (the VM\'s compiled dispatcher)',
      value: router,
      unit: 'ns/call',
      baselineName: 'hand-written switch, same work',
      baseline,
      ratio: router / baseline,
      goal: 'ratio <= 1.5 and <= 50 ns',
      spread: `${Math.min(...ns.router).toFixed(1)}–${Math.max(...ns.router).toFixed(1)} ns`,
      pass: router / baseline <= 1.5 && router <= 50,
    },
  ];
}
