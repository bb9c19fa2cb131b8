import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

/**
 * The balloon guest (packages/guest-tests-xen/guests/src/balloon.c) through `plugvisor run` and
 * `plugvisor restore` on the default build with svc-xen's opt-in feature memory-reservation on.
 * On each vCPU, task A issues one XENMEM_decrease_reservation of 1024 pages; the virtual timer
 * falls due mid-call, the guest takes the interrupt on the re-executed HVC and deschedules task A
 * — its registers, the continuation `op | done << 6` in x0 included, saved in guest memory — and
 * runs task B, which checks that exactly `done` pages are gone, then resumes A; A's call completes
 * with every extent processed once and the pages come back zeroed.
 */
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const balloon = fileURLToPath(new URL('../../guest-tests-xen/guests/bin/balloon.elf', import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const ON = ['--feature', 'memory-reservation=on'];
const NPAGES = 1024;

/** Per vCPU: the extents done when task A was descheduled, as task A's and task B's lines say. */
function descheduled(out: string): Map<number, number> {
  const at = new Map<number, number>();
  for (const m of out.matchAll(/^balloon: cpu (\d+): task A descheduled in XENMEM_decrease_reservation, (\d+) of 1024 extents done; task B running$/gm)) {
    at.set(Number(m[1]), Number(m[2]));
  }
  return at;
}

/** Every line a vCPU prints after task B ran, for `done` extents done at the switch. */
function finished(cpu: number, done: number): string[] {
  return [
    `balloon: cpu ${cpu}: task B saw ${done} pages gone, ${NPAGES - done} intact; resuming task A`,
    `balloon: cpu ${cpu}: task A resumed: ${NPAGES} of ${NPAGES} extents done, ${NPAGES} pages gone (attempt `,
    `balloon: cpu ${cpu}: ${NPAGES} pages populated back, zeroed`,
  ];
}

function expectCompleted(out: string, vcpus: number, at: Map<number, number>) {
  expect([...at.keys()].sort()).toEqual([...Array(vcpus).keys()]);
  for (const [cpu, done] of at) {
    expect(done, out).toBeGreaterThan(0);
    expect(done, out).toBeLessThan(NPAGES);
    for (const line of finished(cpu, done)) expect(out, out).toContain(line);
  }
  expect(out).not.toContain('FAIL');
  expect(out.trimEnd().split('\n').at(-1)).toBe('balloon: ok');
}

describe.skipIf(!unicornAvailable())('the balloon guest: a preempted decrease_reservation in a descheduled task', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-balloon-'));

  it.each([1, 2])('passes uninterrupted on %i vCPU(s)', (vcpus) => {
    const r = plugvisor('run', balloon, ...ON, '--vcpus', String(vcpus));
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toContain(`balloon: ${vcpus} vCPUs, 32768 pages reserved of 32768`);
    expectCompleted(r.out, vcpus, descheduled(r.out));
  });

  it.each([1, 2])(
    'passes across a snapshot taken while task A is descheduled mid-call, restored in a new process (%i vCPU(s))',
    (vcpus) => {
      const snap = join(dir, `mid-${vcpus}.snap`);
      const first = plugvisor('run', balloon, ...ON, '--vcpus', String(vcpus), '--snapshot-on-output', 'task B running', '--snapshot-file', snap);
      expect(first.code, first.out + first.err).toBe(0);
      expect(first.err).toContain(`snapshot at console output "task B running" written to ${snap}`);
      expect(statSync(snap).size).toBeGreaterThan(0);
      // The first process stopped right after task B said it runs: task A's call is unfinished,
      // its continuation only in the saved registers in guest memory.
      const before = descheduled(first.out);
      expect(before.size).toBeGreaterThanOrEqual(1);
      expect(first.out).not.toContain('balloon: ok');

      const second = plugvisor('restore', snap);
      expect(second.code, second.out + second.err).toBe(0);
      // Whatever the other vCPU did after the snapshot happens in the second process.
      const all = new Map([...before, ...descheduled(second.out)]);
      expectCompleted(first.out + second.out, vcpus, all);
      // The vCPU whose task B triggered the snapshot resumes task A in the second process.
      const [cpu, done] = [...before][0]!;
      expect(first.out).not.toContain(finished(cpu, done)[0]);
      expect(second.out).toContain(finished(cpu, done)[0]);
    },
  );

  it('a run with memory-reservation off gets -ENOSYS for the sub-ops and says so', () => {
    const r = plugvisor('run', balloon);
    expect(r.code).toBe(20); // the guest's failed check ends with SYSTEM_RESET
    expect(r.out).toContain("balloon: FAIL: XENMEM_maximum_reservation is -ENOSYS (svc-xen's feature memory-reservation is off)");
  });
});
