/**
 * Independent references for the evaluation tests: random model weights (with their
 * float64 copies) and the summed log-probability of one sequence by the naive float64
 * forward of nn-ref64.ts, run on that sequence alone, with a float64 log-softmax.
 */
import type { ModelConfig } from "../../src/nn/config.js";
import { createJsBackend } from "../../src/nn/kernels/js.js";
import { ParamSet } from "../../src/nn/params.js";
import { lcg, model64, randn, type Params64 } from "../nn-ref64.js";

export function randomParams(c: ModelConfig, seed: number): { params: ParamSet; p64: Params64 } {
  const params = new ParamSet(c, createJsBackend());
  const r = lcg(seed);
  const values = new Map<string, Float32Array>();
  // Large enough weights that log-probs differ clearly between tokens and positions.
  for (const i of params.infos)
    values.set(i.name, i.shape.length === 1 ? randn(r, i.size, 0.2, 1) : randn(r, i.size, 0.5));
  params.load(values);
  const p64: Params64 = new Map(params.entries().map((e) => [e.name, Float64Array.from(e.data)]));
  return { params, p64 };
}

/** sum_{t >= from} log p(ids[t] | ids[< t]). */
export function referenceLogProb(
  c: ModelConfig,
  p64: Params64,
  ids: ArrayLike<number>,
  from: number,
): number {
  const n = ids.length - 1;
  const inputs = Int32Array.from({ length: n }, (_, t) => ids[t]!);
  const { logits } = model64(c, p64, inputs, new Int32Array(n).fill(-100), 1, n);
  let s = 0;
  for (let t = from; t < ids.length; t++) s += logSoftmax64(logits[t - 1]!, ids[t]!);
  return s;
}

export function logSoftmax64(row: Float64Array, target: number): number {
  const m = Math.max(...row);
  return row[target]! - (m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)));
}
