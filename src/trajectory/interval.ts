/**
 * The paper's observed merge intervals V (tokens between merged checkpoints) by model
 * size, for recommending V when the user asks for `--interval auto`. MoE sizes are total
 * parameters (the paper names them activated/total: 0.7B/7B, 1.3B/13B, 10B/100B).
 */
export const PAPER_INTERVALS = {
  dense: [
    { parameters: 411e6, interval: 2e9, count: 6 },
    { parameters: 2e9, interval: 5e9, count: 6 },
    { parameters: 8e9, interval: 15e9, count: 10 },
    { parameters: 70e9, interval: 40e9, count: 10 },
  ],
  moe: [
    { parameters: 7e9, interval: 4e9, count: 10 },
    { parameters: 13e9, interval: 8e9, count: 10 },
    { parameters: 100e9, interval: 80e9, count: 10 },
  ],
} as const;

export interface IntervalRecommendation {
  interval: number;
  basis: string;
  extrapolated: boolean;
}

/**
 * Interpolates log V against log parameters piecewise linearly between the paper's
 * observations (the paper finds V grows with model size; a power law is the simplest
 * reading of its points), extending the nearest segment outside the observed range.
 */
export function recommendInterval(parameters: number, moe: boolean): IntervalRecommendation {
  const pts = PAPER_INTERVALS[moe ? "moe" : "dense"];
  const x = Math.log(parameters);
  let i = 0;
  while (i < pts.length - 2 && x > Math.log(pts[i + 1]!.parameters)) i++;
  const a = pts[i]!;
  const b = pts[i + 1]!;
  const t = (x - Math.log(a.parameters)) / (Math.log(b.parameters) - Math.log(a.parameters));
  const interval = Math.exp(Math.log(a.interval) + t * (Math.log(b.interval) - Math.log(a.interval)));
  const extrapolated = parameters < pts[0]!.parameters || parameters > pts[pts.length - 1]!.parameters;
  const fmt = (n: number) => (n >= 1e9 ? `${+(n / 1e9).toPrecision(3)}B` : `${+(n / 1e6).toPrecision(3)}M`);
  const basis =
    `${moe ? "MoE" : "dense"} model with ${fmt(parameters)} parameters; the paper merged at V=${fmt(a.interval)} for ${fmt(a.parameters)} and ` +
    `V=${fmt(b.interval)} for ${fmt(b.parameters)}; log-log interpolation gives V=${fmt(interval)}` +
    (extrapolated
      ? ` (extrapolated outside the paper's ${fmt(pts[0]!.parameters)}-${fmt(pts[pts.length - 1]!.parameters)} range: treat as a starting point)`
      : "");
  // Three significant digits: the recommendation is a rule of thumb, not a measurement.
  return { interval: Math.max(1, Number(interval.toPrecision(3))), basis, extrapolated };
}
