/**
 * One row of `pnpm bench` (scripts/bench.mjs prints these): a hot path's median beside a
 * baseline measured in the same run, and their ratio. Every package's bench suite returns them.
 */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  baselineName?: string;
  ratio?: number;
  goal?: string;
  pass?: boolean;
  spread?: string;
  note?: string;
}
