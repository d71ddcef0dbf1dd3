/**
 * How a Llama / Mixtral checkpoint (Hugging Face names) maps onto llama.cpp's "llama"
 * architecture: the hyper-parameter keys with the types llama.cpp's loader checks
 * (u32 integers, f32 floats), and one entry per GGUF tensor saying which checkpoint
 * tensors fill it and how.
 *
 * Two transformations matter for the numbers, not just for loading:
 * - Rotary embeddings. Hugging Face rotates the two halves of each head (element i
 *   pairs with i + d/2); llama.cpp's "llama" rope rotates adjacent pairs (2i, 2i+1).
 *   Permuting the rows of q_proj and k_proj within each head so that row (j*d/2 + i)
 *   moves to (2i + j) makes the two conventions compute the same attention scores.
 * - Mixtral experts are stacked into one 3-D tensor per projection
 *   (blk.N.ffn_{gate,up,down}_exps, expert index outermost); w1 is the gate, w3 the up
 *   projection, w2 the down projection.
 * Tied embeddings write no output.weight: llama.cpp then uses token_embd for the head.
 */
import { PmaError } from "../common/errors.js";
import { gguf, type GgufValue } from "../formats/gguf-values.js";
import { isMoe, type ModelConfig } from "../nn/config.js";

/**
 * Rows of a [heads * headDim, cols] projection reordered from Hugging Face's half-split
 * rotary layout to llama.cpp's interleaved one (`w.reshape(heads, 2, headDim/2, cols)
 * .swapaxes(1, 2)` in llama.cpp's converter). `src` and the result are row-major.
 */
export function permuteRotaryRows<T extends Float32Array | Float64Array>(
  src: T,
  heads: number,
  headDim: number,
  cols: number,
): T {
  if (headDim % 2 !== 0 || src.length !== heads * headDim * cols) {
    throw new PmaError(
      "INTERNAL",
      `rotary permutation of ${src.length} values as ${heads} heads x ${headDim} x ${cols}`,
    );
  }
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const from = (h * headDim + j * half + i) * cols;
        const to = (h * headDim + 2 * i + j) * cols;
        out.set(src.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

export type RowTransform = { kind: "none" } | { kind: "rotary"; heads: number };

/** One GGUF tensor: its name, torch-order shape, and the checkpoint tensors stacked into it. */
export interface GgufTensorSource {
  name: string;
  /** Torch order (outermost first); ggml dims are this reversed. */
  shape: number[];
  /** Checkpoint tensor names, concatenated along the outermost axis (one unless stacked). */
  parts: string[];
  transform: RowTransform;
  /**
   * Kept in f32 whatever the requested dtype, as llama.cpp's converter does: norm gains
   * (1-D) and the MoE router, whose few values decide which experts run.
   */
  keepF32: boolean;
}

/** Checkpoint tensors that carry no weights llama.cpp needs (old transformers saved them). */
export const IGNORED_CHECKPOINT_TENSORS = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** The GGUF tensors of a model with this config, in llama.cpp's converter order. */
export function llamaGgufTensors(c: ModelConfig): GgufTensorSource[] {
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const hd = c.head_dim;
  const out: GgufTensorSource[] = [];
  const none: RowTransform = { kind: "none" };
  const add = (
    name: string,
    shape: number[],
    parts: string[],
    transform: RowTransform = none,
    keepF32 = shape.length === 1,
  ): void => {
    out.push({ name, shape, parts, transform, keepF32 });
  };
  add("token_embd.weight", [c.vocab_size, H], ["model.embed_tokens.weight"]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const b = `blk.${l}`;
    add(`${b}.attn_norm.weight`, [H], [`${p}.input_layernorm.weight`]);
    add(`${b}.attn_q.weight`, [c.num_attention_heads * hd, H], [`${p}.self_attn.q_proj.weight`], {
      kind: "rotary",
      heads: c.num_attention_heads,
    });
    add(`${b}.attn_k.weight`, [c.num_key_value_heads * hd, H], [`${p}.self_attn.k_proj.weight`], {
      kind: "rotary",
      heads: c.num_key_value_heads,
    });
    add(`${b}.attn_v.weight`, [c.num_key_value_heads * hd, H], [`${p}.self_attn.v_proj.weight`]);
    add(`${b}.attn_output.weight`, [H, c.num_attention_heads * hd], [`${p}.self_attn.o_proj.weight`]);
    add(`${b}.ffn_norm.weight`, [H], [`${p}.post_attention_layernorm.weight`]);
    if (!isMoe(c)) {
      add(`${b}.ffn_gate.weight`, [I, H], [`${p}.mlp.gate_proj.weight`]);
      add(`${b}.ffn_up.weight`, [I, H], [`${p}.mlp.up_proj.weight`]);
      add(`${b}.ffn_down.weight`, [H, I], [`${p}.mlp.down_proj.weight`]);
    } else {
      const E = c.num_local_experts;
      const experts = (w: string): string[] =>
        Array.from({ length: E }, (_, e) => `${p}.block_sparse_moe.experts.${e}.${w}.weight`);
      add(`${b}.ffn_gate_inp.weight`, [E, H], [`${p}.block_sparse_moe.gate.weight`], none, true);
      add(`${b}.ffn_gate_exps.weight`, [E, I, H], experts("w1"));
      add(`${b}.ffn_up_exps.weight`, [E, I, H], experts("w3"));
      add(`${b}.ffn_down_exps.weight`, [E, H, I], experts("w2"));
    }
  }
  add("output_norm.weight", [H], ["model.norm.weight"]);
  if (!c.tie_word_embeddings) add("output.weight", [c.vocab_size, H], ["lm_head.weight"]);
  return out;
}

/** llama.cpp's `llama_ftype` for the file's dominant weight type (general.file_type). */
export const GGUF_FILE_TYPE: Record<"F32" | "F16" | "BF16", number> = { F32: 0, F16: 1, BF16: 32 };

/**
 * The general.* and llama.* keys. Every integer is u32 and every float f32: llama.cpp's
 * loader refuses a key stored with another type.
 */
export function llamaGgufHyperparameters(
  c: ModelConfig,
  name: string,
  fileType: keyof typeof GGUF_FILE_TYPE,
): [string, GgufValue][] {
  const keys: [string, GgufValue][] = [
    ["general.architecture", gguf.string("llama")],
    ["general.name", gguf.string(name)],
    ["general.file_type", gguf.u32(GGUF_FILE_TYPE[fileType])],
    ["llama.vocab_size", gguf.u32(c.vocab_size)],
    ["llama.context_length", gguf.u32(c.max_position_embeddings)],
    ["llama.embedding_length", gguf.u32(c.hidden_size)],
    ["llama.block_count", gguf.u32(c.num_hidden_layers)],
    ["llama.feed_forward_length", gguf.u32(c.intermediate_size)],
    ["llama.attention.head_count", gguf.u32(c.num_attention_heads)],
    ["llama.attention.head_count_kv", gguf.u32(c.num_key_value_heads)],
    // Written even when head_dim = hidden / heads: a config may set head_dim freely, and
    // llama.cpp would otherwise assume hidden / heads.
    ["llama.attention.key_length", gguf.u32(c.head_dim)],
    ["llama.attention.value_length", gguf.u32(c.head_dim)],
    ["llama.rope.dimension_count", gguf.u32(c.head_dim)],
    ["llama.rope.freq_base", gguf.f32(c.rope_theta)],
    ["llama.attention.layer_norm_rms_epsilon", gguf.f32(c.rms_norm_eps)],
  ];
  if (isMoe(c)) {
    keys.push(
      ["llama.expert_count", gguf.u32(c.num_local_experts)],
      ["llama.expert_used_count", gguf.u32(c.num_experts_per_tok)],
    );
  }
  return keys;
}
