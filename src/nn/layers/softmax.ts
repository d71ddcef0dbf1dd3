import { exp } from "./exp.js";

/**
 * Causal row softmax for attention scores laid out as R rows of S keys, where row r
 * is query position r % S (heads and batches stacked). Keys after the query position
 * get probability exactly 0, so the following full GEMMs need no mask.
 *
 * Returns the largest attention logit (a score before the softmax) of any row: its
 * growth is the attention-logit instability of small Transformers at high learning
 * rates (Wortsman et al., 2023), and the max is computed here anyway.
 */
export function causalSoftmaxForward(att: Float32Array, R: number, S: number): number {
  let largest = -Infinity;
  for (let r = 0; r < R; r++) {
    const o = r * S;
    const n = (r % S) + 1;
    let max = -Infinity;
    for (let j = 0; j < n; j++) if (att[o + j]! > max) max = att[o + j]!;
    if (max > largest) largest = max;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const e = exp(att[o + j]! - max);
      att[o + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < n; j++) att[o + j]! *= inv;
    for (let j = n; j < S; j++) att[o + j] = 0;
  }
  return largest;
}

/** In place: dP -> dS = P * (dP - sum_j dP_j P_j); masked entries become 0. */
export function causalSoftmaxBackward(datt: Float32Array, att: Float32Array, R: number, S: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * S;
    const n = (r % S) + 1;
    let dot = 0;
    for (let j = 0; j < n; j++) dot += datt[o + j]! * att[o + j]!;
    for (let j = 0; j < n; j++) datt[o + j] = att[o + j]! * (datt[o + j]! - dot);
    for (let j = n; j < S; j++) datt[o + j] = 0;
  }
}
