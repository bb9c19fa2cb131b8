import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, type CallHandler, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler, withSignature } from '@plugvisor/core/testing';
import { createTrngService, TRNG } from './index.js';

/**
 * svc-trng against core's conformance kit: every call keeps to its signature, TRNG_FEATURES
 * says "supported" exactly for exposed calls, and random results come from the machine's
 * entropy (the probe machine's is all ones, so the transcript holds the mask of random bits).
 * The broken variants wrap the real plugin; none edits the real code.
 */

describe('svc-trng: conformance kit', () => {
  it('conforms', () => {
    expect(checkServiceConformance(createTrngService())).toEqual([]);
  });

  it('declares a signature for every call', () => {
    for (const c of createTrngService().surface.calls) expect(c.signature, c.name).toBeDefined();
  });

  it('records the exact mask of random bits (entropy through guestEntropy), N read as u32', () => {
    const trng = createTrngService();
    const t = serviceBehaviour(Hypervisor.compose([trng], { name: 'trng' }), trng).default!;
    expect(t.TRNG_RND32!['x1=0x30']).toBe('x0=0x0 x1=random:0x0 x2=random:0xffff x3=random:0xffffffff');
    expect(t.TRNG_RND32!['x1=0x61']).toBe('x0=0xfffffffffffffffe x1=random:0x0 x2=random:0x0 x3=random:0x0');
    expect(t.TRNG_RND64!['x1=0x60']).toBe('x0=0x0 x1=random:0x0 x2=random:0xffffffff x3=random:0xffffffffffffffff');
    expect(t.TRNG_RND64!['x1=0xa5a5a5a5000000c0']).toBe(t.TRNG_RND64!['x1=0xc0']);
    expect(t.TRNG_FEATURES!['x1=0x184000050']).toBe('x0=0xffffffffffffffff x1=0x0 x2=0x0 x3=0x0'); // whole register compared
  });

  it('catches TRNG_FEATURES claiming a call the VM does not expose', () => {
    // A release that put RND64 behind its own opt-in feature but left TRNG_FEATURES's table alone.
    const real = createTrngService();
    const broken: ServicePlugin<undefined> = Object.freeze({
      ...real,
      surface: {
        ...real.surface,
        features: [...real.surface.features, { name: 'trng-rnd64', default: 'opt-in' as const, description: 'TRNG_RND64' }],
        calls: real.surface.calls.map((c) => (c.id === TRNG.RND64 ? { ...c, feature: 'trng-rnd64' } : c)),
      },
    });
    expect(checkServiceConformance(broken)).toContain('TRNG_FEATURES answers 0 ("supported") for TRNG_RND64, which the VM does not expose');
  });

  it('catches TRNG_FEATURES declared u32: KVM compares the whole register', () => {
    const broken = withSignature(createTrngService(), 'TRNG_FEATURES', (s) => ({ ...s, args: s.args!.map((a) => ({ ...a, width: 'u32' as const, values: [TRNG.VERSION] })) }));
    expect(checkServiceConformance(broken)).toContain('call TRNG_FEATURES reads the upper half of x1 (trng_func_id), declared u32 (value 0x84000050)');
  });

  it('catches a signature without N (x1)', () => {
    const broken = withSignature(createTrngService(), 'TRNG_RND64', (s) => ({ ...s, args: [] }));
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call TRNG_RND64 reads a register its signature does not name: x0 differs/));
  });

  it('catches random bits taken from the host CSPRNG behind the machine’s back', () => {
    const broken = withHandler(createTrngService(), 'TRNG_RND32', (h) => (v, b) => {
      h(v, b);
      if (v.regs.lo(0) !== 0) return;
      const words = new Uint32Array(1);
      randomFillSync(words);
      v.regs.setU32(3, words[0]! & (v.regs.lo(3) | 0)); // same mask, but not the machine's entropy
    });
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call TRNG_RND32 reads a register its signature does not name: x3 differs/));
  });
});
