#!/usr/bin/env node
/**
 * pnpm fuzz --seconds N --seed S [--vcpus K] [--build default|opt-in|FILE] [--feature NAME=on|off]…
 *           [--calls N] [--snapshots N]
 *
 * Runs the fuzz guest for N seconds (or N calls per vCPU with --calls) on the arm64 machine,
 * prints every violation, then checks snapshot/restore: a fixed-length run of the same seed,
 * once uninterrupted and once snapshotted and restored at --snapshots seeded trap counts
 * (default 4), must end the same. The last line is `calls=N calls/s=R violations=V` (the
 * timed run's calls and rate; V counts every violation of both phases).
 * Exit 0 with no violation, 1 with some, 2 for bad arguments.
 */
import { parseArgs } from 'node:util';
import { Hypervisor, type VmOverrides } from '@plugvisor/core';
import { loadBuild } from '@plugvisor/cli';
import { allOptIn, compareWithRestores, MAX_VCPUS, runFuzz } from './harness.js';

const usage = 'usage: pnpm fuzz --seconds N --seed S [--vcpus K] [--build default|opt-in|FILE] [--feature NAME=on|off]… [--calls N] [--snapshots N]';

class Usage extends Error {}

function int(text: string | undefined, what: string, min: number, max: number, dflt?: number): number {
  if (text === undefined) {
    if (dflt === undefined) throw new Usage(`${what} is required`);
    return dflt;
  }
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw new Usage(`${what} takes ${min}..${max}, got '${text}'`);
  return Number(text);
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      seed: { type: 'string' },
      vcpus: { type: 'string' },
      build: { type: 'string' },
      feature: { type: 'string', multiple: true },
      calls: { type: 'string' },
      snapshots: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const seed = values.seed !== undefined && /^(0x[0-9a-f]+|\d+)$/i.test(values.seed) && BigInt(values.seed) < 1n << 64n ? BigInt(values.seed) : undefined;
  if (seed === undefined) throw new Usage(`--seed takes a number below 2^64, got '${values.seed ?? ''}'`);
  const vcpus = int(values.vcpus, '--vcpus', 1, MAX_VCPUS, 1);
  const calls = values.calls !== undefined ? int(values.calls, '--calls', 1, 1e9) : undefined;
  const seconds = calls === undefined ? int(values.seconds, '--seconds', 1, 86400) : undefined;
  const snapshots = int(values.snapshots, '--snapshots', 0, 1000, 4);

  const which = values.build ?? 'default';
  const { hv } = await loadBuild(which === 'default' || which === 'opt-in' ? undefined : which);
  const features: Record<string, boolean> = { ...(which === 'opt-in' ? allOptIn(hv).features : {}) };
  for (const f of values.feature ?? []) {
    try {
      const [name, on] = Hypervisor.parseFeatureFlag(f);
      features[name] = on;
    } catch (e) {
      throw new Usage((e as Error).message);
    }
  }
  const overrides: VmOverrides = { features };
  try {
    hv.createVm(overrides);
  } catch (e) {
    throw new Usage((e as Error).message);
  }

  console.log(`fuzz: build ${which}${Object.keys(features).length ? ` (${Object.entries(features).map(([k, v]) => `${k}=${v ? 'on' : 'off'}`).join(' ')})` : ''}, seed ${seed}, ${vcpus} vCPU${vcpus > 1 ? 's' : ''}, ${calls !== undefined ? `${calls} calls per vCPU` : `${seconds} s`}`);
  const run = runFuzz({ hv, overrides, seed, vcpus, callsPerVcpu: calls, seconds });
  for (const v of run.violations) console.log(v);
  const violations = [...run.violations];

  if (snapshots > 0) {
    // A fixed-length replay (the same seed) uninterrupted and across restores: long enough to
    // reach Xen and PSCI state, short enough to run twice in a few seconds.
    const perVcpu = Math.max(1000, Math.min(20_000, Math.floor(run.calls / vcpus / 4)));
    const cmp = compareWithRestores({ hv, overrides, seed, vcpus, callsPerVcpu: perVcpu, snapshots });
    const extra = [...cmp.whole.violations, ...cmp.restored.violations, ...cmp.violations];
    for (const v of extra) console.log(v);
    violations.push(...extra);
    console.log(`snapshot: ${perVcpu} calls per vCPU, restored at traps ${cmp.restored.restoredAt.join(',')}: ${cmp.violations.length ? 'outcome differs' : 'same outcome as the uninterrupted run'}`);
  }
  const rate = run.seconds > 0 ? Math.round(run.calls / run.seconds) : 0;
  console.log(`calls=${run.calls} calls/s=${rate} violations=${violations.length}`);
  return violations.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof Usage || (e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (e as { name?: string }).name === 'UsageError' || String((e as { code?: string }).code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`fuzz: ${(e as Error).message}\n${usage}`);
      process.exit(2);
    }
    if (process.env.PLUGVISOR_DEBUG) console.error(e);
    else console.error(`fuzz: ${(e as Error).message ?? String(e)}`);
    process.exit(1);
  },
);
