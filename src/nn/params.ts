import { PmaError } from "../common/errors.js";
import type { ModelConfig } from "./config.js";
import { isMoe } from "./config.js";
import type { MatmulBackend } from "./kernels/matmul.js";
import { hashString, Rng } from "./rng.js";
import { numel } from "../tensor/shape.js";

/** One named tensor of a state dict: Hugging Face name, torch shape, f32 data. */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface ParamInfo {
  name: string;
  shape: number[];
  /** Element offset into the flat parameter (and gradient) array. */
  offset: number;
  size: number;
  /**
   * Whether AdamW applies weight decay. Rule: matrices (>= 2 dims: linear weights,
   * embeddings, router) decay; vectors (RMSNorm gains, the only 1-D tensors here) do
   * not, as in nanoGPT's `p.dim() >= 2` grouping.
   */
  decay: boolean;
  /** Init: normal(0, std^2), or all ones when std is null (norm gains). */
  initStd: number | null;
}

/** Per-block tensors as views into one flat array (parameters or gradients). */
export interface BlockTensors {
  inputNorm: Float32Array;
  /** q_proj, k_proj, v_proj stacked: [(nh + 2 nkv) * hd, H], one GEMM for all three. */
  qkv: Float32Array;
  o: Float32Array;
  postNorm: Float32Array;
  /** Dense: gate_proj then up_proj stacked: [2I, H]. Null in MoE blocks. */
  gateUp: Float32Array | null;
  down: Float32Array | null;
  /** MoE: router [E, H]; per expert w1 then w3 stacked [2I, H], and w2 [H, I]. */
  router: Float32Array | null;
  expertW13: Float32Array[];
  expertW2: Float32Array[];
}

export interface ModelTensors {
  embed: Float32Array;
  layers: BlockTensors[];
  norm: Float32Array;
  /** The embedding itself when tie_word_embeddings. */
  lmHead: Float32Array;
}

/**
 * The layout of all parameters in one flat array, in Hugging Face module order. The
 * stacked pairs (q,k,v), (gate,up) and (w1,w3) are adjacent so the engine multiplies
 * them in one GEMM while the state dict still lists them under their own names.
 */
export function paramLayout(c: ModelConfig): ParamInfo[] {
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const hd = c.head_dim;
  const std = c.initializer_range;
  // GPT-2: residual-branch output projections scaled by 1/sqrt(2 * layers) so the
  // residual stream's variance does not grow with depth.
  const resStd = std / Math.sqrt(2 * c.num_hidden_layers);
  const out: ParamInfo[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], initStd: number | null): void => {
    const size = numel(shape);
    out.push({ name, shape, offset, size, decay: shape.length >= 2, initStd });
    offset += size;
  };
  add("model.embed_tokens.weight", [c.vocab_size, H], std);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], null);
    add(`${p}.self_attn.q_proj.weight`, [c.num_attention_heads * hd, H], std);
    add(`${p}.self_attn.k_proj.weight`, [c.num_key_value_heads * hd, H], std);
    add(`${p}.self_attn.v_proj.weight`, [c.num_key_value_heads * hd, H], std);
    add(`${p}.self_attn.o_proj.weight`, [H, c.num_attention_heads * hd], resStd);
    add(`${p}.post_attention_layernorm.weight`, [H], null);
    if (!isMoe(c)) {
      add(`${p}.mlp.gate_proj.weight`, [I, H], std);
      add(`${p}.mlp.up_proj.weight`, [I, H], std);
      add(`${p}.mlp.down_proj.weight`, [H, I], resStd);
    } else {
      add(`${p}.block_sparse_moe.gate.weight`, [c.num_local_experts, H], std);
      for (let e = 0; e < c.num_local_experts; e++) {
        const q = `${p}.block_sparse_moe.experts.${e}`;
        add(`${q}.w1.weight`, [I, H], std);
        add(`${q}.w3.weight`, [I, H], std);
        add(`${q}.w2.weight`, [H, I], resStd);
      }
    }
  }
  add("model.norm.weight", [H], null);
  if (!c.tie_word_embeddings) add("lm_head.weight", [c.vocab_size, H], std);
  return out;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

function shapeStr(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/**
 * All parameters of one model in a single flat Float32Array from `backend.alloc`
 * (and gradients in a second one with the same layout), exposed as named views. The
 * set is directly a state dict (`entries()`), and the flat arrays are what the
 * optimizer, gradient-norm and merge code iterate over.
 */
export class ParamSet {
  readonly config: ModelConfig;
  /** The backend whose memory holds `data` and `grad` (models sharing the set must use it). */
  readonly backend: MatmulBackend;
  readonly infos: readonly ParamInfo[];
  readonly numel: number;
  readonly data: Float32Array;
  readonly grad: Float32Array;
  readonly w: ModelTensors;
  readonly g: ModelTensors;
  private readonly byName: Map<string, ParamInfo>;

  constructor(config: ModelConfig, backend: MatmulBackend) {
    this.config = config;
    this.backend = backend;
    this.infos = paramLayout(config);
    const last = this.infos[this.infos.length - 1]!;
    this.numel = last.offset + last.size;
    this.data = backend.alloc(this.numel);
    this.grad = backend.alloc(this.numel);
    this.byName = new Map(this.infos.map((i) => [i.name, i]));
    this.w = this.views(this.data);
    this.g = this.views(this.grad);
  }

  private views(flat: Float32Array): ModelTensors {
    const c = this.config;
    const v = (name: string, count = 1): Float32Array => {
      // `count` > 1 spans the next adjacent tensors too (stacked projections).
      const first = this.info(name);
      let end = first.offset + first.size;
      for (let k = 1; k < count; k++) {
        const next = this.infos[this.infos.indexOf(first) + k]!;
        end = next.offset + next.size;
      }
      return flat.subarray(first.offset, end);
    };
    const layers: BlockTensors[] = [];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      const moe = isMoe(c);
      const expertW13: Float32Array[] = [];
      const expertW2: Float32Array[] = [];
      for (let e = 0; moe && e < c.num_local_experts; e++) {
        const q = `${p}.block_sparse_moe.experts.${e}`;
        expertW13.push(v(`${q}.w1.weight`, 2));
        expertW2.push(v(`${q}.w2.weight`));
      }
      layers.push({
        inputNorm: v(`${p}.input_layernorm.weight`),
        qkv: v(`${p}.self_attn.q_proj.weight`, 3),
        o: v(`${p}.self_attn.o_proj.weight`),
        postNorm: v(`${p}.post_attention_layernorm.weight`),
        gateUp: moe ? null : v(`${p}.mlp.gate_proj.weight`, 2),
        down: moe ? null : v(`${p}.mlp.down_proj.weight`),
        router: moe ? v(`${p}.block_sparse_moe.gate.weight`) : null,
        expertW13,
        expertW2,
      });
    }
    const embed = v("model.embed_tokens.weight");
    return {
      embed,
      layers,
      norm: v("model.norm.weight"),
      lmHead: c.tie_word_embeddings ? embed : v("lm_head.weight"),
    };
  }

  info(name: string): ParamInfo {
    const i = this.byName.get(name);
    if (i === undefined) {
      throw new PmaError(
        "TENSOR_NOT_FOUND",
        `parameter ${name} does not exist in this model (${this.infos.length} tensors)`,
      );
    }
    return i;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** View of one parameter tensor (writes go into the model). */
  get(name: string): Float32Array {
    const i = this.info(name);
    return this.data.subarray(i.offset, i.offset + i.size);
  }

  gradOf(name: string): Float32Array {
    const i = this.info(name);
    return this.grad.subarray(i.offset, i.offset + i.size);
  }

  /** The state dict: views (not copies) in layout order, ready for a safetensors writer. */
  entries(): NamedTensor[] {
    return this.infos.map((i) => ({ name: i.name, shape: [...i.shape], data: this.get(i.name) }));
  }

  gradEntries(): NamedTensor[] {
    return this.infos.map((i) => ({ name: i.name, shape: [...i.shape], data: this.gradOf(i.name) }));
  }

  zeroGrad(): void {
    this.grad.fill(0);
  }

  /**
   * Seeded init: each tensor draws from its own stream seeded by hash(seed, name), so a
   * tensor's init does not depend on which other tensors exist (tied vs untied, dense vs
   * MoE share the trunk's init for the same seed).
   */
  init(seed: number): void {
    for (const i of this.infos) {
      const view = this.get(i.name);
      if (i.initStd === null) view.fill(1);
      else new Rng(hashString(`${seed >>> 0}:${i.name}`)).fillNormal(view, i.initStd);
    }
    this.zeroGrad();
  }

  /**
   * Copies a state dict into the parameters. Every parameter must be present with the
   * right element count (and shape, when given); unknown names are refused so a
   * checkpoint of another architecture cannot load half-way. A tied model accepts an
   * `lm_head.weight` equal to the embedding (some exporters write both).
   */
  load(
    source:
      ReadonlyMap<string, Float32Array | NamedTensor> | Readonly<Record<string, Float32Array | NamedTensor>>,
  ): void {
    const map = source instanceof Map ? source : new Map(Object.entries(source));
    const staged: [ParamInfo, Float32Array][] = [];
    for (const i of this.infos) {
      const src = map.get(i.name);
      if (src === undefined) {
        throw new PmaError(
          "TENSOR_NOT_FOUND",
          `state dict has no ${i.name} ${shapeStr(i.shape)}; load a checkpoint of the same architecture`,
        );
      }
      const data = src instanceof Float32Array ? src : src.data;
      const shape = src instanceof Float32Array ? null : src.shape;
      if (shape !== null && shapeStr(shape) !== shapeStr(i.shape)) {
        throw new PmaError(
          "TENSOR_SIZE_MISMATCH",
          `${i.name}: shape ${shapeStr(shape)} in the state dict, model expects ${shapeStr(i.shape)}`,
        );
      }
      if (data.length !== i.size) {
        throw new PmaError(
          "TENSOR_SIZE_MISMATCH",
          `${i.name}: ${data.length} elements in the state dict, model expects ${i.size} ${shapeStr(i.shape)}`,
        );
      }
      staged.push([i, data]);
    }
    for (const name of map.keys()) {
      if (this.byName.has(name)) continue;
      if (name === "lm_head.weight" && this.config.tie_word_embeddings) {
        const src = map.get(name)!;
        const data = src instanceof Float32Array ? src : src.data;
        const embed = map.get("model.embed_tokens.weight")!;
        const e = embed instanceof Float32Array ? embed : embed.data;
        if (sameValues(data, e)) continue;
        throw new PmaError(
          "CHECKPOINT_MISMATCH",
          "lm_head.weight differs from model.embed_tokens.weight but the config ties them; set tie_word_embeddings false",
        );
      }
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `state dict has ${name}, which this model does not have; check num_hidden_layers / experts / tie_word_embeddings`,
      );
    }
    for (const [i, data] of staged) this.data.set(data, i.offset);
  }
}
