/** The mean of per-seed values and their spread, as the lab reports them and the report prints them. */

export interface MeanSd {
  mean: number;
  /** Sample standard deviation (n - 1); undefined for a single value. */
  sd?: number;
  n: number;
}

/** Mean and sample standard deviation of per-seed values. */
export function meanSd(values: readonly number[]): MeanSd {
  const n = values.length;
  if (n === 0) return { mean: NaN, n: 0 };
  const mean = values.reduce((a, v) => a + v, 0) / n;
  if (n === 1) return { mean, n };
  const ss = values.reduce((a, v) => a + (v - mean) * (v - mean), 0);
  return { mean, sd: Math.sqrt(ss / (n - 1)), n };
}
