/**
 * Question 2 (section 4.1, Figs. 2-3): does merging constant-LR checkpoints predict the
 * annealed model? The dense run is forked at T0 into its own continuation (constant LR)
 * and a cosine-annealed branch that sees exactly the same batches (pma's batches are a
 * pure function of (seed, step)); at each point after T0 the latest constant-LR
 * checkpoint, the merge of constant-LR checkpoints, the annealed checkpoint and the
 * merge along the annealed trajectory are scored.
 */
import type { LabContext } from "./context.js";
import { delta, NOISE_NATS, tokens } from "./format.js";
import { stepsBetween } from "./profile.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { annealSpec, checkpointDir, denseSpec } from "./runs.js";

export interface AnnealPoint {
  step: number;
  tokens: number;
  /** Steps since the fork over the length of the annealing. */
  progress: number;
  constant: number;
  mergedConstant: number;
  annealed: number;
  mergedAnnealed: number;
}

export async function anneal(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const { count, intervalSteps } = p.window;
  const [denseDir, annealDir] = await Promise.all([
    ctx.runs.ensure(denseSpec(p)),
    ctx.runs.ensure(annealSpec(p, ctx.store)),
  ]);
  const steps = stepsBetween(p.anneal.forkStep + p.anneal.everySteps, p.denseSteps, p.anneal.everySteps);
  const points: AnnealPoint[] = [];
  for (const [i, step] of steps.entries()) {
    ctx.progress.stage("anneal", `point ${i + 1}/${steps.length}`);
    const wc = await ctx.window(denseDir, step, count, intervalSteps);
    // The annealed run's trajectory is the dense run up to T0, then the fork.
    const wa = await ctx.window(
      [{ dir: annealDir }, { dir: denseDir, maxStep: p.anneal.forkStep }],
      step,
      count,
      intervalSteps,
    );
    points.push({
      step,
      tokens: step * ctx.tps,
      progress: (step - p.anneal.forkStep) / (p.denseSteps - p.anneal.forkStep),
      constant: await ctx.heldout(checkpointDir(denseDir, step)),
      mergedConstant: await ctx.heldout(await ctx.merged(wc.inputs)),
      annealed: await ctx.heldout(checkpointDir(annealDir, step)),
      mergedAnnealed: await ctx.heldout(await ctx.merged(wa.inputs)),
    });
  }
  const last = points.at(-1)!;
  ctx.progress.stage("anneal", "zero-shot tasks");
  const wEnd = await ctx.window(denseDir, p.denseSteps, count, intervalSteps);
  const zs = {
    annealed: await ctx.zeroShot(checkpointDir(annealDir, p.denseSteps)),
    merged: await ctx.zeroShot(await ctx.merged(wEnd.inputs)),
    constant: await ctx.zeroShot(checkpointDir(denseDir, p.denseSteps)),
  };
  const early = points.filter((q) => q.progress <= 0.5);
  const gapEnd = last.mergedConstant - last.annealed;
  const earlyWins = early.filter((q) => q.mergedConstant < q.annealed - NOISE_NATS).length;
  const endVerdict: Verdict =
    Math.abs(gapEnd) <= NOISE_NATS || gapEnd < 0
      ? "reproduced"
      : gapEnd <= 4 * NOISE_NATS
        ? "partly"
        : "not at this scale";
  const earlyVerdict: Verdict =
    early.length === 0
      ? "not at this scale"
      : earlyWins === early.length
        ? "reproduced"
        : earlyWins > 0
          ? "partly"
          : "not at this scale";
  const annealMergeGain = points.map((q) => q.annealed - q.mergedAnnealed);
  const findings: Finding[] = [
    {
      id: "anneal-early-merge-beats-annealed",
      claim:
        "Early in the annealing, the merge of constant-LR checkpoints is better than the annealed model (Fig. 3).",
      measured: `merged-constant minus annealed loss in the first half of the decay: ${early.map((q) => `${tokens(q.tokens)}: ${delta(q.mergedConstant - q.annealed)}`).join("; ") || "no point"}.`,
      verdict: earlyVerdict,
    },
    {
      id: "anneal-end-comparable",
      claim: "By the end, merging without annealing is comparable to the annealed model (Fig. 3).",
      measured:
        `at ${tokens(last.tokens)} (end of the decay): annealed ${last.annealed.toFixed(4)}, merged constant ${last.mergedConstant.toFixed(4)} ` +
        `(${delta(gapEnd)}), constant ${last.constant.toFixed(4)}.`,
      verdict: endVerdict,
      note: `Zero-shot average accuracy at the end: annealed ${(zs.annealed.average * 100).toFixed(1)}% (margin ${zs.annealed.margin.toFixed(3)}), merged constant ${(zs.merged.average * 100).toFixed(1)}% (${zs.merged.margin.toFixed(3)}), constant ${(zs.constant.average * 100).toFixed(1)}% (${zs.constant.margin.toFixed(3)}).`,
    },
    {
      id: "anneal-merging-during-decay",
      claim: "Merging during the annealing phase still helps, less as the LR gets small (Fig. 2).",
      measured: `annealed minus merged-annealed loss: ${points.map((q, i) => `${tokens(q.tokens)}: ${delta(annealMergeGain[i]!)}`).join("; ")}.`,
      verdict:
        annealMergeGain[0]! > NOISE_NATS && annealMergeGain.at(-1)! < annealMergeGain[0]!
          ? "reproduced"
          : annealMergeGain.some((g) => g > NOISE_NATS)
            ? "partly"
            : "not at this scale",
    },
  ];
  const line = (name: string, f: (q: AnnealPoint) => number, dashed = false) => ({
    name,
    points: points.map((q) => ({ x: q.tokens, y: f(q) })),
    dashed,
  });
  return {
    id: "anneal",
    title: "Merging predicts annealing",
    paper:
      "Section 4.1, Figs. 2 and 3: constant LR + merging matches a cosine-annealed model; merging during annealing.",
    setup:
      `The dense run is forked at T0 = ${tokens(p.anneal.forkStep * ctx.tps)} tokens into a cosine decay from ${p.lr} to ${p.anneal.lrMin} ` +
      `over ${tokens((p.denseSteps - p.anneal.forkStep) * ctx.tps)} tokens (same batches as the constant branch). Merges: SMA of N=${count}, V=${tokens(intervalSteps * ctx.tps)}.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "anneal",
        title: "Constant LR + merging vs cosine annealing",
        caption: `Held-out loss after the fork at ${tokens(p.anneal.forkStep * ctx.tps)} tokens.`,
        x: { label: "tokens" },
        y: { label: "held-out loss (nats)" },
        series: [
          line("constant LR", (q) => q.constant, true),
          line("constant LR, merged", (q) => q.mergedConstant),
          line("annealed", (q) => q.annealed),
          line("annealed, merged", (q) => q.mergedAnnealed),
        ],
      },
    ],
    tables: [
      {
        id: "anneal",
        title: "Held-out loss along the annealing",
        columns: ["tokens", "decay done", "constant", "constant merged", "annealed", "annealed merged"],
        rows: points.map((q) => [
          q.tokens,
          q.progress,
          q.constant,
          q.mergedConstant,
          q.annealed,
          q.mergedAnnealed,
        ]),
      },
    ],
  };
}
