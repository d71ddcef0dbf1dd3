/**
 * Question 1 (paper section 4.1, Fig. 1): in the constant-LR phase of a WSD run, is the
 * SMA of the last N checkpoints, V tokens apart, better than the latest checkpoint?
 * Dense and MoE; at several points of each run.
 */
import type { LabContext, ZeroShot } from "./context.js";
import { delta, NOISE_NATS, tokens } from "./format.js";
import { bandPoint, mergeCurve, overSeeds, type SeedsPoint } from "./merge-curve.js";
import { stepsBetween } from "./profile.js";
import type { ExperimentResult, Figure, Finding, Table, Verdict } from "./result.js";
import { checkpointDir, denseSpec, moeSpec, type RunSpec } from "./runs.js";
import { plusMinus, seedList, seedsPhrase } from "./seeds.js";
import { perSeedTable, spreadFigure, spreadTable } from "./stable-merge-seeds.js";

/**
 * Verdict of "merged beats latest". The paper merges well-trained models in the stable
 * phase; early, while the loss still falls fast, a merge lags behind (the figure shows
 * that too). So the verdict looks at the last third of the run (points with the full N):
 * reproduced when the merge is better there at every point, partly when it is better
 * at the end but not throughout, not at this scale otherwise. `from` is the first point
 * after which the merge is better at every point. Over seeds, on the mean difference.
 */
export function mergeVerdict(
  points: SeedsPoint[],
  fullCount: number,
): { verdict: Verdict; wins: number; total: number; from: number | null } {
  const endStep = Math.max(...points.map((p) => p.step));
  const late = points.filter((p) => p.count === fullCount && p.step >= (2 * endStep) / 3);
  // -(merged - latest) is latest - merged bit for bit: one seed judges exactly as before.
  const better = (p: SeedsPoint): boolean => -p.diff.mean > NOISE_NATS;
  const wins = late.filter(better).length;
  let from: number | null = null;
  for (let i = points.length - 1; i >= 0 && better(points[i]!); i--) from = points[i]!.tokens;
  const last = points.at(-1);
  const verdict: Verdict =
    late.length > 0 && wins === late.length
      ? "reproduced"
      : last !== undefined && better(last)
        ? "partly"
        : "not at this scale";
  return { verdict, wins, total: late.length, from };
}

function finding(model: string, points: SeedsPoint[], fullCount: number, seeds: number): Finding {
  const v = mergeVerdict(points, fullCount);
  const list = points
    .map(
      (p) =>
        `${tokens(p.tokens)}: ${delta(p.diff.mean)}${plusMinus(p.diff)}${p.count < fullCount ? ` (N=${p.count})` : ""}`,
    )
    .join("; ");
  const what = seeds > 1 ? `nats; ${seedsPhrase(seeds)}, verdict on the mean` : "nats";
  return {
    id: `${model.toLowerCase()}-merge-beats-latest`,
    claim: `${model}: in the constant-LR phase, the SMA of recent checkpoints scores better than the latest checkpoint (judged on the last third of the run).`,
    measured:
      `merged minus latest held-out loss (${what}) at ${list}. Better by more than ${NOISE_NATS} at ${v.wins} of ${v.total} points of the last third of the run; ` +
      (v.from === null
        ? "not better at the end."
        : `better at every point from ${tokens(v.from)} tokens on.`),
    verdict: v.verdict,
  };
}

/** The zero-shot suite on the latest checkpoint and the merge at a run's last point. */
async function downstream(
  ctx: LabContext,
  spec: RunSpec,
  step: number,
): Promise<{ latest: ZeroShot; merged: ZeroShot }> {
  const dir = await ctx.runs.ensure(spec);
  const w = await ctx.window(dir, step, ctx.profile.window.count, ctx.profile.window.intervalSteps);
  ctx.progress.stage("stable-merge", `${spec.name}: zero-shot tasks`);
  return {
    latest: await ctx.zeroShot(checkpointDir(dir, step)),
    merged: await ctx.zeroShot(await ctx.merged(w.inputs)),
  };
}

function withEnd(steps: number[], end: number): number[] {
  return steps.at(-1) === end ? steps : [...steps, end];
}

function zsText(z: ZeroShot): string {
  return `${(z.average * 100).toFixed(1)}% (margin ${z.margin.toFixed(3)})`;
}

export async function stableMerge(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const { count, intervalSteps } = p.window;
  const seeds = seedList(p);
  const denseSteps = withEnd(
    stepsBetween(p.stable.fromStep, p.denseSteps, p.stable.everySteps),
    p.denseSteps,
  );
  const moeSteps = withEnd(stepsBetween(p.stable.moeFromStep, p.moeSteps, p.stable.everySteps), p.moeSteps);
  // Seed by seed, dense before MoE: seed 0's runs, which the other experiments share,
  // queue for the two training slots first.
  const curves = await Promise.all(
    seeds.flatMap((k) => [
      mergeCurve(ctx, "stable-merge", denseSpec(p, k), denseSteps),
      mergeCurve(ctx, "stable-merge", moeSpec(p, k), moeSteps),
    ]),
  );
  const perSeed = { dense: curves.filter((_, i) => i % 2 === 0), MoE: curves.filter((_, i) => i % 2 === 1) };
  const dense = overSeeds(perSeed.dense);
  const moe = overSeeds(perSeed.MoE);
  // Zero-shot on seed 0 only: its items are few, so a seed's spread would mostly be item noise.
  const zsDense = await downstream(ctx, denseSpec(p), p.denseSteps);
  const zsMoe = await downstream(ctx, moeSpec(p), p.moeSteps);
  const marginWins = [zsDense, zsMoe].filter((z) => z.merged.margin > z.latest.margin).length;
  const accWins = [zsDense, zsMoe].filter((z) => z.merged.average >= z.latest.average).length;
  const items = Object.values(zsDense.latest.tasks)[0]?.n ?? 0;
  const series = (name: string, pts: SeedsPoint[]) => [
    { name: `${name} latest`, points: pts.map((q) => bandPoint(q.tokens, q.latest)), dashed: true },
    { name: `${name} SMA N=${count}`, points: pts.map((q) => bandPoint(q.tokens, q.merged)) },
  ];
  const rows = (name: string, pts: SeedsPoint[]) =>
    pts.map((q) => [name, q.tokens, q.latest.mean, q.merged.mean, q.diff.mean, q.count]);
  const several = seeds.length > 1;
  const lossFigure: Figure = {
    kind: "line",
    id: "stable-merge",
    title: "Latest checkpoint vs SMA in the constant-LR phase",
    caption:
      `Held-out loss of the latest checkpoint and of the SMA of the last ${count} checkpoints ${tokens(intervalSteps * ctx.tps)} tokens apart.` +
      (several ? ` Means over ${seeds.length} seeds; bands: -/+ one sample sd.` : ""),
    x: { label: "tokens" },
    y: { label: "held-out loss (nats)" },
    series: [...series("dense", dense), ...series("MoE", moe)],
  };
  const table: Table = {
    id: "stable-merge",
    title: "Latest vs merged held-out loss",
    columns: ["model", "tokens", "latest", "merged", "merged - latest", "N"],
    rows: [...rows("dense", dense), ...rows("MoE", moe)],
  };
  return {
    id: "stable-merge",
    title: "Merging in the stable phase",
    paper:
      "Section 4.1, Fig. 1 (and Fig. 9 for dense models): merged checkpoints of the constant-LR phase beat the latest one.",
    setup:
      `Dense and MoE models trained on Brown with a constant LR of ${p.lr} after ${p.warmupSteps} warmup steps (the stable phase of WSD). ` +
      `At every ${tokens(p.stable.everySteps * ctx.tps)} tokens, the latest checkpoint is compared with the SMA of N=${count} checkpoints ` +
      `V=${tokens(intervalSteps * ctx.tps)} tokens apart ending there (pma's planner and merger), on ${tokens(p.evalTokens)} fixed validation tokens.` +
      (several
        ? ` Each run is trained with ${seeds.length} seeds (0-${seeds.length - 1}; a seed sets the initialization and the batch order); the zero-shot comparison uses seed 0.`
        : ""),
    findings: [
      finding("Dense", dense, count, seeds.length),
      finding("MoE", moe, count, seeds.length),
      {
        id: "merge-downstream",
        claim:
          "The merged model also scores higher on downstream tasks than the latest checkpoint (Fig. 1 reports benchmark scores).",
        measured:
          `zero-shot average accuracy (next word, word swap, word drop; ${items} items each; chance ${(zsDense.latest.chance * 100).toFixed(0)}%), latest -> merged${several ? " (seed 0)" : ""}: ` +
          `dense ${zsText(zsDense.latest)} -> ${zsText(zsDense.merged)}; MoE ${zsText(zsMoe.latest)} -> ${zsText(zsMoe.merged)}.`,
        verdict:
          marginWins === 2 && accWins === 2
            ? "reproduced"
            : marginWins + accWins > 0
              ? "partly"
              : "not at this scale",
        note: `With ${items} items per task one item is ${(100 / items).toFixed(1)} points of a task's accuracy, so accuracy differences of a few points are noise; the log-likelihood margin is the steadier signal.`,
      },
    ],
    // Several seeds add the difference with its band, and the per-seed numbers behind it.
    figures: several ? [lossFigure, spreadFigure({ dense, MoE: moe })] : [lossFigure],
    tables: several ? [perSeedTable(perSeed), spreadTable({ dense, MoE: moe })] : [table],
  };
}
