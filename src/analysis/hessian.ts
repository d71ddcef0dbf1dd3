/**
 * The Hessian cross terms of paper section 4.6: for checkpoints theta_i of a window and
 * a reference point theta*, with delta_i = theta_i - theta*, the matrix
 * M_ij = delta_i' H delta_j, H the Hessian of the loss at theta*.
 *
 * H delta_j comes from a central finite difference of gradients,
 *   H v ~ (g(theta* + h v) - g(theta* - h v)) / (2h),
 * whose error is O(h^2) (third derivatives) plus float32 rounding of the gradients
 * divided by h; M's asymmetry |M_ij - M_ji| measures both, since the exact M is
 * symmetric. The gradients are of the mean loss over fixed batches, so M is the
 * Hessian form of exactly that loss.
 *
 * From M, with the quadratic model L(theta) ~ L* + g'delta + 1/2 delta'H delta about theta*:
 *   L(theta_avg) - mean_i L(theta_i) ~ 1/(2k^2) sum_ij M_ij - 1/(2k) sum_i M_ii   (the g terms cancel)
 * and the paper's inequality (15), sum_{i != j} M_ij < (k-1) sum_i M_ii, is the condition
 * that this predicted difference is negative (the merge better than the average checkpoint).
 */
import { lossAndGradient, type Batch } from "../nn/grad.js";
import type { Model } from "../nn/model.js";
import { along, dot, sub } from "./vectors.js";

export interface CrossTerms {
  /** M_ij = delta_i' H delta_j, symmetrised ((M + M') / 2). */
  matrix: number[][];
  /** max |M_ij - M_ji| / max |M_ij| before symmetrising. */
  asymmetry: number;
  /** g' delta_i, the linear term of each checkpoint about theta*. */
  linear: number[];
  /** Loss at theta* on the batches. */
  centerLoss: number;
  /** Finite-difference step, as a fraction of each delta. */
  h: number;
}

export interface QuadraticCheck {
  /** sum_{i != j} M_ij and (k-1) sum_i M_ii: inequality (15) holds when the first is smaller. */
  offDiagonalSum: number;
  bound: number;
  holds: boolean;
  /** Share of off-diagonal entries that are negative. */
  negativeShare: number;
  /** Predicted L(theta_avg) - mean_i L(theta_i) from the quadratic model. */
  predictedGain: number;
}

/** Cross terms of `points` about `center`; `onUnit` is called after each Hessian-vector product (for progress and yielding). */
export async function crossTerms(
  model: Model,
  batches: readonly Batch[],
  center: Float32Array,
  points: readonly Float32Array[],
  opts: { h?: number; onUnit?: (done: number, total: number) => Promise<void> | void } = {},
): Promise<CrossTerms> {
  const h = opts.h ?? 0.05;
  const k = points.length;
  const deltas = points.map((p) => sub(p, center));
  const at = new Float32Array(center.length);
  const c = lossAndGradient(model, center, batches);
  const g0 = Float32Array.from(c.grad);
  const hv: Float32Array[] = [];
  for (let j = 0; j < k; j++) {
    const plus = Float32Array.from(lossAndGradient(model, along(at, center, h, deltas[j]!), batches).grad);
    const minus = lossAndGradient(model, along(at, center, -h, deltas[j]!), batches).grad;
    const out = new Float32Array(center.length);
    for (let e = 0; e < out.length; e++) out[e] = (plus[e]! - minus[e]!) / (2 * h);
    hv.push(out);
    await opts.onUnit?.(j + 1, k);
  }
  const raw = deltas.map((d) => hv.map((v) => dot(d, v)));
  let maxAbs = 0;
  let maxAsym = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      maxAbs = Math.max(maxAbs, Math.abs(raw[i]![j]!));
      maxAsym = Math.max(maxAsym, Math.abs(raw[i]![j]! - raw[j]![i]!));
    }
  }
  const matrix = raw.map((row, i) => row.map((x, j) => (x + raw[j]![i]!) / 2));
  return {
    matrix,
    asymmetry: maxAbs > 0 ? maxAsym / maxAbs : 0,
    linear: deltas.map((d) => dot(g0, d)),
    centerLoss: c.loss,
    h,
  };
}

export function quadraticCheck(m: number[][]): QuadraticCheck {
  const k = m.length;
  let diag = 0;
  let off = 0;
  let negative = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      if (i === j) diag += m[i]![j]!;
      else {
        off += m[i]![j]!;
        if (m[i]![j]! < 0) negative++;
      }
    }
  }
  const bound = (k - 1) * diag;
  return {
    offDiagonalSum: off,
    bound,
    holds: off < bound,
    negativeShare: k > 1 ? negative / (k * (k - 1)) : 0,
    predictedGain: (diag + off) / (2 * k * k) - diag / (2 * k),
  };
}

/** Mean loss over the batches at `params` (forward passes only). */
export function lossAt(model: Model, params: Float32Array, batches: readonly Batch[]): number {
  model.params.data.set(params);
  let s = 0;
  for (const b of batches) {
    model.forward(b.tokens, b.targets, b.mask);
    s += model.lastLoss.ce;
  }
  return s / batches.length;
}
