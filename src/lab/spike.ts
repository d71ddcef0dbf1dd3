/**
 * Question 7 (section 4.5, Fig. 7 right): recovering from a loss spike with PMA-init.
 *
 * The lab notes found no spontaneous irrecoverable spike in MoE models of this size at
 * high constant LRs (router collapse and slow learning instead), so the spike is
 * induced, and the report says so: the MoE run's LR is multiplied by `factor` after
 * step S (a fork of the MoE run, same batches). pma init then finds the spike in that
 * run's log and merges the 3 checkpoints before it (PMA-init, paper: "three checkpoints
 * saved before the training collapse"), and training resumes from the merge:
 *   - at the raised LR: is the merge alone enough to get past the spike? The baseline
 *     is the resume from the last checkpoint before the spike at the same LR, which,
 *     batches being a pure function of the step, is the spiked run itself, bit for bit;
 *   - at the original LR: does the merged resume follow the original trajectory? The
 *     baseline here (last checkpoint, original LR) is the original MoE run itself.
 * Both PMA arms keep the latest healthy checkpoint's AdamW moments (pma init's default),
 * as the baselines do, so the only difference is the weights.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { INIT_RECORD_FILE, pmaInit, type InitRecord } from "../trajectory/init.js";
import { readTrainingLog, type TrainingLog } from "../trajectory/logs.js";
import type { RunScan } from "../trajectory/run.js";
import { detectSpikes, type SpikeEvent } from "../trajectory/spikes.js";
import type { LabContext } from "./context.js";
import { delta, mean, NOISE_NATS, tokens } from "./format.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { checkpointDir, moeSpec, type RunOutcome, type RunSpec } from "./runs.js";
import { hashOf } from "./store.js";

function forkSpec(ctx: LabContext, name: string, label: string, from: string, lr: number): RunSpec {
  const p = ctx.profile;
  return {
    name,
    label,
    config: {
      schedule: { kind: "constant", lr, warmup_tokens: 0 },
      training: { max_tokens: (p.spike.atStep + p.spike.steps) * ctx.tps },
    },
    from: { resume: from },
    endStep: p.spike.atStep + p.spike.steps,
    checkpointEvery: p.moeCheckpointEvery,
    mayDiverge: true,
  };
}

interface Curve {
  name: string;
  steps: { step: number; loss: number }[];
  heldoutEnd: number | null;
  divergedAt: number | null;
}

async function curve(
  ctx: LabContext,
  name: string,
  outcome: RunOutcome,
  from: number,
  to: number,
): Promise<Curve> {
  const log = await readTrainingLog(outcome.dir);
  const steps = log.points
    .filter((q) => q.step > from && q.step <= to && q.loss !== undefined)
    .map((q) => ({ step: q.step, loss: q.loss! }));
  const end = checkpointDir(outcome.dir, to);
  return {
    name,
    steps,
    heldoutEnd: existsSync(end) ? await ctx.heldout(end) : null,
    divergedAt: outcome.divergedAt,
  };
}

/** PMA-init for the spiked run: its own checkpoints plus the MoE run's up to the fork, and its log. */
async function restart(
  ctx: LabContext,
  moeDir: string,
  spikeDir: string,
  log: TrainingLog,
  event: SpikeEvent | null,
): Promise<InitRecord> {
  const p = ctx.profile;
  const out = ctx.store.path(
    "restarts",
    hashOf({ spike: ctx.store.rel(spikeDir), before: event?.onsetStep ?? null }),
  );
  const moe = (await ctx.checkpoints(moeDir)).filter((c) => c.step <= p.spike.atStep);
  const own = await ctx.checkpoints(spikeDir);
  const scan: RunScan = {
    dir: spikeDir,
    checkpoints: [...moe, ...own].sort((a, b) => a.step - b.step),
    skipped: [],
  };
  if (!ctx.store.fresh && existsSync(out)) {
    for (const name of await readdir(out)) {
      const rec = join(out, name, INIT_RECORD_FILE);
      if (existsSync(rec)) return JSON.parse(await readFile(rec, "utf8")) as InitRecord;
    }
  }
  return pmaInit({
    run: spikeDir,
    out,
    scan,
    trainingLog: log,
    count: 3,
    force: true,
    threads: 1,
    // No unrecovered spike found: restart from the checkpoints before the LR change.
    ...(event === null ? { before: p.spike.atStep + 1 } : { event }),
  });
}

export async function spike(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const S = p.spike.atStep;
  const end = S + p.spike.steps;
  const high = p.lr * p.spike.factor;
  const moe = moeSpec(p);
  const moeCkpt = await ctx.runs.checkpoint(moe, S);
  ctx.progress.stage("spike", `LR x${p.spike.factor} after step ${S}`);
  const spiked = await ctx.runs.outcome(
    forkSpec(ctx, "moe-spike", `MoE LR x${p.spike.factor}`, moeCkpt, high),
  );
  const moeDir = await ctx.runs.ensure(moe);
  const log = await readTrainingLog(spiked.dir);
  const report = detectSpikes(log);
  const event =
    [...report.events].reverse().find((e) => e.startStep > S && (e.kind === "divergence" || e.ongoing)) ??
    null;
  ctx.progress.stage("spike", "PMA-init");
  const init = await restart(ctx, moeDir, spiked.dir, log, event);
  const [pmaHigh, pmaBase] = await Promise.all([
    ctx.runs.outcome(
      forkSpec(ctx, "moe-pma-high", `MoE PMA-init LR x${p.spike.factor}`, init.checkpoint, high),
    ),
    ctx.runs.outcome(forkSpec(ctx, "moe-pma-base", "MoE PMA-init original LR", init.checkpoint, p.lr)),
  ]);
  const from = init.step;
  // The original run is drawn from a little before the restart, for context.
  const before = Math.max(0, from - 2 * p.moeCheckpointEvery);
  const curves = [
    await curve(
      ctx,
      "original (LR unchanged)",
      { dir: moeDir, divergedAt: null, seconds: 0, cpuSeconds: 0 },
      before,
      end,
    ),
    await curve(ctx, `spiked, LR x${p.spike.factor} (= last-checkpoint resume)`, spiked, from, end),
    await curve(ctx, `PMA-init, LR x${p.spike.factor}`, pmaHigh, from, end),
    await curve(ctx, "PMA-init, original LR", pmaBase, from, end),
  ];
  const [orig, spk, pHigh, pBase] = curves as [Curve, Curve, Curve, Curve];
  const tail = (c: Curve) =>
    mean(
      c.steps
        .filter((q) => q.step > from)
        .slice(-Math.max(1, Math.floor((end - from) / 4)))
        .map((q) => q.loss),
    );
  const preLoss = mean(
    log.points.filter((q) => q.step > S - 10 && q.step <= S && q.loss !== undefined).map((q) => q.loss!),
  );
  const spikeFound = event !== null;
  const recovered = (c: Curve) => c.divergedAt === null && tail(c) <= tail(orig) + 0.1;
  const findings: Finding[] = [
    {
      id: "spike-irrecoverable",
      claim:
        "A learning rate that is too high makes the loss spike and leave its original trajectory for good (induced here; see setup).",
      measured:
        `peak training loss after the LR x${p.spike.factor}: ${Math.max(...spk.steps.map((q) => q.loss)).toFixed(3)} (before: ${preLoss.toFixed(3)}); ` +
        `last-quarter mean: spiked ${tail(spk).toFixed(3)} vs original ${tail(orig).toFixed(3)} (${delta(tail(spk) - tail(orig))})` +
        `${spk.divergedAt !== null ? `; the loss went non-finite at step ${spk.divergedAt}` : ""}. ` +
        (spikeFound
          ? `pma's detector: ${event.kind === "divergence" ? "a divergence" : "a spike still open at the end of the log"} from step ${event.startStep}.`
          : `pma's detector ${report.events.length === 0 ? "finds no spike event" : `calls it a transient (back within its band of the pre-spike level ${report.events.at(-1)!.level.toFixed(3)} at step ${report.events.at(-1)!.endStep})`}: ` +
            "its band follows the run's own trailing median, which while the loss still falls fast sits above where the original run has since gone; PMA-init then restarts from the checkpoints before the LR change."),
      verdict:
        spk.divergedAt !== null || tail(spk) - tail(orig) > 0.1
          ? "reproduced"
          : tail(spk) - tail(orig) > 2 * NOISE_NATS
            ? "partly"
            : "not at this scale",
    },
    {
      id: "spike-pma-recovers",
      claim:
        "Resuming from the merge of the 3 checkpoints before the spike gets past it and continues along the original trajectory (same LR as the spiked run).",
      measured:
        `merged steps ${init.checkpoints.map((c) => c.step).join(", ")}; last-quarter training loss at LR x${p.spike.factor}: PMA-init ${tail(pHigh).toFixed(3)}, last checkpoint (spiked run) ${tail(spk).toFixed(3)}, original ${tail(orig).toFixed(3)}` +
        `${pHigh.divergedAt !== null ? `; PMA-init went non-finite at step ${pHigh.divergedAt}` : ""}; held-out at step ${end}: PMA-init ${pHigh.heldoutEnd?.toFixed(4) ?? "n/a"}, spiked ${spk.heldoutEnd?.toFixed(4) ?? "n/a"}, original ${orig.heldoutEnd?.toFixed(4) ?? "n/a"}.`,
      verdict: ((): Verdict => {
        if (recovered(pHigh)) return "reproduced";
        if (pHigh.divergedAt === null && tail(pHigh) < tail(spk) - 0.05) return "partly";
        return "not at this scale";
      })(),
    },
    {
      id: "spike-control",
      claim: "(Control) At the original LR the merged resume follows the original trajectory.",
      measured: `held-out at step ${end}: PMA-init ${pBase.heldoutEnd?.toFixed(4) ?? "n/a"} vs original ${orig.heldoutEnd?.toFixed(4) ?? "n/a"} (${pBase.heldoutEnd !== null && orig.heldoutEnd !== null ? delta(pBase.heldoutEnd - orig.heldoutEnd) : "n/a"}).`,
      verdict:
        pBase.heldoutEnd !== null &&
        orig.heldoutEnd !== null &&
        pBase.heldoutEnd <= orig.heldoutEnd + NOISE_NATS
          ? "reproduced"
          : "not at this scale",
    },
  ];
  return {
    id: "spike",
    title: "Loss-spike recovery with PMA-init",
    paper:
      "Section 4.5, Fig. 7 right: an MoE at too high an LR spikes irrecoverably; resuming from PMA-init of the 3 checkpoints before the spike recovers.",
    setup:
      `MoE (${p.moe.num_local_experts} experts, top-2) trained at LR ${p.lr}; the spike is INDUCED: after step ${S} (${tokens(S * ctx.tps)} tokens) the LR is raised to ${high} ` +
      `(x${p.spike.factor}) for ${p.spike.steps} steps, since no spontaneous irrecoverable spike occurs at this scale (lab notes: router collapse instead). ` +
      `pma init merges the 3 checkpoints before the detected spike (SMA; checkpoints every ${p.moeCheckpointEvery} steps) and keeps the latest healthy AdamW moments; ` +
      `both PMA-init resumes and both baselines see the same batches.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "spike",
        title: "Training loss around the induced spike",
        caption: `Training loss per step after step ${from}; the spiked run is also the resume from the last checkpoint at the raised LR.`,
        x: { label: "step" },
        y: { label: "training loss (nats)" },
        series: curves.map((c, i) => ({
          name: c.name,
          points: c.steps.map((q) => ({ x: q.step, y: q.loss })),
          dashed: i === 0,
        })),
      },
    ],
    tables: [
      {
        id: "spike",
        title: "After the restart",
        columns: ["run", "diverged at", "last-quarter training loss", `held-out at step ${end}`],
        rows: curves.map((c) => [c.name, c.divergedAt, tail(c), c.heldoutEnd]),
      },
    ],
  };
}
