/**
 * Per-token log-probabilities of a checkpoint on the fixed held-out windows, by pma's
 * engine or by llama.cpp, and `pma eval --engine llama.cpp` built on them. Both engines
 * see the same token ids: the split is tokenised by pma with the checkpoint's tokenizer
 * (tokenizer.json, or for a bare GGUF file the vocabulary it carries) and the windows
 * are those of pma's own evaluator, so losses are comparable number for number.
 *
 * A safetensors folder given to llama.cpp is converted to a temporary GGUF file first
 * (weights as stored unless a dtype is asked for), removed afterwards.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { convertToGguf, type GgufWeightDtype } from "../convert/to-gguf.js";
import { tokenizerFromGgufMetadata } from "../convert/gguf-vocab.js";
import { GgufFile, isGgufPath } from "../formats/gguf.js";
import { readTrainerState } from "../formats/trainer-state.js";
import type { ModelConfig } from "../nn/config.js";
import { getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel } from "../nn/model.js";
import type { TokenStream } from "../data/batches.js";
import { readPmaState } from "../train/checkpoint.js";
import { heldoutWindows } from "../data/heldout-windows.js";
import { cacheDirectory } from "../data/tokenizer-cache.js";
import { tokenizerToJson } from "../data/tokenizer-json.js";
import { readModelConfig, readWeights } from "../train/weights-io.js";
import type { EvalResult, EvalSplit } from "./evaluate.js";
import { LlamaCppScorer, type LlamaCppGpu } from "./llama-cpp.js";
import { SplitTokens } from "./split-tokens.js";
import { pmaWindowLogprobs, summarizeLogprobs, type WindowLogprobs } from "./token-logprobs.js";

export type EvalEngine = "pma" | "llama.cpp";

export interface ScoreTokensOptions {
  split?: EvalSplit;
  /** Score an evenly spaced subset of about this many tokens; 0 or absent: the whole split. */
  maxTokens?: number;
  /** Window length; default the run's seq_len, else the model's context length. */
  seq?: number;
  corpus?: string;
  cacheDir?: string;
  /** pma engine: sequences per forward pass (default 16) and matmul backend (default getBackend()). */
  batch?: number;
  backend?: MatmulBackend;
  /** llama.cpp: device and threads, and the weight type of an on-the-fly conversion. */
  gpu?: LlamaCppGpu;
  threads?: number;
  dtype?: GgufWeightDtype;
}

export interface ScoredTokens extends WindowLogprobs {
  engine: EvalEngine;
  checkpoint: string;
  split: EvalSplit;
  corpus: string;
  /** Stored dtype of the weights evaluated (the GGUF file's for llama.cpp). */
  dtype: string;
  parameters: number;
  architecture: EvalResult["architecture"];
  step: number | null;
  tokensSeen: number | null;
  backend: string;
  seconds: number;
}

const splitsByCache = new Map<string, SplitTokens>();
function splitTokens(cacheDir: string): SplitTokens {
  let s = splitsByCache.get(cacheDir);
  if (s === undefined) splitsByCache.set(cacheDir, (s = new SplitTokens(cacheDir)));
  return s;
}

/** What is known about the model before scoring: where its tokens come from. */
export interface Prepared {
  checkpoint: string;
  tokenizerFile: string;
  seq: number;
  corpus: string;
  step: number | null;
  tokensSeen: number | null;
}

async function prepareFolder(
  dir: string,
  opts: ScoreTokensOptions,
): Promise<Prepared & { config: ModelConfig }> {
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
  return {
    config,
    checkpoint: dir,
    tokenizerFile: join(dir, "tokenizer.json"),
    seq,
    corpus: opts.corpus ?? pmaState?.config.data.corpus ?? "brown",
    step: trainerState?.globalStep ?? null,
    tokensSeen: trainerState?.tokensSeen ?? null,
  };
}

function tokensOf(p: Prepared, split: EvalSplit, cacheDir: string): TokenStream {
  return splitTokens(cacheDir).get(p.corpus, split, p.tokenizerFile);
}

function checkSplit(split: EvalSplit): void {
  if (split !== "validation" && split !== "test")
    throw new PmaError("USAGE", `split must be validation or test, got ${JSON.stringify(split)}`);
}

async function scoreWithPma(path: string, opts: ScoreTokensOptions): Promise<ScoredTokens> {
  const t0 = performance.now();
  const dir = resolve(path);
  if (isGgufPath(dir))
    throw new PmaError(
      "USAGE",
      `${dir}: pma's engine reads safetensors checkpoint folders; score a GGUF file with --engine llama.cpp`,
    );
  const split = opts.split ?? "validation";
  checkSplit(split);
  const batch = opts.batch ?? 16;
  if (!Number.isInteger(batch) || batch < 1)
    throw new PmaError("USAGE", `batch must be a positive integer, got ${batch}`);
  const p = await prepareFolder(dir, opts);
  const stream = tokensOf(p, split, opts.cacheDir ?? cacheDirectory());
  const config = p.config;
  const backend = opts.backend ?? (await getBackend());
  try {
    const model = createModel(config, backend, { batch, seq: p.seq }, { forwardOnly: true });
    const weights = await readWeights(dir);
    model.params.load(weights.tensors);
    const windows = heldoutWindows(stream.length, p.seq, opts.maxTokens ?? 0);
    if (windows.length === 0)
      throw new PmaError(
        "USAGE",
        `the ${split} split has ${stream.length} tokens, too few for one window of ${p.seq} + 1`,
      );
    const scored = pmaWindowLogprobs(model, stream, windows);
    return {
      ...scored,
      engine: "pma",
      checkpoint: dir,
      split,
      corpus: p.corpus,
      dtype: weights.dtype,
      parameters: model.params.numel,
      architecture: config.num_local_experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM",
      step: p.step,
      tokensSeen: p.tokensSeen,
      backend: backend.name,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    if (opts.backend === undefined) backend.dispose();
  }
}

export interface GgufFacts {
  dtype: string;
  parameters: number;
  architecture: EvalResult["architecture"];
  contextLength: number | null;
}

async function ggufFacts(path: string): Promise<GgufFacts & { tokenizerJson: string }> {
  const f = await GgufFile.open(path);
  try {
    const md = f.metadata;
    const arch = md.get("general.architecture");
    if (arch?.type !== "string" || arch.value !== "llama") {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${path}: general.architecture is ${arch?.type === "string" ? JSON.stringify(arch.value) : "missing"}; pma scores "llama" GGUF files (Llama and Mixtral)`,
        { file: path },
      );
    }
    const experts = md.get("llama.expert_count");
    const ctx = md.get("llama.context_length");
    let parameters = 0;
    for (const t of f.tensors.values()) parameters += t.elements;
    const tokenizer = tokenizerFromGgufMetadata(md, path);
    return {
      dtype: f.tensors.get("token_embd.weight")?.typeName ?? "unknown",
      parameters,
      architecture: experts?.type === "u32" && experts.value > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM",
      contextLength: ctx?.type === "u32" ? ctx.value : null,
      tokenizerJson: JSON.stringify(tokenizerToJson(tokenizer)),
    };
  } finally {
    await f.close();
  }
}

/** A model as llama.cpp sees it: its GGUF file, and what pma needs to tokenise the corpus for it. */
export interface LlamaCppInput extends Prepared, GgufFacts {
  gguf: string;
}

/**
 * Runs `fn` with the GGUF file for `path`: the file itself, or a temporary conversion of
 * a checkpoint folder (removed afterwards, as is the tokenizer.json written for a bare
 * GGUF file so that the corpus is tokenised like any checkpoint's).
 */
export async function withLlamaCppInput<T>(
  path: string,
  opts: ScoreTokensOptions,
  fn: (input: LlamaCppInput) => Promise<T>,
): Promise<T> {
  const target = resolve(path);
  const tmp = await mkdtemp(join(tmpdir(), "pma-llama-cpp-"));
  try {
    let p: Prepared;
    let gguf: string;
    if (isGgufPath(target)) {
      const facts = await ggufFacts(target);
      const tokenizerFile = join(tmp, "tokenizer.json");
      await writeFile(tokenizerFile, facts.tokenizerJson);
      const seq = opts.seq ?? facts.contextLength;
      if (seq === null || !Number.isInteger(seq) || seq < 1)
        throw new PmaError("USAGE", `${target}: no llama.context_length; pass --seq`);
      p = {
        checkpoint: target,
        tokenizerFile,
        seq,
        corpus: opts.corpus ?? "brown",
        step: null,
        tokensSeen: null,
      };
      gguf = target;
    } else {
      p = await prepareFolder(target, opts);
      gguf = (
        await convertToGguf(target, {
          out: join(tmp, "model.gguf"),
          ...(opts.dtype !== undefined ? { dtype: opts.dtype } : {}),
        })
      ).out;
    }
    const { tokenizerJson: _json, ...facts } = await ggufFacts(gguf);
    return await fn({ ...p, ...facts, gguf });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export async function openLlamaCppScorer(
  gguf: string,
  seq: number,
  opts: ScoreTokensOptions,
): Promise<LlamaCppScorer> {
  return LlamaCppScorer.open(gguf, {
    seq,
    ...(opts.gpu !== undefined ? { gpu: opts.gpu } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
  });
}

async function scoreWithLlamaCpp(path: string, opts: ScoreTokensOptions): Promise<ScoredTokens> {
  const t0 = performance.now();
  const split = opts.split ?? "validation";
  checkSplit(split);
  return withLlamaCppInput(path, opts, async (m) => {
    const stream = tokensOf(m, split, opts.cacheDir ?? cacheDirectory());
    const windows = heldoutWindows(stream.length, m.seq, opts.maxTokens ?? 0);
    if (windows.length === 0)
      throw new PmaError(
        "USAGE",
        `the ${split} split has ${stream.length} tokens, too few for one window of ${m.seq} + 1`,
      );
    const scorer = await openLlamaCppScorer(m.gguf, m.seq, opts);
    let scored: WindowLogprobs;
    try {
      scored = await scorer.windowLogprobs(stream, windows, m.seq);
    } finally {
      await scorer.close();
    }
    return {
      ...scored,
      engine: "llama.cpp",
      checkpoint: m.checkpoint,
      split,
      corpus: m.corpus,
      dtype: m.dtype,
      parameters: m.parameters,
      architecture: m.architecture,
      step: m.step,
      tokensSeen: m.tokensSeen,
      backend: scorer.description,
      seconds: (performance.now() - t0) / 1000,
    };
  });
}

/** Per-token log-probabilities of `path` (a checkpoint folder, or a .gguf file for llama.cpp) by one engine. */
export async function scoreTokens(
  path: string,
  engine: EvalEngine,
  opts: ScoreTokensOptions = {},
): Promise<ScoredTokens> {
  if (engine === "pma") return scoreWithPma(path, opts);
  if (engine === "llama.cpp") return scoreWithLlamaCpp(path, opts);
  throw new PmaError("USAGE", `engine must be pma or llama.cpp, got ${JSON.stringify(engine)}`);
}

/** `pma eval --engine llama.cpp`: pma's evaluation result, with llama.cpp computing the log-probabilities. */
export async function evaluateWithLlamaCpp(path: string, opts: ScoreTokensOptions = {}): Promise<EvalResult> {
  const s = await scoreTokens(path, "llama.cpp", opts);
  const { loss, perplexity, tokens } = summarizeLogprobs(s.logprobs);
  return {
    checkpoint: s.checkpoint,
    split: s.split,
    corpus: s.corpus,
    loss,
    perplexity,
    tokens,
    windows: s.windows.length,
    seq: s.seq,
    dtype: s.dtype,
    parameters: s.parameters,
    architecture: s.architecture,
    step: s.step,
    tokensSeen: s.tokensSeen,
    seconds: s.seconds,
    backend: s.backend,
  };
}
