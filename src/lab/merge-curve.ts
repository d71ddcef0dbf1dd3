/**
 * Latest checkpoint vs the SMA of N checkpoints V tokens apart ending there, at several
 * points of one run (the curve of Fig. 1), and the same curve over the runs of several
 * seeds: per point the mean of each loss and the mean and sample sd of merged minus
 * latest. The difference is taken within a seed first because the seeds' losses move
 * together (a seed with a higher loss has a higher loss merged too), so the spread of
 * the difference is what says whether merging helps, not the spread of the losses.
 */
import type { LabContext } from "./context.js";
import type { MeanSd } from "./mean-sd.js";
import type { Point } from "./result.js";
import { checkpointDir, type RunSpec } from "./runs.js";
import { acrossSeeds } from "./seeds.js";

export interface MergeCurvePoint {
  step: number;
  tokens: number;
  latest: number;
  merged: number;
  /** N actually merged at this point. */
  count: number;
}

/** One point of the curve over seeds (for one seed: that seed's numbers, exactly). */
export interface SeedsPoint {
  step: number;
  tokens: number;
  latest: MeanSd;
  merged: MeanSd;
  /** merged minus latest, per seed, then mean and sample sd. */
  diff: MeanSd;
  count: number;
}

/** Latest vs SMA(N at V) at each step of `steps` of one run. */
export async function mergeCurve(
  ctx: LabContext,
  experiment: string,
  spec: RunSpec,
  steps: number[],
): Promise<MergeCurvePoint[]> {
  const dir = await ctx.runs.ensure(spec);
  const { count, intervalSteps } = ctx.profile.window;
  const out: MergeCurvePoint[] = [];
  for (const [i, step] of steps.entries()) {
    ctx.progress.stage(experiment, `${spec.name}: point ${i + 1}/${steps.length}`);
    const w = await ctx.window(dir, step, count, intervalSteps);
    const merged = await ctx.merged(w.inputs);
    out.push({
      step,
      tokens: step * ctx.tps,
      latest: await ctx.heldout(checkpointDir(dir, step)),
      merged: await ctx.heldout(merged),
      count: w.count,
    });
  }
  return out;
}

/** The seeds' curves (same steps: the profile sets them) point by point. */
export function overSeeds(curves: readonly MergeCurvePoint[][]): SeedsPoint[] {
  const first = curves[0] ?? [];
  return first.map((p, i) => {
    const at = curves.map((c) => c[i]!);
    return {
      step: p.step,
      tokens: p.tokens,
      latest: acrossSeeds(at.map((q) => q.latest)),
      merged: acrossSeeds(at.map((q) => q.merged)),
      diff: acrossSeeds(at.map((q) => q.merged - q.latest)),
      count: Math.min(...at.map((q) => q.count)),
    };
  });
}

/** A figure point at the mean, with a band of mean -/+ sd when there is a spread. */
export function bandPoint(x: number, m: MeanSd): Point {
  return m.sd === undefined ? { x, y: m.mean } : { x, y: m.mean, lo: m.mean - m.sd, hi: m.mean + m.sd };
}
