/**
 * `pma eval CKPT --data FILE`: held-out loss on the user's own text. The text is
 * tokenised with the checkpoint's tokenizer.json by @huggingface/tokenizers
 * (data/text-tokens.ts, cached by content), packed into one stream and cut into the
 * fixed non-overlapping windows of train/heldout.ts, then scored by pma's engine
 * (Llama/Mixtral safetensors folders) or by llama.cpp (a GGUF file, or a folder
 * converted on the fly).
 *
 * Bits per byte make losses comparable across tokenizers: the loss in bits times the
 * stream's tokens per UTF-8 byte of text, (loss / ln 2) x tokens / bytes, the ratio taken
 * over the whole file (separator tokens counted as tokens, not as bytes).
 */
import { join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { tokenizeTextFile, type TextTokens } from "../data/text-tokens.js";
import { readTrainerState } from "../formats/trainer-state.js";
import { isGgufPath } from "../formats/gguf.js";
import type { ModelConfig } from "../nn/config.js";
import { describeBackend, getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel, type Model } from "../nn/model.js";
import type { NamedTensor } from "../nn/params.js";
import { readPmaState } from "../train/checkpoint.js";
import { heldoutWindows } from "../data/heldout-windows.js";
import { HeldoutEvaluator } from "../train/heldout.js";
import { cacheDirectory } from "../data/tokenizer-cache.js";
import { readModelConfig, readWeights } from "../train/weights-io.js";
import type { EvalEngine, ScoreTokensOptions } from "./score-tokens.js";
import { summarizeLogprobs } from "./token-logprobs.js";

export interface DataEvalOptions {
  /** Held-out text: .txt (blank-line-separated documents) or .jsonl. */
  data: string;
  /** JSONL field with the text (default "text"). */
  textField?: string;
  /** tokenizer.json to use instead of the checkpoint's own. */
  tokenizer?: string;
  /** Window length; default the run's seq_len, else the model's context length. */
  seq?: number;
  /** Score an evenly spaced subset of about this many tokens; 0 or absent: all windows. */
  maxTokens?: number;
  batch?: number;
  engine?: EvalEngine;
  cacheDir?: string;
  backend?: MatmulBackend;
  /** llama.cpp settings (as pma eval --engine llama.cpp). */
  llamaCpp?: Pick<ScoreTokensOptions, "gpu" | "threads" | "dtype">;
}

export interface DataEvalResult {
  checkpoint: string;
  engine: EvalEngine;
  data: string;
  dataSha256: string;
  documents: number;
  tokenizer: string;
  /** Mean next-token cross-entropy in nats. */
  loss: number;
  perplexity: number;
  /** Tokens scored, windows and their length. */
  tokens: number;
  windows: number;
  seq: number;
  /** Tokens in the packed data and UTF-8 bytes of its text. */
  dataTokens: number;
  dataBytes: number;
  bitsPerByte: number;
  dtype: string;
  parameters: number;
  architecture: "LlamaForCausalLM" | "MixtralForCausalLM";
  step: number | null;
  tokensSeen: number | null;
  seconds: number;
  backend: string;
}

export function bitsPerByte(loss: number, dataTokens: number, dataBytes: number): number {
  return (loss / Math.LN2) * (dataTokens / dataBytes);
}

/** Windows of `seq` + 1 tokens over the stream, or a clear error when the text is too short. */
export function dataWindows(t: TextTokens, seq: number, maxTokens: number): Uint32Array {
  const windows = heldoutWindows(t.tokens.length, seq, maxTokens);
  if (windows.length === 0) {
    throw new PmaError(
      "DATA_INVALID",
      `${t.dataFile}: the held-out text is ${t.tokens.length} tokens with this tokenizer, shorter than one window of ${seq} + 1; give more text or a smaller --seq`,
      { file: t.dataFile },
    );
  }
  return windows;
}

/**
 * A forward-only model of one shape over fixed data windows: score() loads a set of
 * weights and returns their loss. The tuner scores hundreds of candidate merges this way
 * without writing them to disk.
 */
export class DataScorer {
  private readonly heldout: HeldoutEvaluator;
  readonly windows: number;
  private constructor(
    readonly model: Model,
    readonly data: TextTokens,
    maxTokens: number,
  ) {
    // HeldoutEvaluator takes the same windows as dataWindows (both call heldoutWindows).
    dataWindows(data, model.seq, maxTokens);
    this.heldout = new HeldoutEvaluator(model, data.tokens, maxTokens);
    this.windows = this.heldout.windows.length;
  }

  static create(
    config: ModelConfig,
    data: TextTokens,
    backend: MatmulBackend,
    opts: { seq: number; batch?: number; maxTokens?: number },
  ): DataScorer {
    const maxId = data.tokens.reduce((m, x) => Math.max(m, x), 0);
    if (maxId >= config.vocab_size) {
      throw new PmaError(
        "USAGE",
        `${data.tokenizerFile}: the tokenizer produces id ${maxId}, outside the model's vocabulary of ${config.vocab_size}; use the checkpoint's own tokenizer.json`,
        { file: data.tokenizerFile },
      );
    }
    const model = createModel(
      config,
      backend,
      { batch: opts.batch ?? 16, seq: opts.seq },
      { forwardOnly: true },
    );
    return new DataScorer(model, data, opts.maxTokens ?? 0);
  }

  score(tensors: ReadonlyMap<string, NamedTensor | Float32Array>): {
    loss: number;
    tokens: number;
    windows: number;
  } {
    this.model.params.load(tensors);
    const r = this.heldout.run();
    return { loss: r.loss, tokens: r.tokens, windows: r.windows };
  }
}

function defaultSeq(config: ModelConfig, runSeq: number | undefined, seq: number | undefined): number {
  const s = seq ?? runSeq ?? config.max_position_embeddings;
  if (!Number.isInteger(s) || s < 1 || s > config.max_position_embeddings) {
    throw new PmaError(
      "USAGE",
      `window length ${s} must be between 1 and the model's max_position_embeddings (${config.max_position_embeddings})`,
    );
  }
  return s;
}

async function evaluateWithPma(dir: string, opts: DataEvalOptions, t0: number): Promise<DataEvalResult> {
  if (isGgufPath(dir))
    throw new PmaError(
      "USAGE",
      `${dir}: pma's engine reads checkpoint folders; score a GGUF file with --engine llama.cpp`,
    );
  const config = await readModelConfig(dir);
  const [pmaState, trainerState] = await Promise.all([
    readPmaState(dir).catch(() => null),
    readTrainerState(dir).catch(() => null),
  ]);
  const seq = defaultSeq(config, pmaState?.config.data.seq_len, opts.seq);
  const data = tokenizeTextFile(
    opts.data,
    resolve(opts.tokenizer ?? join(dir, "tokenizer.json")),
    opts.cacheDir ?? cacheDirectory(),
    opts.textField !== undefined ? { textField: opts.textField } : {},
  );
  const backend = opts.backend ?? (await getBackend());
  try {
    const scorer = DataScorer.create(config, data, backend, {
      seq,
      ...(opts.batch !== undefined ? { batch: opts.batch } : {}),
      maxTokens: opts.maxTokens ?? 0,
    });
    const weights = await readWeights(dir);
    const r = scorer.score(weights.tensors);
    return {
      checkpoint: dir,
      engine: "pma",
      ...dataFacts(data),
      loss: r.loss,
      perplexity: Math.exp(r.loss),
      tokens: r.tokens,
      windows: r.windows,
      seq,
      bitsPerByte: bitsPerByte(r.loss, data.tokens.length, data.bytes),
      dtype: weights.dtype,
      parameters: scorer.model.params.numel,
      architecture: config.num_local_experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM",
      step: trainerState?.globalStep ?? null,
      tokensSeen: trainerState?.tokensSeen ?? null,
      seconds: (performance.now() - t0) / 1000,
      backend: describeBackend(backend).name,
    };
  } finally {
    if (opts.backend === undefined) backend.dispose();
  }
}

function dataFacts(
  data: TextTokens,
): Pick<DataEvalResult, "data" | "dataSha256" | "documents" | "tokenizer" | "dataTokens" | "dataBytes"> {
  return {
    data: data.dataFile,
    dataSha256: data.dataSha256,
    documents: data.documents,
    tokenizer: data.tokenizerFile,
    dataTokens: data.tokens.length,
    dataBytes: data.bytes,
  };
}

async function evaluateWithLlamaCpp(
  path: string,
  opts: DataEvalOptions,
  t0: number,
): Promise<DataEvalResult> {
  const { withLlamaCppInput, openLlamaCppScorer } = await import("./score-tokens.js");
  const scoreOpts: ScoreTokensOptions = {
    ...(opts.seq !== undefined ? { seq: opts.seq } : {}),
    ...(opts.llamaCpp ?? {}),
  };
  return withLlamaCppInput(path, scoreOpts, async (m) => {
    const data = tokenizeTextFile(
      opts.data,
      resolve(opts.tokenizer ?? m.tokenizerFile),
      opts.cacheDir ?? cacheDirectory(),
      opts.textField !== undefined ? { textField: opts.textField } : {},
    );
    const windows = dataWindows(data, m.seq, opts.maxTokens ?? 0);
    const scorer = await openLlamaCppScorer(m.gguf, m.seq, scoreOpts);
    let logprobs: Float64Array;
    try {
      logprobs = (await scorer.windowLogprobs(data.tokens, windows, m.seq)).logprobs;
    } finally {
      await scorer.close();
    }
    const s = summarizeLogprobs(logprobs);
    return {
      checkpoint: m.checkpoint,
      engine: "llama.cpp",
      ...dataFacts(data),
      loss: s.loss,
      perplexity: s.perplexity,
      tokens: s.tokens,
      windows: windows.length,
      seq: m.seq,
      bitsPerByte: bitsPerByte(s.loss, data.tokens.length, data.bytes),
      dtype: m.dtype,
      parameters: m.parameters,
      architecture: m.architecture,
      step: m.step,
      tokensSeen: m.tokensSeen,
      seconds: (performance.now() - t0) / 1000,
      backend: scorer.description,
    };
  });
}

/** Held-out loss, perplexity and bits per byte of one checkpoint on a text file. */
export async function evaluateOnData(path: string, opts: DataEvalOptions): Promise<DataEvalResult> {
  const t0 = performance.now();
  const engine = opts.engine ?? "pma";
  if (engine === "pma") return evaluateWithPma(resolve(path), opts, t0);
  if (engine === "llama.cpp") return evaluateWithLlamaCpp(path, opts, t0);
  throw new PmaError("USAGE", `engine must be pma or llama.cpp, got ${JSON.stringify(engine)}`);
}
