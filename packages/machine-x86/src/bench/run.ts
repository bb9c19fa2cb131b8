// Stand-alone: node packages/machine-x86/dist/bench/run.js
import { runX86Bench } from './index.js';

for (const r of await runX86Bench()) {
  console.log(`${r.name}: ${r.value.toFixed(2)} ${r.unit}` + (r.baseline !== undefined ? ` (baseline ${r.baseline.toFixed(2)}, ratio ${r.ratio!.toFixed(2)})` : '') + (r.note ? ` — ${r.note}` : ''));
}
