/**
 * Question 8 (section 4.6, Fig. 8): why merging works. For the last k checkpoints of the
 * dense run (V tokens apart) the matrix delta_i' H delta_j is estimated with
 * Hessian-vector products (finite differences of gradients, src/analysis/hessian.ts)
 * about two choices of theta*:
 *   - the annealed model at the same token count (experiment 2's fork): the best
 *     stand-in for the minimum the constant-LR iterates move around, and a point
 *     independent of the window;
 *   - the merge itself (theta_avg): then sum_i delta_i = 0, so the off-diagonal terms
 *     sum to minus the diagonal by construction; shown because the sign of the
 *     off-diagonal terms depends on this choice (lab notes).
 * The quadratic model's predicted gain L(merge) - mean L(checkpoint) (the same for any
 * theta* if H were constant) is compared with the measured one on the same tokens. And
 * a contour plot of held-out loss on the plane of the window's first two principal
 * directions, with the checkpoints and the merge (at the centre) marked.
 */
import { join } from "node:path";
import { crossTerms, lossAt, quadraticCheck, type CrossTerms } from "../analysis/hessian.js";
import { gridAxis, pcaPlane, project } from "../analysis/plane.js";
import { combine, loadVector } from "../analysis/vectors.js";
import { SplitTokens } from "../eval/split-tokens.js";
import type { ModelConfig } from "../nn/config.js";
import type { Batch } from "../nn/grad.js";
import { createModel, type Model } from "../nn/model.js";
import type { TokenStream } from "../data/batches.js";
import { heldoutWindows } from "../data/heldout-windows.js";
import { HeldoutEvaluator } from "../train/heldout.js";
import { readModelConfig } from "../train/weights-io.js";
import type { LabContext } from "./context.js";
import { delta, mean, tokens } from "./format.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { annealSpec, checkpointDir, denseSpec } from "./runs.js";

const yieldNow = (): Promise<void> => new Promise((r) => setImmediate(r));

interface CenterResult {
  name: string;
  terms: CrossTerms;
  check: ReturnType<typeof quadraticCheck>;
}

/** Batches of `count * B` validation windows for the Hessian-vector products (the last window repeats to fill a batch). */
function hvpBatches(stream: TokenStream, S: number, B: number, count: number): Batch[] {
  const starts = heldoutWindows(stream.length, S, count * B * S);
  const batches: Batch[] = [];
  for (let b = 0; b * B < starts.length; b++) {
    const tokensBuf = new Int32Array(B * S);
    const targets = new Int32Array(B * S);
    for (let r = 0; r < B; r++) {
      const o = starts[Math.min(starts.length - 1, b * B + r)]!;
      for (let t = 0; t < S; t++) {
        tokensBuf[r * S + t] = stream[o + t]!;
        targets[r * S + t] = stream[o + t + 1]!;
      }
    }
    batches.push({ tokens: tokensBuf, targets });
  }
  return batches;
}

/** delta_i' H delta_j about each choice of theta*, and what the quadratic model predicts from it. */
async function crossTermsAbout(
  ctx: LabContext,
  model: Model,
  batches: Batch[],
  thetas: Float32Array[],
  centers: readonly (readonly [string, Float32Array])[],
): Promise<CenterResult[]> {
  const out: CenterResult[] = [];
  for (const [name, center] of centers) {
    const terms = await crossTerms(model, batches, center, thetas, {
      onUnit: async (done, total) => {
        ctx.progress.stage("mechanism", `H delta, theta* = ${name}: ${done}/${total}`);
        await yieldNow();
      },
    });
    out.push({ name, terms, check: quadraticCheck(terms.matrix) });
  }
  return out;
}

/**
 * Held-out loss on the plane of the window's first two principal directions about the
 * merge: a grid for the contour plot, and the loss at each checkpoint's projection and
 * at the merge.
 */
async function lossPlane(
  ctx: LabContext,
  config: ModelConfig,
  stream: TokenStream,
  thetas: Float32Array[],
  avg: Float32Array,
  annealed: Float32Array,
) {
  const m = ctx.profile.mechanism;
  const plane = pcaPlane(thetas, avg);
  const star = project(plane, annealed);
  // The annealed model is drawn (and the grid stretched to it) only when its projection
  // is near the window; far away it would shrink the checkpoints to a dot.
  const reach = Math.max(...plane.coords.map((c) => Math.hypot(c.x, c.y)));
  const showStar = Math.hypot(star.x, star.y) <= 3 * reach;
  const marks = [...plane.coords, { x: 0, y: 0 }, ...(showStar ? [star] : [])];
  const xs = gridAxis(
    marks.map((c) => c.x),
    m.grid,
  );
  const ys = gridAxis(
    marks.map((c) => c.y),
    m.grid,
  );
  const evalModel = createModel(
    config,
    ctx.backend,
    { batch: 16, seq: ctx.profile.data.seq_len },
    { forwardOnly: true },
  );
  const evaluator = new HeldoutEvaluator(evalModel, stream, m.gridTokens);
  const at = new Float32Array(avg.length);
  const onPlane = (x: number, y: number): number => {
    for (let e = 0; e < at.length; e++) at[e] = avg[e]! + x * plane.u[e]! + y * plane.v[e]!;
    evalModel.params.data.set(at);
    return evaluator.run().loss;
  };
  const z: number[][] = [];
  for (const [j, y] of ys.entries()) {
    const row: number[] = [];
    for (const x of xs) {
      row.push(onPlane(x, y));
      await yieldNow();
    }
    z.push(row);
    ctx.progress.stage("mechanism", `loss plane: row ${j + 1}/${ys.length}`);
  }
  const planeCk = plane.coords.map((c) => onPlane(c.x, c.y));
  evalModel.params.data.set(avg);
  const planeMerged = evaluator.run().loss;
  return { plane, star, showStar, xs, ys, z, planeCk, planeMerged };
}

/** The three claims of section 4.6, each with what this run measured and a verdict. */
function mechanismFindings(
  ctx: LabContext,
  k: number,
  a: MechanismAnalysis,
  heldCk: number[],
  heldMerged: number,
): Finding[] {
  const p = ctx.profile;
  const m = p.mechanism;
  const { centers, batchLosses, batchMerged, plane, star, planeCk, planeMerged } = a;
  const measuredGain = batchMerged - mean(batchLosses);
  const [ann, avgC] = centers as [CenterResult, CenterResult];
  const predicted = ann.check.predictedGain;
  const agree =
    Math.sign(predicted) === Math.sign(measuredGain) &&
    Math.abs(predicted - measuredGain) <= 0.5 * Math.abs(measuredGain);
  const fmtM = (x: number) => x.toExponential(2);
  const findings: Finding[] = [
    {
      id: "hessian-offdiagonal-negative",
      claim:
        "The off-diagonal terms delta_i' H delta_j are predominantly negative (the deviations are complementary).",
      measured:
        `theta* = annealed model at ${tokens(p.denseSteps * ctx.tps)}: ${(ann.check.negativeShare * 100).toFixed(0)}% of off-diagonal terms negative ` +
        `(sum ${fmtM(ann.check.offDiagonalSum)}, diagonal sum ${fmtM(ann.check.bound / Math.max(1, k - 1))}); ` +
        `theta* = the merge: ${(avgC.check.negativeShare * 100).toFixed(0)}% negative (sum ${fmtM(avgC.check.offDiagonalSum)}, which must equal minus the diagonal sum ${fmtM(-avgC.check.bound / Math.max(1, k - 1))} since the deltas sum to zero). ` +
        `Finite-difference asymmetry ${(ann.terms.asymmetry * 100).toFixed(2)}% / ${(avgC.terms.asymmetry * 100).toFixed(2)}%.`,
      verdict:
        ann.check.negativeShare > 0.5
          ? "reproduced"
          : ann.check.negativeShare > 0
            ? "partly"
            : "not at this scale",
    },
    {
      id: "inequality-15",
      claim: "Inequality (15) holds, and it is what makes the merge better than the average checkpoint.",
      measured:
        `(15) ${ann.check.holds ? "holds" : "fails"} about the annealed model (${fmtM(ann.check.offDiagonalSum)} vs (k-1) sum diag ${fmtM(ann.check.bound)}) and ` +
        `${avgC.check.holds ? "holds" : "fails"} about the merge. Predicted L(merge) - mean L(checkpoints): ${delta(predicted)} (annealed theta*), ${delta(avgC.check.predictedGain)} (merge theta*); ` +
        `measured on the same ${tokens(m.hvpBatches * p.data.micro_batch * p.data.seq_len)} tokens: ${delta(measuredGain)}; on ${tokens(p.evalTokens)} held-out tokens: ${delta(heldMerged - mean(heldCk))}.`,
      verdict: ((): Verdict =>
        ann.check.holds && measuredGain < 0
          ? agree
            ? "reproduced"
            : "partly"
          : ann.check.holds === measuredGain < 0
            ? "partly"
            : "not at this scale")(),
    },
    {
      id: "loss-plane",
      claim:
        "On a plane through the checkpoints, the merge sits nearer the low-loss region than the individual checkpoints (Fig. 8).",
      measured:
        `plane of the first two principal directions (${(plane.explained[0] * 100).toFixed(0)}% + ${(plane.explained[1] * 100).toFixed(0)}% of the window's spread); ` +
        `loss on the plane at the merge ${planeMerged.toFixed(4)} vs the checkpoints' projections ${planeCk.map((x) => x.toFixed(4)).join(", ")}; ` +
        `the annealed model is ${star.offPlane.toFixed(2)} off the plane (checkpoints are ${mean(plane.coords.map((c) => Math.hypot(c.x, c.y))).toFixed(2)} from the merge on average).`,
      verdict: planeCk.every((x) => planeMerged < x)
        ? "reproduced"
        : planeCk.some((x) => planeMerged < x)
          ? "partly"
          : "not at this scale",
    },
  ];
  return findings;
}

type MechanismAnalysis = { centers: CenterResult[]; batchLosses: number[]; batchMerged: number } & Awaited<
  ReturnType<typeof lossPlane>
>;

export async function mechanism(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const m = p.mechanism;
  const [denseDir, annealDir] = await Promise.all([
    ctx.runs.ensure(denseSpec(p)),
    ctx.runs.ensure(annealSpec(p, ctx.store)),
  ]);
  const w = await ctx.window(denseDir, p.denseSteps, m.k, p.window.intervalSteps);
  const k = w.inputs.length;
  const mergedPath = await ctx.merged(w.inputs);
  const annealedPath = checkpointDir(annealDir, p.denseSteps);
  const heldCk = await ctx.heldoutAll("mechanism", w.inputs);
  const heldMerged = await ctx.heldout(mergedPath);

  const analysis = await ctx.parent.with(async () => {
    const config = await readModelConfig(w.inputs[0]!);
    const model = createModel(config, ctx.backend, { batch: p.data.micro_batch, seq: p.data.seq_len });
    const thetas: Float32Array[] = [];
    for (const path of w.inputs) thetas.push(await loadVector(model, path));
    const annealed = await loadVector(model, annealedPath);
    const avg = combine(thetas, w.coefficients);
    const stream = new SplitTokens(ctx.cacheDir).get(
      "brown",
      "validation",
      join(w.inputs[0]!, "tokenizer.json"),
    );
    const batches = hvpBatches(stream, p.data.seq_len, p.data.micro_batch, m.hvpBatches);
    const centers = await crossTermsAbout(ctx, model, batches, thetas, [
      ["annealed model", annealed],
      ["merge (theta_avg)", avg],
    ]);
    const batchLosses = thetas.map((t) => lossAt(model, t, batches));
    const batchMerged = lossAt(model, avg, batches);
    return {
      centers,
      batchLosses,
      batchMerged,
      ...(await lossPlane(ctx, config, stream, thetas, avg, annealed)),
    };
  });

  const { centers, batchLosses, plane, star, showStar, xs, ys, z } = analysis;
  const [ann, avgC] = centers as [CenterResult, CenterResult];
  const labels = w.steps.map((s) => `${tokens(s * ctx.tps)}`);
  const findings = mechanismFindings(ctx, k, analysis, heldCk, heldMerged);
  const heat = (c: CenterResult) => ({
    kind: "heatmap" as const,
    id: c === ann ? "hessian-annealed" : "hessian-merge",
    title: `delta_i' H delta_j, theta* = ${c.name}`,
    caption: `Checkpoints by tokens seen; H at theta*, from finite differences of gradients (h = ${c.terms.h}) on ${tokens(m.hvpBatches * p.data.micro_batch * p.data.seq_len)} validation tokens.`,
    rows: labels,
    columns: labels,
    values: c.terms.matrix,
  });
  return {
    id: "mechanism",
    title: "Why merging works",
    paper:
      "Section 4.6, Eqs. 6-15 and Fig. 8: negative Hessian cross terms; loss contours with the checkpoints and the merge.",
    setup:
      `Window: the dense run's ${k} checkpoints ${tokens(p.window.intervalSteps * ctx.tps)} apart ending at ${tokens(p.denseSteps * ctx.tps)} (steps ${w.steps.join(", ")}), merged with SMA. ` +
      `theta* = the annealed model of experiment 2 at the same token count (the nearest thing to the minimum the constant-LR iterates move around, and independent of the window), ` +
      `and, for contrast, the merge itself. Hessian-vector products by central differences of gradients; the plane grid is ${m.grid}x${m.grid} points, ${tokens(m.gridTokens)} validation tokens each.`,
    findings,
    figures: [
      heat(ann),
      heat(avgC),
      {
        kind: "contour",
        id: "loss-plane",
        title: "Held-out loss on the plane of the window",
        caption: `Axes: the window's first two principal directions (${(plane.explained[0] * 100).toFixed(0)}% and ${(plane.explained[1] * 100).toFixed(0)}% of its spread), origin at the merge; ${showStar ? "the annealed model projected (it is off the plane)" : "the annealed model projects far outside this window and is not drawn"}.`,
        x: { label: "PC 1 (parameter distance)", values: xs },
        y: { label: "PC 2 (parameter distance)", values: ys },
        z,
        zLabel: "held-out loss (nats)",
        points: [
          ...plane.coords.map((c, i) => ({ x: c.x, y: c.y, label: labels[i]!, kind: "checkpoint" as const })),
          { x: 0, y: 0, label: "merge (SMA)", kind: "merge" as const },
          ...(showStar
            ? [{ x: star.x, y: star.y, label: "annealed (projected)", kind: "reference" as const }]
            : []),
        ],
      },
    ],
    tables: [
      {
        id: "mechanism",
        title: "Checkpoints of the window",
        columns: [
          "tokens",
          "held-out loss",
          "loss on HVP tokens",
          "g'delta (annealed theta*)",
          "delta'H delta (annealed theta*)",
          "delta'H delta (merge theta*)",
        ],
        rows: w.steps.map((s, i) => [
          s * ctx.tps,
          heldCk[i]!,
          batchLosses[i]!,
          ann.terms.linear[i]!,
          ann.terms.matrix[i]![i]!,
          avgC.terms.matrix[i]![i]!,
        ]),
      },
    ],
  };
}
