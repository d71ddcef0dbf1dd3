/**
 * The zero-shot suite: held-out loss and perplexity on the validation and test splits,
 * next-word prediction (LAMBADA-style), two grammaticality minimal-pair tasks
 * (BLiMP-style), and their average, for any checkpoint folder or in-memory weights.
 *
 * A Suite holds the items' score plan (built once), one parameter set per model shape
 * and the models reading it, and the tokenised held-out splits, so scoring a run's
 * fifty checkpoints and their merges pays only for reading weights and forward passes.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { sameConfig, type ModelConfig } from "../nn/config.js";
import { describeBackend, getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel, type Model } from "../nn/model.js";
import { ParamSet, type NamedTensor } from "../nn/params.js";
import { readTrainerState } from "../formats/trainer-state.js";
import { readPmaState } from "../train/checkpoint.js";
import type { Corpus } from "../data/corpus.js";
import { HeldoutEvaluator } from "../train/heldout.js";
import { tokenizerFromJson } from "../data/tokenizer-json.js";
import { readModelConfig, readWeights } from "../train/weights-io.js";
import type { EvalSplit } from "./evaluate.js";
import { planRows, SequenceScorer, type RowPlan } from "./logprob.js";
import { SplitTokens } from "./split-tokens.js";
import { tokenizerFingerprint, type TaskItems } from "./task-items.js";
import { averageScore, taskRequests, taskScores, type TaskRequests, type TaskScores } from "./task-scores.js";

export interface HeldoutScore {
  /** Mean next-token cross-entropy in nats (MoE aux loss excluded). */
  loss: number;
  perplexity: number;
  tokens: number;
}

export interface SuiteScores {
  /** The folder scored, or the label given to scoreWeights. */
  checkpoint: string;
  /** Step and tokens seen, from the folder's trainer_state.json when it has one (a merge has none). */
  step?: number;
  tokensSeen?: number;
  heldout: Partial<Record<EvalSplit, HeldoutScore>>;
  tasks: TaskScores;
  /** Unweighted mean accuracy over the tasks, as the paper averages its benchmarks. */
  average: number;
  /** The same mean for a model that guesses. */
  chanceAverage: number;
  seconds: number;
}

export interface HeldoutOptions {
  /** Default ["validation", "test"]. */
  splits?: EvalSplit[];
  /** Evenly spaced windows worth about this many tokens per split; 0 or absent: all. */
  maxTokens?: number;
  /** Window length; default the run's data.seq_len, else max_position_embeddings. */
  seq?: number;
}

export interface SuiteOptions {
  /** Backend for every forward pass (not disposed by close()); default getBackend(). */
  backend?: MatmulBackend;
  /** Sequences per forward pass; default 16. */
  batch?: number;
  /** Held-out loss settings, or false to score the tasks only. */
  heldout?: HeldoutOptions | false;
  /** Where tokenised held-out splits are cached; default as the trainer's. */
  cacheDir?: string;
  /** The corpus object when items.corpus is not a registered name. */
  corpus?: Corpus;
}

interface Shape {
  params: ParamSet;
  scorer: SequenceScorer;
  heldout: Map<number, Model>;
}

export class Suite {
  readonly items: TaskItems;
  private readonly requests: TaskRequests;
  private readonly plan: RowPlan;
  private readonly batch: number;
  private readonly heldoutOpts: HeldoutOptions | false;
  private readonly splits: SplitTokens;
  private readonly fingerprints = new Map<string, string>();
  private backend: MatmulBackend | null;
  private readonly ownBackend: boolean;
  private shape: Shape | null = null;

  constructor(
    items: TaskItems,
    private readonly opts: SuiteOptions = {},
  ) {
    this.items = items;
    this.requests = taskRequests(items);
    this.plan = planRows(this.requests.requests);
    this.batch = opts.batch ?? 16;
    if (!Number.isInteger(this.batch) || this.batch < 1)
      throw new PmaError("USAGE", `batch must be a positive integer, got ${this.batch}`);
    this.heldoutOpts = opts.heldout ?? {};
    this.splits = new SplitTokens(opts.cacheDir);
    this.backend = opts.backend ?? null;
    this.ownBackend = opts.backend === undefined;
  }

  /** Forward passes the tasks take per model (rows after merging shared prefixes). */
  get rows(): number {
    return this.plan.rows.length;
  }

  /** Name of the backend in use (after the first score). */
  get backendName(): string | null {
    return this.backend === null ? null : describeBackend(this.backend).name;
  }

  /** Scores a checkpoint folder (config.json, weights, tokenizer.json). */
  async scoreCheckpoint(path: string): Promise<SuiteScores> {
    const t0 = performance.now();
    const dir = resolve(path);
    const tokenizerFile = join(dir, "tokenizer.json");
    await this.checkTokenizer(tokenizerFile);
    const config = await readModelConfig(dir);
    const [state, trainer] = await Promise.all([
      readPmaState(dir).catch(() => null),
      readTrainerState(dir).catch(() => null),
    ]);
    const shape = await this.shapeFor(config);
    shape.params.load((await readWeights(dir)).tensors);
    const scores = this.run(dir, shape, tokenizerFile, state?.config.data.seq_len, t0);
    return {
      ...scores,
      ...(trainer?.globalStep != null ? { step: trainer.globalStep } : {}),
      ...(trainer?.tokensSeen != null ? { tokensSeen: trainer.tokensSeen } : {}),
    };
  }

  /**
   * Scores weights held in memory (a merge being explored, a point on a loss plane).
   * Held-out loss needs the tokenizer file the weights were trained with; without one
   * only the tasks are scored. The caller vouches that the items' tokenizer is that one.
   */
  async scoreWeights(
    config: ModelConfig,
    tensors: ReadonlyMap<string, Float32Array | NamedTensor>,
    opts: { label?: string; tokenizerFile?: string; seq?: number } = {},
  ): Promise<SuiteScores> {
    const t0 = performance.now();
    if (opts.tokenizerFile !== undefined) await this.checkTokenizer(opts.tokenizerFile);
    const shape = await this.shapeFor(config);
    shape.params.load(tensors);
    return this.run(opts.label ?? "(weights)", shape, opts.tokenizerFile ?? null, opts.seq, t0);
  }

  /** Releases the models and, if this suite created it, the backend. */
  close(): void {
    this.shape = null;
    if (this.ownBackend && this.backend !== null) this.backend.dispose();
    this.backend = null;
  }

  private run(
    label: string,
    shape: Shape,
    tokenizerFile: string | null,
    runSeq: number | undefined,
    t0: number,
  ): SuiteScores {
    const logprob = shape.scorer.score(this.plan);
    const tasks = taskScores(this.items, this.requests, logprob);
    const { average, chance } = averageScore(tasks);
    const heldout: Partial<Record<EvalSplit, HeldoutScore>> = {};
    if (this.heldoutOpts !== false && tokenizerFile !== null) {
      const config = shape.params.config;
      const seq = this.heldoutOpts.seq ?? runSeq ?? config.max_position_embeddings;
      if (!Number.isInteger(seq) || seq < 1 || seq > config.max_position_embeddings) {
        throw new PmaError(
          "USAGE",
          `held-out window length ${seq} must be between 1 and the model's max_position_embeddings (${config.max_position_embeddings})`,
        );
      }
      let model = shape.heldout.get(seq);
      if (model === undefined)
        shape.heldout.set(
          seq,
          (model = createModel(
            config,
            shape.params.backend,
            { batch: this.batch, seq },
            { params: shape.params, forwardOnly: true },
          )),
        );
      for (const split of this.heldoutOpts.splits ?? ["validation", "test"]) {
        const stream = this.splits.get(this.items.corpus, split, tokenizerFile, this.opts.corpus);
        const r = new HeldoutEvaluator(model, stream, this.heldoutOpts.maxTokens ?? 0).run();
        heldout[split] = { loss: r.loss, perplexity: r.perplexity, tokens: r.tokens };
      }
    }
    return {
      checkpoint: label,
      heldout,
      tasks,
      average,
      chanceAverage: chance,
      seconds: (performance.now() - t0) / 1000,
    };
  }

  /** The parameter set for this config: kept across calls while the shape stays the same. */
  private async shapeFor(config: ModelConfig): Promise<Shape> {
    if (this.shape !== null && sameConfig(this.shape.params.config, config)) return this.shape;
    this.backend ??= await getBackend();
    const params = new ParamSet(config, this.backend);
    this.shape = { params, scorer: new SequenceScorer(params, this.batch), heldout: new Map() };
    return this.shape;
  }

  /** Refuses a checkpoint whose tokenizer is not the one the items were tokenised with. */
  private async checkTokenizer(file: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw new PmaError(
        "IO",
        `${file}: cannot read (${(e as Error).message}); scoring needs the checkpoint's tokenizer.json`,
        { file, cause: e },
      );
    }
    const sha = createHash("sha256").update(text).digest("hex");
    let fp = this.fingerprints.get(sha);
    if (fp === undefined) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        throw new PmaError("FORMAT_UNSUPPORTED", `${file}: not valid JSON (${(e as Error).message})`, {
          file,
          cause: e,
        });
      }
      this.fingerprints.set(sha, (fp = tokenizerFingerprint(tokenizerFromJson(json, file))));
    }
    if (fp !== this.items.tokenizer) {
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `${file}: this tokenizer is not the one the task items were built with; build items with this checkpoint's tokenizer (taskItemsFor)`,
        { file },
      );
    }
  }
}

/**
 * Scores one checkpoint with a suite made for the call. To score many, keep a Suite:
 * it reuses the score plan, the parameter buffers, the models and the held-out tokens.
 */
export async function scoreCheckpoint(
  path: string,
  items: TaskItems,
  opts: SuiteOptions = {},
): Promise<SuiteScores> {
  const suite = new Suite(items, opts);
  try {
    return await suite.scoreCheckpoint(path);
  } finally {
    suite.close();
  }
}
