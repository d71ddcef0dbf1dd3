/**
 * Question 7, the spontaneous arm: the paper's spike was not provoked, so here runs are
 * trained from scratch at a constant LR high enough for the loss to spike by itself
 * (profile.spontaneous; bench/spike-sweep.ts is the sweep that chose it), over seeds.
 * For each seed pma's detector finds the spike in the run's log; PMA-init merges the 3
 * checkpoints before it and training resumes at the same LR on the same batches. The
 * baseline, resuming from the last checkpoint before the spike at that LR, is the
 * spiked run itself bit for bit (batches are a pure function of the step and pma's
 * resume is exact), so it is not trained again. The logit monitors say which
 * instability fired (spike-monitors.ts).
 */
import { isPmaError } from "../common/errors.js";
import type { InitRecord } from "../trajectory/init.js";
import { readTrainingLog } from "../trajectory/logs.js";
import { detectSpikes, type SpikeEvent } from "../trajectory/spikes.js";
import type { LabContext } from "./context.js";
import { mean, tokens } from "./format.js";
import type { Finding, Series, Verdict } from "./result.js";
import { denseSpec, moeSpec, pretrainConfig, type RunOutcome, type RunSpec } from "./runs.js";
import type { SpikeArm } from "./spike.js";
import { readMechanism, readMonitors, type MechanismReading, type MonitorPoint } from "./spike-monitors.js";
import { pmaRestart } from "./spike-restart.js";

/** Seed k's run, from scratch at the spontaneous arm's LR. */
function spontaneousSpec(ctx: LabContext, seed: number): RunSpec {
  const p = ctx.profile;
  const s = p.spontaneous;
  const base = pretrainConfig(p, s.preset, s.steps, s.checkpointEvery, seed);
  return {
    name: `${s.preset}-lr${s.lr}${seed === 0 ? "" : `-seed${seed}`}`,
    label: `${s.preset} at LR ${s.lr}, seed ${seed}`,
    config: {
      ...base,
      schedule: { kind: "constant", lr: s.lr, warmup_tokens: s.warmupSteps * ctx.tps },
      ...(s.optimizer === undefined ? {} : { optimizer: s.optimizer }),
    },
    endStep: s.steps,
    checkpointEvery: s.checkpointEvery,
    mayDiverge: true,
  };
}

/** The PMA-init resume: same LR, same batches, to the run's end. */
function resumeSpec(ctx: LabContext, seed: number, from: string): RunSpec {
  const s = ctx.profile.spontaneous;
  return {
    name: `${s.preset}-lr${s.lr}-pma-init${seed === 0 ? "" : `-seed${seed}`}`,
    label: `PMA-init at LR ${s.lr}, seed ${seed}`,
    config: {
      schedule: { kind: "constant", lr: s.lr, warmup_tokens: 0 },
      training: { max_tokens: s.steps * ctx.tps },
      ...(s.optimizer === undefined ? {} : { optimizer: s.optimizer }),
    },
    from: { resume: from },
    endStep: s.steps,
    checkpointEvery: s.checkpointEvery,
    mayDiverge: true,
  };
}

interface SeedResult {
  seed: number;
  run: RunOutcome;
  monitors: MonitorPoint[];
  /** The first spike that did not end (a divergence, or still open at the end of the log). */
  event: SpikeEvent | null;
  /** Spikes the run came back from. */
  transients: number;
  mechanism: MechanismReading | null;
  init: InitRecord | null;
  /** Why there is no restart although there is a spike (too few checkpoints before it). */
  noRestart: string | null;
  resumed: RunOutcome | null;
  resumedMonitors: MonitorPoint[];
  /** Irrecoverable spikes the resume ran into after the restart. */
  resumedSpikes: number;
}

async function runSeed(ctx: LabContext, seed: number): Promise<SeedResult> {
  const s = ctx.profile.spontaneous;
  const run = await ctx.runs.outcome(spontaneousSpec(ctx, seed));
  const log = await readTrainingLog(run.dir);
  const report = detectSpikes(log);
  const event = report.events.find((e) => e.kind === "divergence" || e.ongoing) ?? null;
  const monitors = await readMonitors(run.dir);
  const base: SeedResult = {
    seed,
    run,
    monitors,
    event,
    transients: report.events.filter((e) => e.kind === "transient" && !e.ongoing).length,
    mechanism: event === null ? null : readMechanism(monitors, event.onsetStep, 2 * s.checkpointEvery),
    init: null,
    noRestart: null,
    resumed: null,
    resumedMonitors: [],
    resumedSpikes: 0,
  };
  if (event === null) return base;
  let init: InitRecord;
  try {
    init = await pmaRestart(ctx, {
      spikeDir: run.dir,
      checkpoints: await ctx.checkpoints(run.dir),
      log,
      at: { event },
    });
  } catch (e) {
    // pma init says why it cannot restart (no healthy checkpoint before the spike) with a
    // USAGE error; anything else (I/O, a failed merge) is a real failure of the lab.
    if (!isPmaError(e, "USAGE")) throw e;
    return { ...base, noRestart: e.message.split("\n")[0]! };
  }
  const resumed = await ctx.runs.outcome(resumeSpec(ctx, seed, init.checkpoint));
  const again = detectSpikes(await readTrainingLog(resumed.dir)).events.filter(
    (e) => e.startStep > init.step && (e.kind === "divergence" || e.ongoing),
  );
  return {
    ...base,
    init,
    resumed,
    resumedMonitors: (await readMonitors(resumed.dir)).filter((q) => q.step > init.step),
    resumedSpikes: again.length,
  };
}

/** Mean finite training loss over the last quarter of (from, end]. */
function tail(points: MonitorPoint[], from: number, end: number): number {
  const span = points.filter((q) => q.step > from && q.step <= end);
  const last = span.slice(-Math.max(1, Math.floor((end - from) / 4)));
  const finite = last.flatMap((q) => (q.loss === null ? [] : [q.loss]));
  return finite.length === last.length && finite.length > 0 ? mean(finite) : Infinity;
}

const f3 = (x: number | null | undefined): string =>
  x === null || x === undefined ? "n/a" : Number.isFinite(x) ? x.toFixed(3) : String(x);
/** The attention figure has a log axis: a non-positive maximum (possible at initialisation) is left out. */
const positiveAttn = (q: MonitorPoint): number | null => (q.attn !== null && q.attn > 0 ? q.attn : null);
const f1 = (x: number | null): string => (x === null ? "n/a" : x.toFixed(1));

function series(
  name: string,
  points: MonitorPoint[],
  pick: (q: MonitorPoint) => number | null,
  dashed: boolean,
): Series {
  return {
    name,
    points: points.flatMap((q) => {
      const y = pick(q);
      return y === null ? [] : [{ x: q.step, y }];
    }),
    dashed,
  };
}

export async function spontaneousSpike(ctx: LabContext): Promise<SpikeArm> {
  const p = ctx.profile;
  const s = p.spontaneous;
  ctx.progress.stage("spike", `spontaneous: ${s.preset} at LR ${s.lr}, ${s.seeds} seed(s)`);
  const seeds = await Promise.all(Array.from({ length: s.seeds }, (_, k) => runSeed(ctx, k)));
  const spiked = seeds.filter((r) => r.event !== null);
  const restarted = spiked.filter((r) => r.init !== null && r.resumed !== null);
  const outcome = (r: SeedResult) => {
    const from = r.init!.step;
    const spikedTail = tail(r.monitors, from, s.steps);
    const pmaTail = r.resumed!.divergedAt !== null ? Infinity : tail(r.resumedMonitors, from, s.steps);
    const recovered =
      r.resumedSpikes === 0 && pmaTail <= r.event!.level + 0.05 && pmaTail < spikedTail - 0.05;
    return { from, spikedTail, pmaTail, recovered };
  };
  const outcomes = restarted.map(outcome);
  const outcomeOf = new Map(restarted.map((r, i) => [r, outcomes[i]!]));
  const irrecoverable: Verdict =
    spiked.length * 2 >= seeds.length ? "reproduced" : spiked.length > 0 ? "partly" : "not at this scale";
  const recoveredCount = outcomes.filter((o) => o.recovered).length;
  const better = outcomes.filter((o) => o.pmaTail < o.spikedTail - 0.05).length;
  const recovers: Verdict =
    restarted.length === 0
      ? "not at this scale"
      : recoveredCount === restarted.length
        ? "reproduced"
        : recoveredCount > 0 || better * 2 > restarted.length
          ? "partly"
          : "not at this scale";
  const eventText = (r: SeedResult) =>
    r.event === null
      ? `seed ${r.seed}: no spike it did not recover from` +
        (r.transients > 0 ? ` (${r.transients} transient spike(s))` : "") +
        (r.run.divergedAt !== null ? `, but the loss went non-finite at step ${r.run.divergedAt}` : "")
      : `seed ${r.seed}: ${r.event.kind === "divergence" ? "divergence" : "spike open at the end"} from step ${r.event.onsetStep} (level ${f3(r.event.level)}, peak ${f3(r.event.peakLoss)}); ` +
        `${r.mechanism!.verdict} (attention-logit max ${f1(r.mechanism!.before.attn)} at step ${r.mechanism!.before.step} -> ${f1(r.mechanism!.onset.attn)} at ${r.mechanism!.onset.step}; ` +
        `log Z ${f3(r.mechanism!.before.logZ)} -> ${f3(r.mechanism!.onset.logZ)})`;
  const findings: Finding[] = [
    {
      id: "spike-irrecoverable",
      claim:
        "At a learning rate that is too high, the loss spikes by itself and does not return to its trajectory (spontaneous, as in the paper).",
      measured: `${spiked.length} of ${seeds.length} seeds at LR ${s.lr}: ${seeds.map(eventText).join("; ")}.`,
      verdict: irrecoverable,
      note: "Spikes are found by pma's detector (trailing median + k*MAD band; a divergence is a spike the loss does not come back from). The monitors are the largest attention logit and the mean log Z of the output (Wortsman et al., 2023).",
    },
    {
      id: "spike-pma-recovers",
      claim:
        "Resuming from the merge of the 3 checkpoints before the spike, at the same LR, gets past it (PMA-init), where resuming from the last checkpoint does not.",
      measured:
        restarted.length === 0
          ? spiked.length === 0
            ? "no spontaneous spike to restart from."
            : `no restart: ${spiked.map((r) => r.noRestart).join("; ")}.`
          : restarted
              .map((r, i) => {
                const o = outcomes[i]!;
                return (
                  `seed ${r.seed}: merged steps ${r.init!.checkpoints.map((c) => c.step).join(", ")}; last-quarter training loss to step ${s.steps}: ` +
                  `PMA-init ${f3(o.pmaTail)} vs last checkpoint (the spiked run) ${f3(o.spikedTail)}, pre-spike level ${f3(r.event!.level)}` +
                  (r.resumed!.divergedAt !== null
                    ? `; PMA-init went non-finite at step ${r.resumed!.divergedAt}`
                    : "") +
                  (r.resumedSpikes > 0 ? `; PMA-init spiked again` : "") +
                  (o.recovered ? " (recovered)" : "")
                );
              })
              .join("; ") + ".",
      verdict: recovers,
    },
  ];
  const lossSeries: Series[] = [];
  const attnSeries: Series[] = [];
  const logZSeries: Series[] = [];
  for (const r of seeds) {
    lossSeries.push(series(`seed ${r.seed}`, r.monitors, (q) => q.loss, r.event !== null));
    attnSeries.push(series(`seed ${r.seed}`, r.monitors, positiveAttn, r.event !== null));
    logZSeries.push(series(`seed ${r.seed}`, r.monitors, (q) => q.logZ, r.event !== null));
    if (r.resumed !== null) {
      lossSeries.push(series(`seed ${r.seed}, PMA-init`, r.resumedMonitors, (q) => q.loss, false));
      attnSeries.push(series(`seed ${r.seed}, PMA-init`, r.resumedMonitors, positiveAttn, false));
      logZSeries.push(series(`seed ${r.seed}, PMA-init`, r.resumedMonitors, (q) => q.logZ, false));
    }
  }
  // The lab's own run of the same model at the profile's LR, for scale (its monitors are
  // absent when it was trained by a pma that did not log them).
  const reference = await readMonitors(await ctx.runs.ensure(s.preset === "moe" ? moeSpec(p) : denseSpec(p)));
  const refName = `LR ${p.lr} (the lab's ${s.preset === "moe" ? "MoE" : "dense"} run, seed 0)`;
  lossSeries.push(series(refName, reference, (q) => q.loss, true));
  attnSeries.push(series(refName, reference, positiveAttn, true));
  logZSeries.push(series(refName, reference, (q) => q.logZ, true));
  const caption = `Runs at LR ${s.lr} (dashed where the loss spiked and did not recover), their PMA-init resumes at the same LR, and the lab's run at LR ${p.lr} (dashed, for scale).`;
  return {
    setup:
      `Spontaneous: ${s.preset === "moe" ? `MoE (${p.moe.num_local_experts} experts, top-2)` : "dense"} runs from scratch at a constant LR ${s.lr} after ${s.warmupSteps} warmup steps ` +
      `(${s.seeds} seeds, ${s.steps} steps, ${tokens(s.steps * ctx.tps)} tokens, checkpoints every ${s.checkpointEvery} steps` +
      `${s.optimizer === undefined ? "" : `, AdamW ${JSON.stringify(s.optimizer)}`}); pma init merges the 3 checkpoints before the detected spike ` +
      `and keeps the latest healthy AdamW moments; the resume sees the same batches at the same LR.`,
    findings,
    figures: [
      {
        kind: "line",
        id: "spike-spontaneous",
        title: "Training loss at a too-high LR, and PMA-init",
        caption,
        x: { label: "step" },
        y: { label: "training loss (nats)" },
        series: lossSeries,
      },
      {
        kind: "line",
        id: "spike-attention-logits",
        title: "Largest attention logit (q.k/sqrt(d)) per step",
        caption: `${caption} Growth here is the attention-logit instability.`,
        x: { label: "step" },
        y: { label: "attention-logit max", log: true },
        series: attnSeries,
      },
      {
        kind: "line",
        id: "spike-output-logz",
        title: "Mean log Z of the output softmax per step",
        caption: `${caption} A drift here is the output-logit divergence that z-loss prevents.`,
        x: { label: "step" },
        y: { label: "mean log Z (nats)" },
        series: logZSeries,
      },
    ],
    tables: [
      {
        id: "spike-spontaneous",
        title: "Spontaneous spikes, per seed",
        columns: [
          "seed",
          "spike onset (step)",
          "pre-spike level",
          "peak loss",
          "mechanism",
          "PMA-init from step",
          "last-quarter loss: last checkpoint",
          "last-quarter loss: PMA-init",
        ],
        rows: seeds.map((r) => {
          const o = outcomeOf.get(r) ?? null;
          return [
            r.seed,
            r.event?.onsetStep ?? null,
            r.event?.level ?? null,
            r.event === null
              ? null
              : Number.isFinite(r.event.peakLoss)
                ? r.event.peakLoss
                : String(r.event.peakLoss),
            r.mechanism?.verdict ?? null,
            r.init?.step ?? null,
            o?.spikedTail ?? null,
            o === null ? null : Number.isFinite(o.pmaTail) ? o.pmaTail : "diverged",
          ];
        }),
      },
    ],
  };
}
