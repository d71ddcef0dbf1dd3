/**
 * Question 7, the induced control (section 4.5, Fig. 7 right): the spontaneous arm is
 * spike-spontaneous.ts; this one makes a spike happen where it is wanted, and the
 * report says so: the MoE run's LR is multiplied by `factor` after
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
import { readTrainingLog } from "../trajectory/logs.js";
import { detectSpikes } from "../trajectory/spikes.js";
import type { LabContext } from "./context.js";
import { delta, mean, NOISE_NATS, tokens } from "./format.js";
import type { Finding, Verdict } from "./result.js";
import type { SpikeArm } from "./spike.js";
import { checkpointDir, moeSpec, type RunOutcome, type RunSpec } from "./runs.js";
import { pmaRestart } from "./spike-restart.js";

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

/** The induced control's findings, figure and table (spike.ts joins them with the spontaneous arm's). */
export async function inducedSpike(ctx: LabContext): Promise<SpikeArm> {
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
  const init = await pmaRestart(ctx, {
    spikeDir: spiked.dir,
    // Its own checkpoints plus the MoE run's up to the fork.
    checkpoints: [
      ...(await ctx.checkpoints(moeDir)).filter((c) => c.step <= S),
      ...(await ctx.checkpoints(spiked.dir)),
    ],
    log,
    // No unrecovered spike found: restart from the checkpoints before the LR change.
    at: event === null ? { before: S + 1 } : { event },
  });
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
      id: "spike-induced-irrecoverable",
      claim:
        "(Induced control) Raising the learning rate tenfold makes the loss spike and leave its original trajectory for good.",
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
      id: "spike-induced-pma-recovers",
      claim:
        "(Induced control) Resuming from the merge of the 3 checkpoints before the induced spike, at the raised LR, gets past it and continues along the original trajectory.",
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
      id: "spike-induced-control",
      claim: "(Induced control) At the original LR the merged resume follows the original trajectory.",
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
    setup:
      `Induced control: the MoE (${p.moe.num_local_experts} experts, top-2) trained at LR ${p.lr} has its LR raised to ${high} after step ${S} (${tokens(S * ctx.tps)} tokens) ` +
      `(x${p.spike.factor}) for ${p.spike.steps} steps. ` +
      `pma init merges the 3 checkpoints before the detected spike (SMA; checkpoints every ${p.moeCheckpointEvery} steps) and keeps the latest healthy AdamW moments; ` +
      `both PMA-init resumes and both baselines see the same batches.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "spike-induced",
        title: "Training loss around the induced spike (control)",
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
        id: "spike-induced",
        title: "Induced control: after the restart",
        columns: ["run", "diverged at", "last-quarter training loss", `held-out at step ${end}`],
        rows: curves.map((c) => [c.name, c.divergedAt, tail(c), c.heldoutEnd]),
      },
    ],
  };
}
