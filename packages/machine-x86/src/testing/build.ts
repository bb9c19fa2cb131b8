import { defineService, Hypervisor } from '@plugvisor/core';
import { X86_CONDUIT_NAME, X86_PORT_CONDUIT } from '../traps.js';

/**
 * A build for tests and benches: one service on the x86-port conduit answering the test guests'
 * calls — 0x100..0x103 → rax = rdi * 3 + 1 (as the TestRouter), 0x102 (the bench loop) →
 * rax = rdi + 1 — so each trap goes machine → the VM's compiled dispatcher → service handler.
 */
export function x86TestBuild(): Hypervisor {
  return Hypervisor.compose([
    defineService({
      name: '@plugvisor/x86-test-calls',
      version: '0.0.0',
      surface: {
        features: [{ name: 'x86-test', default: 'legacy-opt-out', description: 'x86 test guest calls' }],
        calls: [
          { name: 'X86_TEST_TRIPLE', conduit: X86_CONDUIT_NAME, id: 0x100, last: 0x101, feature: 'x86-test' },
          { name: 'X86_BENCH_PLUS_ONE', conduit: X86_CONDUIT_NAME, id: 0x102, feature: 'x86-test' },
          { name: 'X86_TEST_SIMD', conduit: X86_CONDUIT_NAME, id: 0x103, feature: 'x86-test' },
        ],
      },
      handlers: {
        X86_TEST_TRIPLE: (v) => {
          v.regs.u64[0] = BigInt.asUintN(64, v.regs.u64[5]! * 3n + 1n);
        },
        X86_BENCH_PLUS_ONE: (v) => {
          const r = v.regs.u32;
          r[0] = (r[10]! + 1) >>> 0; // rdi's low word + 1 (the loop's rdi < 2^32)
          r[1] = 0;
        },
        X86_TEST_SIMD: (v) => {
          v.regs.u64[0] = BigInt.asUintN(64, v.regs.u64[5]! * 3n + 1n);
        },
      },
    }),
  ], { conduits: [X86_PORT_CONDUIT] });
}
