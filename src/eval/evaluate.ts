/**
 * Held-out loss of a checkpoint folder: a pma training checkpoint, a `pma merge`
 * output, or any Llama/Mixtral safetensors folder with config.json and tokenizer.json,
 * f32 or bf16 (weights are scored as stored: a bf16 checkpoint is evaluated as bf16
 * weights). Forward passes only, batched, over the fixed windows of data/heldout-windows.ts,
 * so the result is deterministic for a given backend and comparable across checkpoints.
 *
 * An Evaluator keeps the backend, the tokenised splits and one model per shape, so the
 * lab can score hundreds of checkpoints paying only for reading weights and the
 * forward passes.
 */
import { join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { readTrainerState } from "../formats/trainer-state.js";
import type { ModelConfig } from "../nn/config.js";
import { describeBackend, getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel, type Model } from "../nn/model.js";
import { readPmaState } from "../train/checkpoint.js";
import type { Split } from "../data/corpus.js";
import { HeldoutEvaluator } from "../train/heldout.js";
import { readModelConfig, readWeights } from "../train/weights-io.js";
import { SplitTokens } from "./split-tokens.js";

export type EvalSplit = Extract<Split, "validation" | "test">;

export interface EvalOptions {
  split?: EvalSplit;
  /** Score an evenly spaced subset of about this many tokens; 0 or absent: the whole split. */
  maxTokens?: number;
  /** Sequences per forward pass (default 16). */
  batch?: number;
  /** Window length; default the run's data.seq_len, else config.json's max_position_embeddings. */
  seq?: number;
  /** Corpus name; default the run's data.corpus, else "brown". */
  corpus?: string;
}

export interface EvalResult {
  checkpoint: string;
  split: EvalSplit;
  corpus: string;
  /** Mean next-token cross-entropy in nats (MoE router aux loss excluded). */
  loss: number;
  perplexity: number;
  /** Tokens scored. */
  tokens: number;
  windows: number;
  seq: number;
  /** Stored dtype of the weights evaluated. */
  dtype: string;
  parameters: number;
  architecture: "LlamaForCausalLM" | "MixtralForCausalLM";
  /** From trainer_state.json when the folder has one (a merge has none). */
  step: number | null;
  tokensSeen: number | null;
  seconds: number;
  backend: string;
}

export interface EvaluatorOptions {
  /** Backend to run on (not disposed by close()); default getBackend(). */
  backend?: MatmulBackend;
  cacheDir?: string;
}

export class Evaluator {
  private backend: MatmulBackend | null;
  private readonly ownBackend: boolean;
  private readonly splits: SplitTokens;
  private readonly models = new Map<string, Model>();

  constructor(opts: EvaluatorOptions = {}) {
    this.backend = opts.backend ?? null;
    this.ownBackend = opts.backend === undefined;
    this.splits = new SplitTokens(opts.cacheDir);
  }

  private async getBackend(): Promise<MatmulBackend> {
    this.backend ??= await getBackend();
    return this.backend;
  }

  /** One model per (config, batch, seq), reused: loading weights into it allocates nothing. */
  private model(config: ModelConfig, batch: number, seq: number, backend: MatmulBackend): Model {
    const key = `${JSON.stringify(config)}|${batch}|${seq}`;
    let m = this.models.get(key);
    if (m === undefined) {
      // One cached model is enough for the usual many-checkpoints-of-one-run case; a
      // different shape replaces it so memory stays bounded.
      this.models.clear();
      this.models.set(key, (m = createModel(config, backend, { batch, seq }, { forwardOnly: true })));
    }
    return m;
  }

  async evaluate(path: string, opts: EvalOptions = {}): Promise<EvalResult> {
    const t0 = performance.now();
    const dir = resolve(path);
    const split = opts.split ?? "validation";
    if (split !== "validation" && split !== "test")
      throw new PmaError("USAGE", `split must be validation or test, got ${JSON.stringify(split)}`);
    const batch = opts.batch ?? 16;
    if (!Number.isInteger(batch) || batch < 1)
      throw new PmaError("USAGE", `batch must be a positive integer, got ${batch}`);
    const config = await readModelConfig(dir);
    const [pmaState, trainerState] = await Promise.all([
      readPmaState(dir).catch(() => null),
      readTrainerState(dir).catch(() => null),
    ]);
    const seq = opts.seq ?? pmaState?.config.data.seq_len ?? config.max_position_embeddings;
    if (!Number.isInteger(seq) || seq < 1 || seq > config.max_position_embeddings) {
      throw new PmaError(
        "USAGE",
        `window length ${seq} must be between 1 and the model's max_position_embeddings (${config.max_position_embeddings})`,
      );
    }
    const corpus = opts.corpus ?? pmaState?.config.data.corpus ?? "brown";
    const stream = this.splits.get(corpus, split, join(dir, "tokenizer.json"));
    const backend = await this.getBackend();
    const model = this.model(config, batch, seq, backend);
    const weights = await readWeights(dir);
    model.params.load(weights.tensors);
    const r = new HeldoutEvaluator(model, stream, opts.maxTokens ?? 0).run();
    return {
      checkpoint: dir,
      split,
      corpus,
      loss: r.loss,
      perplexity: r.perplexity,
      tokens: r.tokens,
      windows: r.windows,
      seq,
      dtype: weights.dtype,
      parameters: model.params.numel,
      architecture: config.num_local_experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM",
      step: trainerState?.globalStep ?? null,
      tokensSeen: trainerState?.tokensSeen ?? null,
      seconds: (performance.now() - t0) / 1000,
      backend: describeBackend(backend).name,
    };
  }

  /** Releases the models and, if this evaluator created it, the backend. */
  close(): void {
    this.models.clear();
    if (this.ownBackend && this.backend !== null) this.backend.dispose();
    this.backend = null;
  }
}

let shared: Evaluator | null = null;

/**
 * Evaluates one checkpoint folder. Calls share one Evaluator (backend, tokenised
 * splits, model buffers), so calling this in a loop over a run's checkpoints is cheap;
 * `closeSharedEvaluator()` releases it.
 */
export async function evaluateCheckpoint(path: string, opts: EvalOptions = {}): Promise<EvalResult> {
  shared ??= new Evaluator();
  return shared.evaluate(path, opts);
}

export function closeSharedEvaluator(): void {
  shared?.close();
  shared = null;
}
