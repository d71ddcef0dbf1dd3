/**
 * Question 6 (section 4.4 / appendix 8, Table 1 and Fig. 7 left): answers-only
 * fine-tuning on WordNet question-answer pairs from the latest checkpoint (baseline)
 * and from the merge (PMA-init), at several peak LRs (cosine to a tenth). Scores:
 * held-out multiple-choice accuracy and answer loss, held-out Brown loss (what the
 * pre-training skill keeps); and how smooth the grad norm is.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LabContext, ZeroShot } from "./context.js";
import { delta, mean, median, tokens } from "./format.js";
import { downstreamInits, INIT_NAMES } from "./inits.js";
import { runInChild } from "./jobs.js";
import type { ExperimentResult, Finding, Series, Verdict } from "./result.js";
import type { SftJob, SftResult, SftStep } from "./sft-train.js";
import { hashOf, RUNS_VERSION } from "./store.js";

type InitKind = keyof typeof INIT_NAMES;

/** How jumpy a grad-norm curve is: mean |log g_t - log g_{t-1}|, and steps above 2x the running median. */
export function gradNormRoughness(steps: SftStep[]): {
  meanAbsLogChange: number;
  spikes: number;
  max: number;
} {
  const g = steps.map((s) => s.gradNorm);
  const changes = g.slice(1).map((x, i) => Math.abs(Math.log(x) - Math.log(g[i]!)));
  let spikes = 0;
  for (let i = 5; i < g.length; i++) if (g[i]! > 2 * median(g.slice(Math.max(0, i - 20), i))) spikes++;
  return { meanAbsLogChange: mean(changes), spikes, max: Math.max(...g) };
}

async function sftArm(
  ctx: LabContext,
  init: string,
  kind: InitKind,
  lr: number,
): Promise<SftResult & { kind: InitKind; lr: number; brown: number; zeroShot: ZeroShot }> {
  const p = ctx.profile;
  const base: Omit<SftJob, "out"> = {
    kind: "sft",
    init,
    lr,
    endLr: lr * p.sft.endFactor,
    warmupSteps: p.sft.warmupSteps,
    steps: p.sft.steps,
    batch: p.sft.batch,
    seq: p.sft.seq,
    seed: 7,
    questions: p.sft.questions,
  };
  const out = ctx.store.path(
    "sft",
    `${kind}-${hashOf({ v: RUNS_VERSION, ...base, init: ctx.store.rel(init) })}`,
  );
  const logFile = join(out, "sft_log.json");
  let result: SftResult;
  if (!ctx.store.fresh && existsSync(logFile)) {
    const saved = JSON.parse(await readFile(logFile, "utf8")) as {
      steps: SftStep[];
      before: SftResult["before"];
      after: SftResult["after"];
      seconds?: number;
      cpuSeconds?: number;
    };
    result = {
      out,
      steps: saved.steps,
      before: saved.before,
      after: saved.after,
      seconds: saved.seconds ?? 0,
      cpuSeconds: saved.cpuSeconds ?? 0,
    };
  } else {
    result = (await ctx.slots.with(async () => {
      ctx.checkAborted();
      const line = ctx.progress.line(`fine-tune ${INIT_NAMES[kind]} lr ${lr}`);
      try {
        const r = await runInChild(
          { ...base, out },
          (e) => e.type === "step" && line.update(`step ${e.step}/${p.sft.steps}, loss ${e.loss.toFixed(3)}`),
          ctx.signal,
        );
        return { ...(r.result as SftResult), cpuSeconds: r.cpuSeconds };
      } finally {
        line.done();
      }
    })) as SftResult;
  }
  return { ...result, kind, lr, brown: await ctx.heldout(out), zeroShot: await ctx.zeroShot(out) };
}

export async function fineTune(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const inits = await downstreamInits(ctx);
  ctx.progress.stage("fine-tune", `${p.sft.lrs.length * 2} runs`);
  const arms = await Promise.all(
    p.sft.lrs.flatMap((lr) => (["latest", "merged"] as const).map((k) => sftArm(ctx, inits[k], k, lr))),
  );
  const brownInit = { latest: await ctx.heldout(inits.latest), merged: await ctx.heldout(inits.merged) };
  const pair = (lr: number) => ({
    base: arms.find((a) => a.lr === lr && a.kind === "latest")!,
    pma: arms.find((a) => a.lr === lr && a.kind === "merged")!,
  });
  const accWins = p.sft.lrs.filter((lr) => pair(lr).pma.after.accuracy > pair(lr).base.after.accuracy).length;
  const lossWins = p.sft.lrs.filter(
    (lr) => pair(lr).pma.after.answerLoss < pair(lr).base.after.answerLoss,
  ).length;
  const rough = arms.map((a) => ({ a, r: gradNormRoughness(a.steps) }));
  const smoother = p.sft.lrs.filter((lr) => {
    const b = rough.find((x) => x.a.lr === lr && x.a.kind === "latest")!.r;
    const m = rough.find((x) => x.a.lr === lr && x.a.kind === "merged")!.r;
    return m.meanAbsLogChange < b.meanAbsLogChange;
  }).length;
  const q = arms[0]!.after.questions;
  const findings: Finding[] = [
    {
      id: "sft-scores",
      claim:
        "Fine-tuning from PMA-init scores at least as well as from the original checkpoint at the same LR (gains not consistent across setups).",
      measured:
        p.sft.lrs
          .map((lr) => {
            const { base, pma } = pair(lr);
            return (
              `lr ${lr}: accuracy ${(base.after.accuracy * 100).toFixed(1)}% -> ${(pma.after.accuracy * 100).toFixed(1)}%, answer loss ${delta(pma.after.answerLoss - base.after.answerLoss)}, ` +
              `zero-shot average ${(base.zeroShot.average * 100).toFixed(1)}% -> ${(pma.zeroShot.average * 100).toFixed(1)}%`
            );
          })
          .join("; ") +
        ` (baseline -> PMA-init, ${q} held-out 4-way questions; a difference of one question is ${(100 / q).toFixed(1)} points).`,
      verdict: ((): Verdict =>
        lossWins === p.sft.lrs.length && accWins >= p.sft.lrs.length / 2
          ? "reproduced"
          : lossWins + accWins > 0
            ? "partly"
            : "not at this scale")(),
      ...(arms.every((a) => Math.abs(a.after.accuracy - 0.25) < 0.05)
        ? {
            note: "Multiple-choice accuracy stays at chance (25%) for every arm: a model this small does not learn the meanings of held-out words from a short fine-tuning, so the answer loss is the informative score here.",
          }
        : {}),
    },
    {
      id: "sft-gradnorm-smoother",
      claim: "PMA-init gives a smoother grad norm during fine-tuning (Fig. 7 left).",
      measured:
        rough
          .map(
            ({ a, r }) =>
              `${INIT_NAMES[a.kind]} lr ${a.lr}: mean |change of log grad norm| ${r.meanAbsLogChange.toFixed(3)}, ${r.spikes} steps above 2x the running median, max ${r.max.toFixed(2)}`,
          )
          .join("; ") + ".",
      verdict: smoother === p.sft.lrs.length ? "reproduced" : smoother > 0 ? "partly" : "not at this scale",
    },
  ];
  const name = (a: { kind: InitKind; lr: number }) => `${INIT_NAMES[a.kind]} lr ${a.lr}`;
  const gn: Series[] = arms.map((a) => ({
    name: name(a),
    points: a.steps.map((s) => ({ x: s.step, y: s.gradNorm })),
  }));
  const loss: Series[] = arms.map((a) => ({
    name: name(a),
    points: a.steps.map((s, i) => ({
      x: s.step,
      y: mean(a.steps.slice(Math.max(0, i - 4), i + 1).map((r) => r.loss)),
    })),
  }));
  return {
    id: "fine-tune",
    title: "PMA-init for fine-tuning",
    paper:
      "Appendix 8, Table 1 and section 4.5, Fig. 7 left: SFT from PMA-init vs the original weights at several LRs; grad-norm stability.",
    setup:
      `Answers-only fine-tuning on WordNet question-answer pairs ('Question: what does "X" mean? Answer: <definition>') from the dense model at ` +
      `${tokens(inits.endStep * ctx.tps)} tokens (baseline) or the SMA of steps ${inits.mergedSteps.join(", ")} (PMA-init); ${p.sft.steps} steps of ` +
      `${p.sft.batch} pairs (${p.sft.seq} positions), peak LR ${p.sft.lrs.join(" / ")} with cosine to x${p.sft.endFactor}, fresh AdamW, the same pairs for both arms. ` +
      `Scored on ${q} held-out questions (synsets of WordNet's validation split) as 4-way multiple choice; Brown held-out loss before: baseline ${brownInit.latest.toFixed(4)}, PMA-init ${brownInit.merged.toFixed(4)}.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "sft-gradnorm",
        title: "Fine-tuning grad norm",
        caption: "Global gradient norm before clipping, per step.",
        x: { label: "SFT step" },
        y: { label: "grad norm" },
        series: gn,
      },
      {
        kind: "line",
        id: "sft-loss",
        title: "Fine-tuning loss",
        caption: "Answer-token training loss, mean of the last 5 steps.",
        x: { label: "SFT step" },
        y: { label: "loss (nats)" },
        series: loss,
      },
    ],
    tables: [
      {
        id: "fine-tune",
        title: "Fine-tuning scores (Table 1 analogue)",
        columns: [
          "init",
          "peak LR",
          "MC accuracy before",
          "MC accuracy after",
          "answer loss after",
          "Brown held-out after",
          "zero-shot average after",
          "grad-norm roughness",
        ],
        rows: rough.map(({ a, r }) => [
          INIT_NAMES[a.kind],
          a.lr,
          a.before.accuracy,
          a.after.accuracy,
          a.after.answerLoss,
          a.brown,
          a.zeroShot.average,
          r.meanAbsLogChange,
        ]),
      },
    ],
  };
}
