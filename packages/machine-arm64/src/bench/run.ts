// Stand-alone: node packages/machine-arm64/dist/bench/run.js
import { runArm64Bench } from './index.js';

for (const r of await runArm64Bench()) {
  console.log(`${r.name}: ${r.value.toFixed(1)} ${r.unit}` + (r.baseline !== undefined ? ` (C ${r.baseline.toFixed(1)}, ratio ${r.ratio!.toFixed(2)})` : ''));
}
