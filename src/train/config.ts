/**
 * The training run's configuration: model, optimizer, schedule, data, training,
 * eval, checkpointing and log sections, read from YAML (or a JSON object) with every
 * field defaulted, so an empty file trains the lab's small dense model on Brown.
 *
 * The defaults follow the lab notes (settings that work on a 2-core CPU): d_model 128,
 * 4 layers of 4 heads, SwiGLU 344, sequences of 128, 4096 tokens per step, AdamW
 * 0.9/0.95 with decay 0.1 and clip 1, 50 warmup steps then a constant 3e-3.
 * Intervals are in tokens, multiples of the 4096 tokens of a step so checkpoints are
 * evenly spaced (the merge interval V of the paper is in tokens).
 */
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { PmaError } from "../common/errors.js";
import type { AdamWOptions } from "../nn/adamw.js";
import type { ModelConfig } from "../nn/config.js";
import { resolveConfig } from "../nn/config.js";
import type { BackendName } from "../nn/kernels/index.js";
import type { ScheduleSpec } from "../nn/schedule.js";
import { parseSchedule } from "../nn/schedule.js";
import { configError, SectionReader } from "./config-reader.js";
import { checkRetention } from "./retention.js";

export type ModelPreset = "dense" | "moe";
export type CheckpointDtype = "f32" | "bf16";
export type ScheduleKind = ScheduleSpec["kind"];

/** ModelConfig fields the tokenizer decides (modelConfigFor fills them), so not in the YAML. */
type TokenizerFields = "vocab_size" | "bos_token_id" | "eos_token_id";

/**
 * Architecture fields (Hugging Face names), taken from the engine's ModelConfig so each
 * field is declared once; vocab and special ids come from the tokenizer.
 */
export interface ModelSection extends Omit<ModelConfig, TokenizerFields> {
  preset: ModelPreset;
}

export interface OptimizerSection {
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
}

/** Snake-case twin of the engine's ScheduleSpec; absent fields are null. */
export interface ScheduleSection {
  kind: ScheduleKind;
  lr: number;
  lr_min: number | null;
  warmup_tokens: number;
  stable_tokens: number | null;
  decay_tokens: number | null;
  decay: "cosine" | "linear" | null;
  start_tokens: number;
}

export interface DataSection {
  corpus: string;
  /** The corpus whose train split the BPE is trained on; null: `corpus` itself. */
  tokenizer: string | null;
  vocab_size: number;
  seq_len: number;
  /** Sequences per forward/backward. */
  micro_batch: number;
  /** Micro-batches per optimizer step: tokens/step = micro_batch * seq_len * grad_accum. */
  grad_accum: number;
  /** Batches are a pure function of (seed, step). */
  seed: number;
}

export interface TrainingSection {
  max_tokens: number;
  /** Parameter init seed. */
  seed: number;
  backend: BackendName | "auto";
}

export interface EvalSection {
  /** Validation loss every this many tokens (rounded to whole steps); 0: never. */
  every_tokens: number;
  /** Tokens of the validation split scored each time (evenly spaced windows); 0: all. */
  max_tokens: number;
  /** Sequences per forward pass. */
  batch: number;
}

export interface CheckpointSection {
  /** A checkpoint every this many tokens (rounded to whole steps); 0: only at the end. */
  every_tokens: number;
  dtype: CheckpointDtype;
  /** Keep the N newest checkpoints, delete older ones (retention.ts); 0: keep all. */
  keep_last: number;
  /** Also keep checkpoints at multiples of this many tokens (a planned merge's V); 0: none. */
  keep_every_tokens: number;
}

export interface LogSection {
  /** trainer_state.json log_history gets one (averaged) entry every this many steps. */
  history_every_steps: number;
}

export interface TrainConfig {
  model: ModelSection;
  optimizer: OptimizerSection;
  schedule: ScheduleSection;
  data: DataSection;
  training: TrainingSection;
  eval: EvalSection;
  checkpointing: CheckpointSection;
  log: LogSection;
}

const SECTIONS = [
  "model",
  "optimizer",
  "schedule",
  "data",
  "training",
  "eval",
  "checkpointing",
  "log",
] as const;

const MODEL_FIELDS = [
  "preset",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "max_position_embeddings",
  "rms_norm_eps",
  "rope_theta",
  "tie_word_embeddings",
  "initializer_range",
  "num_local_experts",
  "num_experts_per_tok",
  "router_aux_loss_coef",
] as const;

/** Preset bases; null fields are derived (kv heads = heads, head_dim = hidden / heads, positions = seq_len). */
type ModelDraft = {
  [K in keyof ModelSection]:
    | ModelSection[K]
    | (K extends "num_key_value_heads" | "head_dim" | "max_position_embeddings" ? null : never);
};

const DENSE: ModelDraft = {
  preset: "dense",
  hidden_size: 128,
  intermediate_size: 344,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: null,
  head_dim: null,
  max_position_embeddings: null,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  initializer_range: 0.02,
  num_local_experts: 0,
  num_experts_per_tok: 2,
  router_aux_loss_coef: 0.01,
};

/** 8 experts of half the dense width, top-2: the same active MLP compute per token. */
const MOE: ModelDraft = { ...DENSE, preset: "moe", intermediate_size: 172, num_local_experts: 8 };

const PRESETS: Record<ModelPreset, ModelDraft> = { dense: DENSE, moe: MOE };

const TOKENS_PER_STEP = 4096;

/** Corpora a run can train on (src/data/run-data.ts builds them). */
const CORPUS_NAMES = ["brown", "wordnet"] as const;

export function tokensPerStep(c: TrainConfig): number {
  return c.data.micro_batch * c.data.seq_len * c.data.grad_accum;
}

/** Steps between events every `tokens` tokens: rounded to whole steps, at least 1; 0 stays 0 (never). */
export function stepsEvery(c: TrainConfig, tokens: number): number {
  return tokens <= 0 ? 0 : Math.max(1, Math.round(tokens / tokensPerStep(c)));
}

/** Optimizer steps needed to see max_tokens. */
export function maxSteps(c: TrainConfig): number {
  return Math.ceil(c.training.max_tokens / tokensPerStep(c));
}

export interface ParseContext {
  /**
   * The config being resumed (its fields are the defaults of the overlay) and, for a
   * fork, the tokens already seen: a new schedule section then starts there, without
   * warmup unless it asks for one.
   */
  base?: TrainConfig;
  forkTokens?: number;
}

/**
 * Reads a config (parsed YAML/JSON object) over the defaults, or over `ctx.base` when
 * resuming. Throws CONFIG_INVALID naming `where` and the field.
 */
export function parseTrainConfig(source: unknown, where: string, ctx: ParseContext = {}): TrainConfig {
  if (source === null || source === undefined) source = {};
  if (typeof source !== "object" || Array.isArray(source))
    throw configError(where, "the config", "must be a mapping of sections");
  const o = source as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(SECTIONS as readonly string[]).includes(k))
      throw configError(where, k, `is not a config section (sections: ${SECTIONS.join(", ")})`);
  }
  const base = ctx.base;
  const data = readData(
    new SectionReader(where, "data", o["data"], [
      "corpus",
      "tokenizer",
      "vocab_size",
      "seq_len",
      "micro_batch",
      "grad_accum",
      "seed",
    ]),
    base?.data,
  );
  const training = readTraining(
    new SectionReader(where, "training", o["training"], ["max_tokens", "seed", "backend"]),
    base?.training,
  );
  const partial = { data, training } as TrainConfig;
  const tps = tokensPerStep(partial);
  return {
    model: readModel(where, o["model"], base?.model, data.seq_len),
    optimizer: readOptimizer(
      new SectionReader(where, "optimizer", o["optimizer"], [
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "max_grad_norm",
      ]),
      base?.optimizer,
    ),
    schedule: readSchedule(where, o["schedule"], base?.schedule, training.max_tokens, tps, ctx.forkTokens),
    data,
    training,
    eval: readEval(
      new SectionReader(where, "eval", o["eval"], ["every_tokens", "max_tokens", "batch"]),
      base?.eval,
      tps,
    ),
    checkpointing: readCheckpointing(
      where,
      new SectionReader(where, "checkpointing", o["checkpointing"], [
        "every_tokens",
        "dtype",
        "keep_last",
        "keep_every_tokens",
      ]),
      base?.checkpointing,
      tps,
    ),
    log: {
      history_every_steps: new SectionReader(where, "log", o["log"], ["history_every_steps"]).integer(
        "history_every_steps",
        base?.log.history_every_steps ?? 10,
        1,
      ),
    },
  };
}

/** Parses YAML text (JSON is YAML too) into a config; syntax errors name the line. */
export function parseTrainConfigYaml(text: string, where: string, ctx: ParseContext = {}): TrainConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new PmaError("CONFIG_INVALID", `${where}: not valid YAML: ${(e as Error).message}`);
  }
  return parseTrainConfig(doc, where, ctx);
}

export function trainConfigToYaml(c: TrainConfig): string {
  return stringifyYaml(c, { nullStr: "null" });
}

function readModel(
  where: string,
  value: unknown,
  base: ModelSection | undefined,
  seqLen: number,
): ModelSection {
  const r = new SectionReader(where, "model", value, MODEL_FIELDS);
  const preset = r.choice<ModelPreset>("preset", base?.preset ?? "dense", ["dense", "moe"]);
  // A different preset starts from that preset's defaults, never a mix of two.
  const b: ModelDraft = base !== undefined && base.preset === preset ? base : PRESETS[preset];
  const hidden = r.integer("hidden_size", b.hidden_size, 1);
  const heads = r.integer("num_attention_heads", b.num_attention_heads, 1);
  const m: ModelSection = {
    preset,
    hidden_size: hidden,
    intermediate_size: r.integer("intermediate_size", b.intermediate_size, 1),
    num_hidden_layers: r.integer("num_hidden_layers", b.num_hidden_layers, 1),
    num_attention_heads: heads,
    num_key_value_heads: r.optionalInteger("num_key_value_heads", b.num_key_value_heads, 1) ?? heads,
    head_dim: r.optionalInteger("head_dim", b.head_dim, 2) ?? Math.floor(hidden / heads),
    max_position_embeddings:
      r.optionalInteger("max_position_embeddings", b.max_position_embeddings, 1) ?? seqLen,
    rms_norm_eps: r.number("rms_norm_eps", b.rms_norm_eps, { above: 0 }),
    rope_theta: r.number("rope_theta", b.rope_theta, { above: 0 }),
    tie_word_embeddings: r.boolean("tie_word_embeddings", b.tie_word_embeddings),
    initializer_range: r.number("initializer_range", b.initializer_range, { min: 0 }),
    num_local_experts: r.integer("num_local_experts", b.num_local_experts, 0),
    num_experts_per_tok: r.integer("num_experts_per_tok", b.num_experts_per_tok, 1),
    router_aux_loss_coef: r.number("router_aux_loss_coef", b.router_aux_loss_coef, { min: 0 }),
  };
  if (preset === "dense" && m.num_local_experts !== 0) {
    throw configError(
      where,
      "model.num_local_experts",
      `must be 0 for preset dense (set model.preset: moe for experts), got ${m.num_local_experts}`,
    );
  }
  if (preset === "moe" && m.num_local_experts < 1)
    throw configError(
      where,
      "model.num_local_experts",
      `must be >= 1 for preset moe, got ${m.num_local_experts}`,
    );
  if (m.max_position_embeddings < seqLen) {
    throw configError(
      where,
      "model.max_position_embeddings",
      `must be >= data.seq_len (${seqLen}), got ${m.max_position_embeddings}`,
    );
  }
  try {
    // The engine's own checks (heads divisible by kv heads, even head_dim, top-k <= experts).
    resolveConfig(modelConfigFor(m, 256, 0));
  } catch (e) {
    throw new PmaError(
      "CONFIG_INVALID",
      `${where}: ${(e as Error).message.replace(/^model config: /, "model.")}`,
    );
  }
  return m;
}

/** The engine's ModelConfig for this section and a tokenizer's vocabulary and separator id. */
export function modelConfigFor(m: ModelSection, vocabSize: number, eosId: number): ModelConfig {
  const { preset: _preset, ...fields } = m;
  return resolveConfig({ ...fields, vocab_size: vocabSize, bos_token_id: eosId, eos_token_id: eosId });
}

function readOptimizer(r: SectionReader, b: OptimizerSection | undefined): OptimizerSection {
  return {
    beta1: r.number("beta1", b?.beta1 ?? 0.9, { min: 0, below: 1 }),
    beta2: r.number("beta2", b?.beta2 ?? 0.95, { min: 0, below: 1 }),
    eps: r.number("eps", b?.eps ?? 1e-8, { above: 0 }),
    weight_decay: r.number("weight_decay", b?.weight_decay ?? 0.1, { min: 0 }),
    max_grad_norm: r.number("max_grad_norm", b?.max_grad_norm ?? 1.0, { min: 0 }),
  };
}

export function adamwOptions(o: OptimizerSection): AdamWOptions {
  return {
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    weightDecay: o.weight_decay,
    maxGradNorm: o.max_grad_norm,
  };
}

const SCHEDULE_FIELDS: Record<ScheduleKind, readonly string[]> = {
  constant: ["kind", "lr", "warmup_tokens", "start_tokens"],
  cosine: ["kind", "lr", "lr_min", "warmup_tokens", "decay_tokens", "start_tokens"],
  wsd: ["kind", "lr", "lr_min", "warmup_tokens", "stable_tokens", "decay_tokens", "decay", "start_tokens"],
};

function readSchedule(
  where: string,
  value: unknown,
  base: ScheduleSection | undefined,
  maxTokens: number,
  tps: number,
  forkTokens?: number,
): ScheduleSection {
  const given = value !== undefined && value !== null;
  // Only the kind is read before the field check, so its fields can be checked per kind.
  const kindReader = new SectionReader(
    where,
    "schedule",
    given && typeof value === "object" && !Array.isArray(value)
      ? { kind: (value as Record<string, unknown>)["kind"] }
      : value,
    ["kind"],
  );
  const kind = kindReader.choice<ScheduleKind>("kind", base?.kind ?? "constant", [
    "constant",
    "cosine",
    "wsd",
  ]);
  const r = new SectionReader(where, "schedule", value, SCHEDULE_FIELDS[kind]);
  // A fork's new schedule starts at the fork and does not warm up again unless asked.
  const fork = given && forkTokens !== undefined;
  const b = base !== undefined && base.kind === kind && !fork ? base : undefined;
  const lr = r.number("lr", b?.lr ?? base?.lr ?? 3e-3, { min: 0 });
  const start = r.tokens("start_tokens", fork ? forkTokens : (b?.start_tokens ?? 0));
  const warmup = r.tokens("warmup_tokens", fork ? 0 : (b?.warmup_tokens ?? 50 * tps));
  const remaining = Math.max(1, maxTokens - start - warmup);
  const s: ScheduleSection = {
    kind,
    lr,
    lr_min: null,
    warmup_tokens: warmup,
    stable_tokens: null,
    decay_tokens: null,
    decay: null,
    start_tokens: start,
  };
  if (kind === "cosine") {
    s.lr_min = r.number("lr_min", b?.lr_min ?? lr / 10, { min: 0 });
    s.decay_tokens = r.tokens("decay_tokens", b?.decay_tokens ?? remaining);
  } else if (kind === "wsd") {
    // Default: decay over the last 20% of the run, as in the WSD papers.
    const decay = b?.decay_tokens ?? Math.max(1, Math.round(remaining * 0.2));
    s.lr_min = r.number("lr_min", b?.lr_min ?? 0, { min: 0 });
    s.decay_tokens = r.tokens("decay_tokens", decay);
    s.stable_tokens = r.tokens("stable_tokens", b?.stable_tokens ?? Math.max(0, remaining - s.decay_tokens));
    s.decay = r.choice<"cosine" | "linear">("decay", b?.decay ?? "linear", ["cosine", "linear"]);
  }
  if ((kind === "cosine" || kind === "wsd") && s.decay_tokens === 0)
    throw configError(where, "schedule.decay_tokens", "must be > 0, got 0");
  return s;
}

/** The engine's schedule for a schedule section. */
export function scheduleSpec(s: ScheduleSection): ScheduleSpec {
  const json: Record<string, unknown> = {
    kind: s.kind,
    lr: s.lr,
    warmupTokens: s.warmup_tokens,
    startTokens: s.start_tokens,
  };
  if (s.lr_min !== null) json["lrMin"] = s.lr_min;
  if (s.stable_tokens !== null) json["stableTokens"] = s.stable_tokens;
  if (s.decay_tokens !== null) json["decayTokens"] = s.decay_tokens;
  if (s.decay !== null) json["decay"] = s.decay;
  return parseSchedule(json);
}

function readData(r: SectionReader, b: DataSection | undefined): DataSection {
  const corpus = r.choice("corpus", b?.corpus ?? "brown", CORPUS_NAMES);
  return {
    corpus,
    tokenizer: r.has("tokenizer") ? r.choice("tokenizer", "brown", CORPUS_NAMES) : (b?.tokenizer ?? null),
    vocab_size: r.integer("vocab_size", b?.vocab_size ?? 4096, 257),
    seq_len: r.integer("seq_len", b?.seq_len ?? 128, 1),
    micro_batch: r.integer("micro_batch", b?.micro_batch ?? 8, 1),
    grad_accum: r.integer("grad_accum", b?.grad_accum ?? 4, 1),
    seed: r.integer("seed", b?.seed ?? 0, 0),
  };
}

function readTraining(r: SectionReader, b: TrainingSection | undefined): TrainingSection {
  return {
    max_tokens: r.tokens("max_tokens", b?.max_tokens ?? 1000 * TOKENS_PER_STEP),
    seed: r.integer("seed", b?.seed ?? 0, 0),
    backend: r.choice<BackendName | "auto">("backend", b?.backend ?? "auto", ["auto", "blas", "wasm", "js"]),
  };
}

function readEval(r: SectionReader, b: EvalSection | undefined, tps: number): EvalSection {
  return {
    // Every 100 steps: a full pass over Brown's validation split costs about a third
    // of a training step per token, so this keeps evaluation near 10% of the run.
    every_tokens: r.tokens("every_tokens", b?.every_tokens ?? 100 * tps),
    max_tokens: r.tokens("max_tokens", b?.max_tokens ?? 0),
    batch: r.integer("batch", b?.batch ?? 16, 1),
  };
}

function readCheckpointing(
  where: string,
  r: SectionReader,
  b: CheckpointSection | undefined,
  tps: number,
): CheckpointSection {
  const every = r.tokens("every_tokens", b?.every_tokens ?? 25 * tps);
  const c: CheckpointSection = {
    every_tokens: every,
    dtype: r.choice<CheckpointDtype>("dtype", b?.dtype ?? "f32", ["f32", "bf16"]),
    // Absent from states saved before retention existed: those runs kept everything.
    keep_last: r.integer("keep_last", b?.keep_last ?? 0, 0),
    keep_every_tokens: r.tokens("keep_every_tokens", b?.keep_every_tokens ?? 0),
  };
  // The spacing in tokens of the checkpoints stepsEvery schedules (every_tokens in whole steps).
  checkRetention(where, c, every <= 0 ? 0 : Math.max(1, Math.round(every / tps)) * tps);
  return c;
}

/** The defaults as a config (derived model fields resolved for seq_len 128). */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = Object.freeze(parseTrainConfig({}, "defaults"));
