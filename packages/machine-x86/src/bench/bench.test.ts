import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { runX86Bench } from './index.js';
import { kvmUnavailable } from '../host.js';

const why = kvmUnavailable() ?? (spawnSync('gcc', ['--version']).status === 0 ? undefined : 'needs gcc for the C baseline');

it.skipIf(!!why)(`x86 bench runs end to end (one short round)${why ? ` — skipped: ${why}` : ''}`, async () => {
  const rows = await runX86Bench({ rounds: 1, iterations: 300, xsaveReps: 8 });
  expect(rows.length).toBe(5);
  for (const r of rows) expect(r.value).toBeGreaterThan(0);
  expect(rows[0]!.ratio).toBeGreaterThan(0);
});
