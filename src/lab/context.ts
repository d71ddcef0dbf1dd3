/**
 * What every experiment module gets: the profile, the lab folder, the runs, and the
 * three operations the paper's questions are made of (all cached by content):
 *   window(run, step, N, V, method)  pma's planner: N checkpoints V tokens apart ending at step
 *   merged(inputs, method)           pma's merger, into DIR/merges/<hash>
 *   heldout(path)                    held-out loss on fixed validation windows
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { Evaluator, type EvalSplit } from "../eval/evaluate.js";
import { taskItemsFor } from "../eval/items-io.js";
import { Suite } from "../eval/suite.js";
import { MERGE_RECORD_FILE, merge } from "../merge/merger.js";
import { DEFAULT_METHOD, type MethodSpec } from "../merge/methods.js";
import { createBlasBackend, createWasmBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { planMerge, type MergePlan } from "../trajectory/plan.js";
import { discoverRun, type RunCheckpoint } from "../trajectory/run.js";
import { Slots } from "./jobs.js";
import { tokensPerStep, type LabProfile } from "./profile.js";
import type { LabProgress } from "./progress.js";
import type { LabRuns } from "./runs.js";
import { hashOf, type LabStore } from "./store.js";

export interface HeldoutOptions {
  corpus?: "brown" | "wordnet";
  split?: EvalSplit;
  /** Default: the profile's evalTokens. */
  maxTokens?: number;
}

/** A run folder's checkpoints, optionally only up to a step (a parent up to its fork). */
export interface TrajectoryPart {
  dir: string;
  maxStep?: number;
}

/** The zero-shot suite's scores of one model (src/eval/suite.ts). */
export interface ZeroShot {
  /** Mean accuracy over the tasks, and the same for a model that guesses. */
  average: number;
  chance: number;
  /** Mean log-likelihood margin over the tasks (nats): less noisy than accuracy on few items. */
  margin: number;
  tasks: Record<string, { accuracy: number; margin: number; n: number }>;
}

export interface WindowChoice {
  /** Checkpoint folders, oldest first. */
  inputs: string[];
  steps: number[];
  coefficients: number[];
  /** N actually used (the planner shrinks N when the run is too short, as the paper did). */
  count: number;
  notes: string[];
}

/** The matmul backend the parent process scores with: one thread, the children have the other core. */
export async function scoringBackend(): Promise<MatmulBackend> {
  try {
    return createBlasBackend({ threads: 1 });
  } catch {
    return createWasmBackend({ threads: 1 });
  }
}

export class LabContext {
  readonly tps: number;
  private readonly scans = new Map<string, Promise<(RunCheckpoint & { tokens: number })[]>>();
  private readonly merges = new Map<string, Promise<string>>();
  private suite: Promise<Suite> | null = null;
  /**
   * The parent's own compute (scoring, merging, the Hessian analysis): one thing at a
   * time, beside the workers rather than in their slots, so scoring never waits for a
   * training run to end (the machine briefly runs three processes on two cores).
   */
  readonly parent = new Slots(1);

  constructor(
    readonly profile: LabProfile,
    readonly store: LabStore,
    /** The two worker slots (training and fine-tuning children). */
    readonly slots: Slots,
    readonly runs: LabRuns,
    readonly progress: LabProgress,
    readonly evaluator: Evaluator,
    readonly backend: MatmulBackend,
    readonly cacheDir: string | undefined,
    readonly signal?: AbortSignal,
  ) {
    this.tps = tokensPerStep(profile);
  }

  checkAborted(): void {
    if (this.signal?.aborted === true)
      throw new PmaError("INTERRUPTED", "pma lab was stopped; rerun it to continue from what is cached");
  }

  /** The complete checkpoints of a finished run, with tokens (scanned once). */
  checkpoints(runDir: string): Promise<(RunCheckpoint & { tokens: number })[]> {
    let p = this.scans.get(runDir);
    if (p === undefined) {
      p = discoverRun(runDir).then((scan) =>
        scan.checkpoints.map((c) => {
          if (c.tokens === null) throw new PmaError("INTERNAL", `${c.path} has no token count`);
          return { ...c, tokens: c.tokens };
        }),
      );
      this.scans.set(runDir, p);
    }
    return p;
  }

  /**
   * pma's planner: N checkpoints V tokens apart ending at `step`, from one run or from a
   * fork's trajectory (the fork's folder, then its parent's up to the fork step).
   */
  async window(
    source: string | TrajectoryPart[],
    step: number,
    count: number,
    intervalSteps: number,
    method: MethodSpec = DEFAULT_METHOD,
  ): Promise<WindowChoice> {
    const pool: (RunCheckpoint & { tokens: number })[] = [];
    for (const part of typeof source === "string" ? [{ dir: source }] : source) {
      pool.push(
        ...(await this.checkpoints(part.dir)).filter(
          (c) => part.maxStep === undefined || c.step <= part.maxStep,
        ),
      );
    }
    const seen = new Set<number>();
    const unique = pool.filter((c) => (seen.has(c.step) ? false : (seen.add(c.step), true)));
    const plan: MergePlan = planMerge(unique, {
      interval: intervalSteps * this.tps,
      count,
      at: step * this.tps,
      method,
    });
    return {
      inputs: plan.selected.map((c) => c.path),
      steps: plan.selected.map((c) => c.step),
      coefficients: plan.selected.map((c) => c.coefficient),
      count: plan.count,
      notes: [...plan.notes],
    };
  }

  /** pma merge of `inputs` (oldest first) into a content-addressed folder. */
  merged(inputs: string[], method: MethodSpec = DEFAULT_METHOD): Promise<string> {
    const key = hashOf({ inputs: inputs.map((i) => this.store.rel(i)), method });
    const out = this.store.path("merges", key);
    let p = this.merges.get(out);
    if (p === undefined) {
      p = (async () => {
        if (!this.store.fresh && existsSync(join(out, MERGE_RECORD_FILE))) return out;
        await merge({ inputs, out, method, force: true, threads: 1, keepOrder: true });
        return out;
      })();
      this.merges.set(out, p);
    }
    return p;
  }

  /** Mean next-token loss (nats) on fixed evenly spaced validation windows; cached. */
  async heldout(path: string, opts: HeldoutOptions = {}): Promise<number> {
    const corpus = opts.corpus ?? "brown";
    const split = opts.split ?? "validation";
    const maxTokens = opts.maxTokens ?? this.profile.evalTokens;
    const key = `heldout|${this.store.rel(path)}|${corpus}|${split}|${maxTokens}`;
    const hit = this.store.cachedEval<number>(key);
    if (hit !== undefined) return hit;
    this.checkAborted();
    const loss = await this.parent.with(
      async () => (await this.evaluator.evaluate(path, { corpus, split, maxTokens, batch: 16 })).loss,
    );
    await this.store.putEval(key, loss);
    return loss;
  }

  /**
   * The zero-shot suite (next word, word swap, word drop on Brown's test split) on a
   * Brown-tokenizer checkpoint; cached. Items are built once, from the first checkpoint's tokenizer.
   */
  async zeroShot(path: string): Promise<ZeroShot> {
    const count = this.profile.zeroShotItems;
    const key = `zeroshot|${this.store.rel(path)}|${count}`;
    const hit = this.store.cachedEval<ZeroShot>(key);
    if (hit !== undefined) return hit;
    this.checkAborted();
    this.suite ??= taskItemsFor({
      corpus: "brown",
      tokenizer: join(path, "tokenizer.json"),
      options: { count, maxTokens: this.profile.data.seq_len },
      ...(this.cacheDir !== undefined ? { dir: this.cacheDir } : {}),
    }).then(
      (c) =>
        new Suite(c.items, {
          backend: this.backend,
          heldout: false,
          ...(this.cacheDir !== undefined ? { cacheDir: this.cacheDir } : {}),
        }),
    );
    const suite = await this.suite;
    const s = await this.parent.with(() => suite.scoreCheckpoint(path));
    const tasks = Object.fromEntries(
      Object.entries(s.tasks).map(([k, t]) => [k, { accuracy: t.accuracy, margin: t.margin, n: t.n }]),
    );
    const margins = Object.values(tasks).map((t) => t.margin);
    const value: ZeroShot = {
      average: s.average,
      chance: s.chanceAverage,
      margin: margins.reduce((a, b) => a + b, 0) / margins.length,
      tasks,
    };
    await this.store.putEval(key, value);
    return value;
  }

  /** Releases the zero-shot suite's models. */
  async close(): Promise<void> {
    if (this.suite !== null) (await this.suite.catch(() => null))?.close();
  }

  /** Scores many checkpoints, reporting progress as `experiment`. */
  async heldoutAll(experiment: string, paths: string[], opts: HeldoutOptions = {}): Promise<number[]> {
    const out: number[] = [];
    for (const [i, p] of paths.entries()) {
      this.progress.stage(experiment, `scoring ${i + 1}/${paths.length}`);
      out.push(await this.heldout(p, opts));
    }
    return out;
  }
}
