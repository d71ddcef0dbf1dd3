/**
 * Checkpoints as flat parameter vectors (the engine's parameter layout) and the few
 * vector operations the analyses need, accumulated in float64.
 */
import type { Model } from "../nn/model.js";
import { readWeights } from "../train/weights-io.js";

/** The checkpoint's weights in `model`'s flat layout (a fresh copy; the model's own parameters are overwritten). */
export async function loadVector(model: Model, path: string): Promise<Float32Array> {
  model.params.load((await readWeights(path)).tensors);
  return Float32Array.from(model.params.data);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: Float32Array): number {
  return Math.sqrt(dot(a, a));
}

/** a - b */
export function sub(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** sum_i c_i v_i, accumulated in float64 per element. */
export function combine(vectors: readonly Float32Array[], coefficients: readonly number[]): Float32Array {
  const n = vectors[0]!.length;
  const out = new Float32Array(n);
  for (let e = 0; e < n; e++) {
    let s = 0;
    for (let k = 0; k < vectors.length; k++) s += coefficients[k]! * vectors[k]![e]!;
    out[e] = s;
  }
  return out;
}

/** base + a * u (+ b * w), into `out`. */
export function along(
  out: Float32Array,
  base: Float32Array,
  a: number,
  u: Float32Array,
  b = 0,
  w?: Float32Array,
): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = base[i]! + a * u[i]! + (w === undefined ? 0 : b * w[i]!);
  return out;
}
