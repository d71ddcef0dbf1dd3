import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SafetensorsWriter, type TensorSpec } from "../formats/safetensors-writer.js";
import { encodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import { torchDtypeName, type FloatDType } from "../tensor/dtype.js";
import { numel } from "../tensor/shape.js";
import { stringifyHfConfig } from "../formats/hf-config-json.js";

/**
 * A synthetic pre-training run: checkpoints of a Llama-shaped model whose weights
 * wander around a fixed optimum theta* as SGD iterates do in a constant-LR phase:
 *   theta_i = theta* + drift * r^i * d + noise * u_i
 * with d a fixed direction and u_i fresh noise per checkpoint. Averaging cancels the
 * noise, which is the effect `pma demo` shows. Values come from an integer hash of
 * (seed, tensor, element, checkpoint), so any chunk can be generated independently and
 * the run is identical on every machine; generation streams, so checkpoints of any
 * size can be written in bounded memory (the merge benchmark writes gigabytes).
 */
export interface SyntheticModel {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  vocabSize: number;
  heads: number;
}

export interface SyntheticRunOptions {
  dir: string;
  model: SyntheticModel;
  checkpoints: number;
  /** Step between checkpoints; tokens = step * tokensPerStep. */
  stepInterval: number;
  tokensPerStep: number;
  dtype: FloatDType;
  seed?: number;
  noise?: number;
  drift?: number;
  decay?: number;
}

export function llamaTensorSpecs(m: SyntheticModel, dtype: FloatDType): TensorSpec[] {
  const h = m.hiddenSize;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", dtype, shape: [m.vocabSize, h] }];
  for (let i = 0; i < m.layers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype, shape: [h] },
      { name: `${p}.self_attn.q_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.self_attn.k_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.self_attn.v_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.self_attn.o_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.post_attention_layernorm.weight`, dtype, shape: [h] },
      { name: `${p}.mlp.gate_proj.weight`, dtype, shape: [m.intermediateSize, h] },
      { name: `${p}.mlp.up_proj.weight`, dtype, shape: [m.intermediateSize, h] },
      { name: `${p}.mlp.down_proj.weight`, dtype, shape: [h, m.intermediateSize] },
    );
  }
  specs.push(
    { name: "model.norm.weight", dtype, shape: [h] },
    { name: "lm_head.weight", dtype, shape: [m.vocabSize, h] },
  );
  return specs;
}

/** A uniform value in [-1, 1) from a 32-bit integer hash (lowbias32). */
function hashUniform(a: number, b: number, c: number): number {
  let x = (Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca77) ^ Math.imul(c, 0xc2b2ae3d)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return (x >>> 0) / 2147483648 - 1;
}

function tensorSeed(seed: number, name: string): number {
  let h = seed | 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h;
}

/** Per-tensor constants, so the per-element work is three hashes. */
export interface TensorGenerator {
  seed: number;
  isNorm: boolean;
}

export function tensorGenerator(seed: number, name: string): TensorGenerator {
  return { seed: tensorSeed(seed, name), isNorm: name.endsWith("norm.weight") };
}

/** theta* of one element: norms near 1, weights small, as in a trained model. */
export function optimumValue(g: TensorGenerator, index: number): number {
  const u = hashUniform(g.seed, index, 0x51ed);
  return g.isNorm ? 1 + 0.1 * u : 0.02 * u;
}

/** Fills `out` with elements [start, start + out.length) of checkpoint `c`'s tensor. */
export function fillCheckpointValues(
  g: TensorGenerator,
  start: number,
  c: number,
  o: { noise: number; drift: number; decay: number },
  out: Float64Array,
): void {
  const driftScale = o.drift * Math.pow(o.decay, c) * 0.02;
  const noiseScale = o.noise * 0.02;
  for (let i = 0; i < out.length; i++) {
    const index = start + i;
    out[i] =
      optimumValue(g, index) +
      driftScale * hashUniform(g.seed, index, 0xd1f7) +
      noiseScale * hashUniform(g.seed, index, c + 1);
  }
}

const CHUNK = 1 << 18;

/** Writes `checkpoints` Trainer-style folders `checkpoint-<step>` and returns their paths. */
export async function writeSyntheticRun(opts: SyntheticRunOptions): Promise<string[]> {
  const o = {
    seed: opts.seed ?? 1,
    noise: opts.noise ?? 0.5,
    drift: opts.drift ?? 0.5,
    decay: opts.decay ?? 0.8,
    checkpoints: opts.checkpoints,
  };
  const specs = llamaTensorSpecs(opts.model, opts.dtype);
  const size = floatDTypeBytes(opts.dtype);
  const values = new Float64Array(CHUNK);
  const bytes = new Uint8Array(CHUNK * size);
  const paths: string[] = [];
  for (let c = 0; c < opts.checkpoints; c++) {
    const step = (c + 1) * opts.stepInterval;
    const dir = join(opts.dir, `checkpoint-${step}`);
    await mkdir(dir, { recursive: true });
    const writer = await SafetensorsWriter.create(dir, specs, { shardSize: Number.MAX_SAFE_INTEGER });
    for (const spec of specs) {
      const n = numel(spec.shape);
      const gen = tensorGenerator(o.seed, spec.name);
      for (let start = 0; start < n; start += CHUNK) {
        const len = Math.min(CHUNK, n - start);
        const v = values.subarray(0, len);
        fillCheckpointValues(gen, start, c, o, v);
        const b = bytes.subarray(0, len * size);
        encodeFloats(v, opts.dtype, b);
        await writer.write(spec.name, start * size, b);
      }
    }
    await writer.finish();
    await writeFile(join(dir, "config.json"), stringifyHfConfig(llamaConfig(opts.model, opts.dtype)));
    await writeFile(
      join(dir, "trainer_state.json"),
      JSON.stringify(
        { global_step: step, num_input_tokens_seen: step * opts.tokensPerStep, log_history: [] },
        null,
        2,
      ) + "\n",
    );
    paths.push(dir);
  }
  return paths;
}

function llamaConfig(m: SyntheticModel, dtype: FloatDType): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: m.vocabSize,
    hidden_size: m.hiddenSize,
    intermediate_size: m.intermediateSize,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    num_key_value_heads: m.heads,
    head_dim: m.hiddenSize / m.heads,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: torchDtypeName(dtype),
  };
}
