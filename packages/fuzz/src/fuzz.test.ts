/**
 * The hypercall fuzz guest on the arm64 machine: fixed seeds for well over 100k calls in total
 * across 1, 2 and 4 vCPUs on the default build and the opt-in build (every opt-in feature on)
 * must find no violation, and a snapshot/restore replay must end as the uninterrupted run; the
 * negative tests compose deliberately broken services and require the guest to catch each.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Hypervisor, type VmOverrides } from '@plugvisor/core';
import { loadBuild } from '@plugvisor/cli';
import { allOptIn, compareWithRestores, FUZZ_IMAGE, GUESTS_DIR, runFuzz } from './harness.js';
import { createBrokenService, STRAY_GPA, type Breakage } from './testing/broken-service.js';

let hv: Hypervisor;
let optIn: VmOverrides;
beforeAll(async () => {
  hv = (await loadBuild()).hv;
  optIn = allOptIn(hv);
});

describe('fuzz guest: no violations on the real services', () => {
  // 6 runs: 20k calls per vCPU on 1 vCPU, 12k on 2, 6k on 4 → 2 × (20k + 24k + 24k) = 136k calls.
  const plan: Array<[number, number]> = [
    [1, 20_000],
    [2, 12_000],
    [4, 6_000],
  ];
  let total = 0;
  for (const build of ['default', 'opt-in'] as const) {
    for (const [vcpus, calls] of plan) {
      it(`${build} build, ${vcpus} vCPU${vcpus > 1 ? 's' : ''}, seed ${vcpus * 7 + (build === 'opt-in' ? 1 : 0)}: ${calls} calls per vCPU, 0 violations`, () => {
        const r = runFuzz({ hv, overrides: build === 'opt-in' ? optIn : {}, seed: vcpus * 7 + (build === 'opt-in' ? 1 : 0), vcpus, callsPerVcpu: calls });
        expect(r.violations).toEqual([]);
        expect(r.calls).toBe(vcpus * calls);
        expect(r.outcome).toHaveLength(vcpus + 1);
        total += r.calls;
      });
    }
  }
  it('covered at least 100k calls in total', () => {
    expect(total).toBeGreaterThanOrEqual(100_000);
  });

  it("the opt-in build turns on every opt-in feature (FIFO event channels, memory reservation, SYSTEM_SUSPEND, Xen's own answers)", () => {
    expect(Object.keys(optIn.features ?? {}).sort()).toEqual(['evtchn-fifo', 'memory-reservation', 'psci-system-suspend', 'xen-fidelity']);
  });

  for (const vcpus of [1, 4]) {
    it(`snapshot/restore at seeded trap counts ends as the uninterrupted run (${vcpus} vCPU${vcpus > 1 ? 's' : ''}, opt-in build)`, () => {
      const cmp = compareWithRestores({ hv, overrides: optIn, seed: 99 + vcpus, vcpus, callsPerVcpu: 4_000, snapshots: 5 });
      expect(cmp.restored.restoredAt).toHaveLength(5);
      expect([...cmp.whole.violations, ...cmp.restored.violations, ...cmp.violations]).toEqual([]);
      // (compareWithRestores leaves out xen-ok on several vCPUs: the interleaving of their
      // event-channel calls is scheduling; the per-vCPU digests and counts must match.)
      if (vcpus === 1) expect(cmp.restored.outcome).toEqual(cmp.whole.outcome);
      const digests = (r: { outcome: string[] }) => r.outcome.map((l) => l.replace(/ xen-ok=\d+/, ''));
      expect(digests(cmp.restored)).toEqual(digests(cmp.whole));
    });
  }
});

describe('fuzz guest: the checks fail on broken services', () => {
  const broken = (how: Breakage, withoutXen = false) =>
    Hypervisor.compose(
      [...hv.services.filter((s) => !withoutXen || !/svc-(xen|evtchn-fifo)$/.test(s.name)), createBrokenService(how)],
      { name: `broken-${how}` },
    );
  const kinds = (r: { violations: string[] }) => [...new Set(r.violations.map((v) => /kind=([\w-]+)/.exec(v)?.[1]))].sort();

  it('a service that changes preserved registers (x9, x19, x29) is caught: kind=reg naming them', () => {
    const r = runFuzz({ hv: broken('clobber'), seed: 5, vcpus: 2, callsPerVcpu: 20_000 });
    expect(kinds(r)).toEqual(['reg']);
    expect(r.violations[0]).toMatch(/kind=reg conduit=(hvc|smc) x0=c6000001 .* x9:[0-9a-f]+->dead0009 x19:[0-9a-f]+->dead0019 x29:[0-9a-f]+->dead0029$/);
  });

  it('a service that answers an unknown id with 0 instead of NOT_SUPPORTED is caught: kind=ret', () => {
    const r = runFuzz({ hv: broken('bad-return'), seed: 5, vcpus: 1, callsPerVcpu: 20_000 });
    expect(kinds(r)).toEqual(['ret']);
    expect(r.violations[0]).toMatch(/x0=c6000001 .* -> 0 0 0 0: unknown function id: expected NOT_SUPPORTED/);
  });

  it('a service that writes guest RAM it was not given is caught: kind=canary at that address', () => {
    const r = runFuzz({ hv: broken('stray-write'), seed: 5, vcpus: 1, callsPerVcpu: 20_000 });
    expect(kinds(r)).toEqual(['canary']);
    expect(r.violations.some((v) => v.includes(`at ${STRAY_GPA.toString(16)}: 7777777777777777`) || v.includes(`first=${STRAY_GPA.toString(16)}`))).toBe(true);
  });

  it('a Xen hypercall that writes one byte past the guest buffer is caught: kind=guard at buf+16', () => {
    const r = runFuzz({ hv: broken('overflow', true), seed: 5, vcpus: 1, callsPerVcpu: 20_000 });
    expect(kinds(r)).toEqual(['guard']);
    expect(r.violations[0]).toMatch(/kind=guard conduit=xen op=17 x0=1 .* len=16: byte at [0-9a-f]+ \(buf\+16\) [0-9a-f]+->5a$/);
  });
});

describe('fuzz guest image', () => {
  it('guests/bin/fuzz.elf is what guests/build.sh builds from guests/src (when the cross compiler is here)', (ctx) => {
    try {
      execFileSync('aarch64-linux-gnu-gcc', ['--version'], { stdio: 'ignore' });
    } catch {
      ctx.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'fuzz-guest-'));
    try {
      execFileSync(join(GUESTS_DIR, 'build.sh'), [out], { stdio: 'ignore' });
      expect(Buffer.compare(readFileSync(join(out, 'fuzz.elf')), readFileSync(FUZZ_IMAGE))).toBe(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
