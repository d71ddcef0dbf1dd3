/**
 * The lab's training runs, each trained once and shared by every experiment that needs
 * it: the dense and MoE pre-training runs (warmup, then the long constant phase of a
 * WSD schedule), the annealed fork, the spiked fork and its restarts, the continued-
 * training runs. A run is described by a RunSpec (pma train's config overlay and where
 * it starts); its folder is named by the spec's hash, so reruns reuse it, an
 * interrupted run resumes exactly (pma's trainer resumes bit-identically), and a
 * changed spec trains a new one.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { writeFileAtomic } from "../common/atomic-dir.js";
import { isPmaError, PmaError } from "../common/errors.js";
import { runInChild, type Slots } from "./jobs.js";
import type { LabProgress } from "./progress.js";
import { tokensPerStep, type LabProfile } from "./profile.js";
import { hashOf, RUNS_VERSION, type LabStore } from "./store.js";
import type { TrainJob } from "./worker.js";

export interface RunSpec {
  /** Short name, part of the folder name: "dense", "moe-spike", ... */
  name: string;
  /** What the progress line calls it. */
  label: string;
  /** pma train config overlay (YAML sections as an object). */
  config: Record<string, unknown>;
  /** Start from a checkpoint (absolute paths inside the lab dir); absent: from scratch. */
  from?: { resume: string; optimizerFrom?: string; weightsOnly?: boolean };
  /** The run and step whose checkpoint `from.resume` is, when another lab run writes it: waited for. */
  after?: { spec: RunSpec; step: number };
  /** The step the run ends at (for progress and completeness checks). */
  endStep: number;
  /** Steps between its checkpoints (those written when an interrupted run stopped are removed at the end). */
  checkpointEvery: number;
  /**
   * A run meant to be pushed past stability (the spike experiment): a non-finite loss
   * ends it early as an outcome to report, not an error.
   */
  mayDiverge?: boolean;
}

/** What lab-run.json says about a finished run. */
export interface RunOutcome {
  dir: string;
  /** Step of the non-finite loss, when a mayDiverge run stopped there. */
  divergedAt: number | null;
  /** Wall time and CPU time of the training (when it was trained, possibly by an earlier pma lab). */
  seconds: number;
  cpuSeconds: number;
}

export const RUN_MARKER = "lab-run.json";

export function runDirOf(store: LabStore, spec: RunSpec): string {
  const from =
    spec.from === undefined
      ? null
      : {
          ...spec.from,
          resume: store.rel(spec.from.resume),
          optimizerFrom: spec.from.optimizerFrom === undefined ? null : store.rel(spec.from.optimizerFrom),
        };
  return store.path("runs", `${spec.name}-${hashOf({ v: RUNS_VERSION, config: spec.config, from })}`);
}

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, `checkpoint-${step}`);
}

/** Steps of the complete checkpoints in a run folder (written atomically: a folder is complete). */
export function checkpointSteps(runDir: string): number[] {
  if (!existsSync(runDir)) return [];
  return readdirSync(runDir)
    .flatMap((n) => {
      const m = /^checkpoint-(\d+)$/.exec(n);
      return m === null ? [] : [Number(m[1])];
    })
    .sort((a, b) => a - b);
}

/**
 * pma train config of a pre-training run of the profile's dense or MoE model. `seed`
 * sets the initialization and the batch order; seed 0's config is the one the lab always
 * had, so its runs keep their folders.
 */
export function pretrainConfig(
  p: LabProfile,
  preset: "dense" | "moe",
  steps: number,
  checkpointEvery: number,
  seed = 0,
): Record<string, unknown> {
  const tps = tokensPerStep(p);
  const model = preset === "dense" ? { preset, ...p.dense } : { preset, ...p.moe, num_experts_per_tok: 2 };
  return {
    model,
    data: { corpus: "brown", ...p.data, seed },
    training: { max_tokens: steps * tps, seed },
    // The stable phase of a WSD schedule; its decay is the annealed fork (runs.ts: annealSpec).
    schedule: { kind: "constant", lr: p.lr, warmup_tokens: p.warmupSteps * tps },
    // Checkpoints are scored by the lab on fixed windows; no in-run validation needed.
    eval: { every_tokens: 0 },
    checkpointing: { every_tokens: checkpointEvery * tps, dtype: "f32" },
    log: { history_every_steps: 10 },
  };
}

/** Seed 0 keeps the plain name and label; other seeds say theirs. */
function seeded(name: string, label: string, seed: number): { name: string; label: string } {
  return seed === 0 ? { name, label } : { name: `${name}-seed${seed}`, label: `${label}, seed ${seed}` };
}

export function denseSpec(p: LabProfile, seed = 0): RunSpec {
  return {
    ...seeded("dense", "dense pre-training", seed),
    config: pretrainConfig(p, "dense", p.denseSteps, p.denseCheckpointEvery, seed),
    endStep: p.denseSteps,
    checkpointEvery: p.denseCheckpointEvery,
  };
}

export function moeSpec(p: LabProfile, seed = 0): RunSpec {
  return {
    ...seeded("moe", "MoE pre-training", seed),
    config: pretrainConfig(p, "moe", p.moeSteps, p.moeCheckpointEvery, seed),
    endStep: p.moeSteps,
    checkpointEvery: p.moeCheckpointEvery,
  };
}

/** The WSD decay: a fork of the dense run at anneal.forkStep, cosine to lrMin by the dense run's end. */
export function annealSpec(p: LabProfile, store: LabStore): RunSpec {
  const tps = tokensPerStep(p);
  const dense = runDirOf(store, denseSpec(p));
  return {
    name: "dense-anneal",
    label: "dense annealed fork",
    config: {
      schedule: {
        kind: "cosine",
        lr: p.lr,
        lr_min: p.anneal.lrMin,
        warmup_tokens: 0,
        decay_tokens: (p.denseSteps - p.anneal.forkStep) * tps,
      },
    },
    from: { resume: checkpointDir(dense, p.anneal.forkStep) },
    after: { spec: denseSpec(p), step: p.anneal.forkStep },
    endStep: p.denseSteps,
    checkpointEvery: p.denseCheckpointEvery,
  };
}

export interface RunEvents {
  onStep?(step: number): void;
}

/** Trains runs on demand, once each; concurrent requests for the same run share one training. */
export class LabRuns {
  private readonly inFlight = new Map<string, Promise<RunOutcome>>();

  constructor(
    private readonly store: LabStore,
    private readonly slots: Slots,
    private readonly progress: LabProgress,
    private readonly signal?: AbortSignal,
    /** Tokenizer and token cache of the training children (default theirs: $PMA_CACHE_DIR or ~/.cache/pma). */
    private readonly cacheDir?: string,
  ) {}

  /** The runs this object trained or found complete, with the seconds their training took. */
  async trained(): Promise<{ name: string; seconds: number; cpuSeconds: number }[]> {
    const out: { name: string; seconds: number; cpuSeconds: number }[] = [];
    for (const [dir, p] of this.inFlight) {
      const o = await p.catch(() => null);
      if (o !== null) out.push({ name: basename(dir), seconds: o.seconds, cpuSeconds: o.cpuSeconds });
    }
    return out;
  }

  dirOf(spec: RunSpec): string {
    return runDirOf(this.store, spec);
  }

  /** The run's folder once it is complete (training it, or finishing it, first). */
  async ensure(spec: RunSpec): Promise<string> {
    return (await this.outcome(spec)).dir;
  }

  outcome(spec: RunSpec): Promise<RunOutcome> {
    const dir = this.dirOf(spec);
    let p = this.inFlight.get(dir);
    if (p === undefined) {
      p = this.train(spec, dir);
      this.inFlight.set(dir, p);
    }
    return p;
  }

  /**
   * A checkpoint of a run, as soon as it exists: a fork can start while its parent is
   * still training past the fork point.
   */
  async checkpoint(spec: RunSpec, step: number): Promise<string> {
    const dir = this.dirOf(spec);
    const path = checkpointDir(dir, step);
    const done = this.outcome(spec);
    let finished = false;
    void done.then(
      () => (finished = true),
      () => (finished = true),
    );
    while (!existsSync(path)) {
      if (finished) {
        await done; // rethrows a failure
        if (!existsSync(path))
          throw new PmaError(
            "INTERNAL",
            `${spec.label} finished without a checkpoint at step ${step} (${dir})`,
          );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return path;
  }

  private async complete(dir: string): Promise<RunOutcome | null> {
    if (this.store.fresh || !existsSync(join(dir, RUN_MARKER))) return null;
    try {
      const m = JSON.parse(await readFile(join(dir, RUN_MARKER), "utf8")) as {
        complete?: boolean;
        divergedAt?: number | null;
        seconds?: number;
        cpuSeconds?: number;
      };
      return m.complete === true
        ? { dir, divergedAt: m.divergedAt ?? null, seconds: m.seconds ?? 0, cpuSeconds: m.cpuSeconds ?? 0 }
        : null;
    } catch {
      return null;
    }
  }

  private async train(spec: RunSpec, dir: string): Promise<RunOutcome> {
    const known = await this.complete(dir);
    if (known !== null) return known;
    if (spec.after !== undefined) await this.checkpoint(spec.after.spec, spec.after.step);
    if (spec.from !== undefined && !existsSync(spec.from.resume))
      throw new PmaError("INTERNAL", `${spec.label}: start checkpoint ${spec.from.resume} does not exist`);
    // A fresh lab, or a folder with no checkpoint yet, starts over; otherwise the
    // trainer resumes the interrupted run from its latest checkpoint, exactly.
    const resumable = !this.store.fresh && checkpointSteps(dir).length > 0;
    const cache = this.cacheDir !== undefined ? { cacheDir: this.cacheDir } : {};
    const job: TrainJob = resumable
      ? { kind: "train", resume: dir, ...cache }
      : { kind: "train", config: spec.config, out: dir, force: true, ...(spec.from ?? {}), ...cache };
    if (!resumable && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    let t0 = performance.now();
    let divergedAt: number | null = null;
    let lastStep = 0;
    let cpu = 0;
    await this.slots.with(async () => {
      // Jobs queued behind a Ctrl-C do not start.
      if (this.signal?.aborted === true) return;
      // Timed from here: the wait for a slot is not the run's cost.
      t0 = performance.now();
      const line = this.progress.line(spec.label);
      try {
        const r = await runInChild(
          job,
          (e) => {
            if (e.type === "step") {
              lastStep = e.step;
              line.update(`step ${e.step}/${spec.endStep}, loss ${e.loss.toFixed(3)}`);
            }
          },
          this.signal,
        );
        cpu = r.cpuSeconds;
      } catch (e) {
        if (!(spec.mayDiverge === true && isPmaError(e, "NONFINITE"))) throw e;
        divergedAt = lastStep + 1;
      } finally {
        line.done();
      }
    });
    if (this.signal?.aborted === true)
      throw new PmaError(
        "INTERRUPTED",
        `stopped while training ${spec.label}; rerun pma lab to continue where it stopped`,
      );
    const last = checkpointSteps(dir).at(-1);
    if (divergedAt === null && last !== spec.endStep)
      throw new PmaError(
        "INTERNAL",
        `${spec.label} stopped at step ${last ?? "none"} instead of ${spec.endStep} (${dir})`,
      );
    // An interrupted run saved a checkpoint where it stopped; off the run's grid, it would
    // make the checkpoint spacing uneven for the planner and PMA-init. The resumed run is
    // bit-identical, so the grid's checkpoints are all there is to keep.
    for (const step of checkpointSteps(dir)) {
      if (step % spec.checkpointEvery !== 0 && step !== spec.endStep && step !== divergedAt)
        rmSync(checkpointDir(dir, step), { recursive: true, force: true });
    }
    const seconds = (performance.now() - t0) / 1000;
    await writeFileAtomic(
      join(dir, RUN_MARKER),
      JSON.stringify({ complete: true, divergedAt, seconds, cpuSeconds: cpu, spec }, null, 1) + "\n",
    );
    return { dir, divergedAt, seconds, cpuSeconds: cpu };
  }
}
