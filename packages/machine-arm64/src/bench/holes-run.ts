// Stand-alone: node packages/machine-arm64/dist/bench/holes-run.js
import { runArm64HolesBench } from './holes.js';

for (const r of runArm64HolesBench()) {
  console.log(`${r.name}: ${r.value.toFixed(2)} ${r.unit}` + (r.baseline !== undefined ? ` (${r.baselineName} ${r.baseline.toFixed(2)}, ratio ${r.ratio!.toFixed(2)})` : ''));
}
