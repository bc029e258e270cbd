/**
 * What every benchmark returns: a figure, and where a target exists the public baseline measured
 * in the same run, the ratio to it and whether the target was met. `bench/run-all.ts` prints them.
 * (In a sub-folder so that run-all, which runs every `bench/*.js`, does not take it for a bench.)
 */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline?: string;
  ratio?: number;
  target?: string;
  pass?: boolean;
}

/** A figure with an upper target as a ratio to a baseline of the same run (`measured <= max × base`). */
export function withMaxRatio(r: Omit<BenchResult, 'ratio' | 'target' | 'pass'>, measured: number, base: number, max: number): BenchResult {
  return { ...r, ratio: measured / base, target: `<= ${max}`, pass: measured <= max * base };
}
