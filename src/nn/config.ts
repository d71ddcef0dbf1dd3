import { PmaError } from "../common/errors.js";

/**
 * Architecture of a Llama-style dense model or a Mixtral-style MoE model. Field names
 * are the Hugging Face `config.json` names so a config round-trips through
 * transformers / llama.cpp converters without a mapping table.
 *
 * `num_local_experts = 0` means dense (LlamaForCausalLM); `> 0` replaces every MLP by a
 * sparse MoE block (MixtralForCausalLM).
 */
export interface ModelConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** < num_attention_heads gives grouped-query attention; must divide it. */
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  /** Std of the normal init of matrices (HF `initializer_range`). */
  initializer_range: number;
  bos_token_id: number;
  eos_token_id: number;
  num_local_experts: number;
  num_experts_per_tok: number;
  router_aux_loss_coef: number;
}

/**
 * The lab's default dense model: d_model 256, 4 layers of 4 heads, SwiGLU width 688
 * (~8/3 * 256 rounded to a multiple of 16), vocab 4096, context 256, tied embeddings.
 */
export const DEFAULT_DENSE_CONFIG: Readonly<ModelConfig> = Object.freeze({
  vocab_size: 4096,
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  head_dim: 64,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  initializer_range: 0.02,
  bos_token_id: 1,
  eos_token_id: 2,
  num_local_experts: 0,
  num_experts_per_tok: 2,
  router_aux_loss_coef: 0.01,
});

/**
 * The lab's default MoE model: the dense trunk with 8 experts of width 344, top-2, so
 * the active MLP compute per token equals the dense model's (2 * 344 = 688).
 * Aux-loss coefficient 0.01 (Switch Transformer / OLMoE; HF's Mixtral default is 0.001,
 * too weak to prevent collapse at this scale).
 */
export const DEFAULT_MOE_CONFIG: Readonly<ModelConfig> = Object.freeze({
  ...DEFAULT_DENSE_CONFIG,
  intermediate_size: 344,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  router_aux_loss_coef: 0.01,
});

/** Field-by-field equality (key order and extra keys do not matter). */
export function sameConfig(a: ModelConfig, b: ModelConfig): boolean {
  return CONFIG_KEYS.every((k) => a[k] === b[k]);
}

const CONFIG_KEYS = Object.keys(DEFAULT_DENSE_CONFIG) as (keyof ModelConfig)[];

export function isMoe(c: ModelConfig): boolean {
  return c.num_local_experts > 0;
}

/**
 * Fills unspecified fields from the dense defaults (MoE defaults when
 * `num_local_experts > 0` is given) and validates. `head_dim` defaults to
 * hidden_size / num_attention_heads and `num_key_value_heads` to num_attention_heads,
 * as transformers does.
 */
export function resolveConfig(partial: Partial<ModelConfig> = {}): ModelConfig {
  const moe = (partial.num_local_experts ?? 0) > 0;
  const base = moe ? DEFAULT_MOE_CONFIG : DEFAULT_DENSE_CONFIG;
  const heads = partial.num_attention_heads ?? base.num_attention_heads;
  const hidden = partial.hidden_size ?? base.hidden_size;
  const c: ModelConfig = {
    ...base,
    ...stripUndefined(partial),
    num_key_value_heads: partial.num_key_value_heads ?? heads,
    head_dim: partial.head_dim ?? Math.floor(hidden / heads),
  };
  validateConfig(c);
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function bad(msg: string): never {
  throw new PmaError("CONFIG_INVALID", `model config: ${msg}`);
}

/** Throws CONFIG_INVALID naming the first field that cannot describe a model. */
export function validateConfig(c: ModelConfig): void {
  const positiveInts: (keyof ModelConfig)[] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
  ];
  for (const k of positiveInts) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      bad(`${k} must be a positive integer, got ${String(v)}`);
  }
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    bad(
      `num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${c.num_key_value_heads})`,
    );
  }
  if (c.head_dim % 2 !== 0) bad(`head_dim must be even for rotary embeddings, got ${c.head_dim}`);
  if (!(c.rms_norm_eps > 0)) bad(`rms_norm_eps must be > 0, got ${c.rms_norm_eps}`);
  if (!(c.rope_theta > 0)) bad(`rope_theta must be > 0, got ${c.rope_theta}`);
  if (!(c.initializer_range >= 0)) bad(`initializer_range must be >= 0, got ${c.initializer_range}`);
  if (typeof c.tie_word_embeddings !== "boolean") bad("tie_word_embeddings must be a boolean");
  if (!Number.isInteger(c.num_local_experts) || c.num_local_experts < 0) {
    bad(`num_local_experts must be an integer >= 0 (0 = dense), got ${c.num_local_experts}`);
  }
  if (c.num_local_experts > 0) {
    const k = c.num_experts_per_tok;
    if (!Number.isInteger(k) || k < 1 || k > c.num_local_experts) {
      bad(`num_experts_per_tok must be in 1..num_local_experts (${c.num_local_experts}), got ${k}`);
    }
    if (!(c.router_aux_loss_coef >= 0))
      bad(`router_aux_loss_coef must be >= 0, got ${c.router_aux_loss_coef}`);
  }
  for (const k of ["bos_token_id", "eos_token_id"] as const) {
    const v = c[k];
    if (!Number.isInteger(v) || v < 0 || v >= c.vocab_size)
      bad(`${k} must be a token id below vocab_size, got ${v}`);
  }
}

export type TorchDtype = "float32" | "bfloat16" | "float16";

/**
 * The Hugging Face `config.json` object for this model, loadable by transformers as
 * LlamaForCausalLM or MixtralForCausalLM. `torch_dtype` should say how the weights are
 * stored in the accompanying safetensors file.
 */
export function toHfConfig(c: ModelConfig, torchDtype: TorchDtype = "float32"): Record<string, unknown> {
  const common = {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    hidden_act: "silu",
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: null,
    tie_word_embeddings: c.tie_word_embeddings,
    initializer_range: c.initializer_range,
    attention_dropout: 0.0,
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    torch_dtype: torchDtype,
    use_cache: true,
  };
  if (!isMoe(c)) {
    return {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      ...common,
      attention_bias: false,
      mlp_bias: false,
      pretraining_tp: 1,
    };
  }
  return {
    architectures: ["MixtralForCausalLM"],
    model_type: "mixtral",
    ...common,
    num_local_experts: c.num_local_experts,
    num_experts_per_tok: c.num_experts_per_tok,
    router_aux_loss_coef: c.router_aux_loss_coef,
    // transformers adds the aux loss to the training loss only when this is set.
    output_router_logits: true,
    router_jitter_noise: 0.0,
    sliding_window: null,
  };
}

/**
 * Reads a Hugging Face config.json object (Llama or Mixtral) back into a ModelConfig,
 * applying transformers' defaults for absent fields. Unknown keys are ignored.
 */
export function fromHfConfig(json: unknown): ModelConfig {
  if (json === null || typeof json !== "object") bad("config.json must be an object");
  const o = json as Record<string, unknown>;
  const type = o["model_type"];
  if (type !== "llama" && type !== "mixtral")
    bad(`model_type must be "llama" or "mixtral", got ${JSON.stringify(type)}`);
  const num = (k: string): number | undefined => {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number") bad(`${k} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const act = o["hidden_act"];
  if (act !== undefined && act !== "silu") bad(`hidden_act must be "silu", got ${JSON.stringify(act)}`);
  const tie = o["tie_word_embeddings"];
  if (tie !== undefined && typeof tie !== "boolean") bad("tie_word_embeddings must be a boolean");
  const moe = type === "mixtral";
  const partial: Partial<ModelConfig> = {
    vocab_size: num("vocab_size"),
    hidden_size: num("hidden_size"),
    intermediate_size: num("intermediate_size"),
    num_hidden_layers: num("num_hidden_layers"),
    num_attention_heads: num("num_attention_heads"),
    num_key_value_heads: num("num_key_value_heads"),
    head_dim: num("head_dim"),
    max_position_embeddings: num("max_position_embeddings"),
    rms_norm_eps: num("rms_norm_eps"),
    rope_theta: num("rope_theta"),
    initializer_range: num("initializer_range"),
    bos_token_id: num("bos_token_id"),
    eos_token_id: num("eos_token_id"),
    // transformers' own default for Llama and Mixtral is untied.
    tie_word_embeddings: tie ?? false,
    num_local_experts: moe ? (num("num_local_experts") ?? 8) : 0,
    num_experts_per_tok: moe ? (num("num_experts_per_tok") ?? 2) : undefined,
    router_aux_loss_coef: moe ? (num("router_aux_loss_coef") ?? 0.001) : undefined,
  };
  return resolveConfig(partial);
}
