// pnpm bench: every hot path against a baseline measured in the same run, with the ratio.
// Each suite lives beside its package (packages/*/bench/*.mjs) and returns rows
// { name, value, unit, baselineName, baseline, ratio, goal, spread, pass }.
// Usage: pnpm bench [suite ...]   (suites: see the list below; default: all)
import { existsSync } from 'node:fs';

const suites = {
  core: ['../packages/core/bench/dispatch.mjs', 'runDispatchBench'],
  'machine-arm64': ['../packages/machine-arm64/dist/bench/index.js', 'runArm64Bench'],
  x86: ['../packages/machine-x86/dist/bench/index.js', 'runX86Bench'],
  xsave: ['../packages/xsave/bench/index.mjs', 'runXsaveBench'],
  'evtchn-fifo': ['../packages/svc-evtchn-fifo/bench/index.mjs', 'runEvtchnBench'],
  balloon: ['../packages/guest-tests-xen/bench/balloon.mjs', 'runBalloonBench'],
  transcripts: ['../packages/cli/bench/transcripts.mjs', 'runTranscriptBench'],
  linux: ['../packages/cli/bench/linux.mjs', 'runLinuxBench'],
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const name of wanted) {
  if (!suites[name]) {
    console.error(`bench: unknown suite '${name}' (have: ${Object.keys(suites).join(', ')})`);
    process.exit(2);
  }
}

const fmt = (v) => (v === undefined ? '' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
let failed = 0;
for (const [name, [path, fn]] of Object.entries(suites)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const url = new URL(path, import.meta.url);
  if (!existsSync(url)) continue;
  const mod = await import(url.href);
  console.log(`\n== ${name}`);
  const rows = await mod[fn]();
  for (const r of rows) {
    console.log(`${r.name}: ${fmt(r.value)} ${r.unit} (median${r.spread ? `; spread ${r.spread}` : ''})`);
    if (r.baseline !== undefined) console.log(`  baseline${r.baselineName ? ` ${r.baselineName}` : ""}: ${fmt(r.baseline)} ${r.unit}; ratio ${r.ratio.toFixed(2)}×`);
    if (r.goal) console.log(`  goal ${r.goal}: ${r.pass ? 'met' : 'NOT met'}`);
    if (r.note) console.log(`  note: ${r.note}`);
    if (r.goal && !r.pass) failed++;
  }
}
console.log(`\n${failed ? `${failed} goal(s) not met` : 'all goals met'} (the machine is noisy: compare medians and ratios, not single runs)`);
