import { PmaError } from "../common/errors.js";

/**
 * The coefficients of each merge method: N checkpoints, oldest first, become N
 * coefficients that sum to 1 (unless the user asks for raw custom weights). The merged
 * model is sum_i c_i * M_i. methods.ts names the methods and their parameters.
 */

/** Decay shapes for schedule-derived (WSM-style) coefficients. */
export const DECAY_SHAPES = ["1-sqrt", "linear", "cosine"] as const;
export type DecayShape = (typeof DECAY_SHAPES)[number];

/** An interval of numbers, each end open or closed. */
export interface NumberRange {
  min: number;
  max: number;
  minOpen: boolean;
  maxOpen: boolean;
}

export function inRange(x: number, r: NumberRange): boolean {
  return (r.minOpen ? x > r.min : x >= r.min) && (r.maxOpen ? x < r.max : x <= r.max);
}

/** "(0, 1]" */
export function formatRange(r: NumberRange): string {
  return `${r.minOpen ? "(" : "["}${r.min}, ${r.max}${r.maxOpen ? ")" : "]"}`;
}

/** EMA's smoothing factor a: a = 1 keeps only the newest checkpoint; a = 0 would ignore it. */
export const EMA_ALPHA_RANGE: NumberRange = { min: 0, max: 1, minOpen: true, maxOpen: false };

/** Simple Moving Average: every checkpoint counts the same (paper Eq. 3). */
export function smaCoefficients(n: number): number[] {
  requireCount(n);
  return Array.from({ length: n }, () => 1 / n);
}

/** Weighted Moving Average with w_i = i, normalised (paper Eq. 5). */
export function wmaCoefficients(n: number): number[] {
  requireCount(n);
  const sum = (n * (n + 1)) / 2;
  return Array.from({ length: n }, (_, i) => (i + 1) / sum);
}

/**
 * Exponential Moving Average by the paper's recursion (Eq. 4):
 *   M_avg(1) = M_1,  M_avg(i) = a * M_i + (1 - a) * M_avg(i-1)  for i = 2..N.
 * Unrolled, M_avg(N) = sum_i c_i M_i with
 *   c_1 = (1 - a)^(N-1)   and   c_i = a * (1 - a)^(N-i)  for i >= 2.
 * These sum to exactly 1. The paper's section 4.2 writes w_i = a(1 - a)^(N-i) for every
 * i; that differs only in the oldest checkpoint (a(1-a)^(N-1) instead of (1-a)^(N-1))
 * and sums to 1 - (1-a)^N, so normalising it would give a different merge. We follow
 * the recursion, which is what an online EMA over the checkpoints computes.
 */
export function emaCoefficients(n: number, alpha: number): number[] {
  requireCount(n);
  if (!inRange(alpha, EMA_ALPHA_RANGE)) {
    throw new PmaError(
      "WEIGHTS_INVALID",
      `EMA alpha must be in ${formatRange(EMA_ALPHA_RANGE)}, got ${alpha}`,
    );
  }
  return Array.from({ length: n }, (_, idx) => {
    const i = idx + 1;
    return i === 1 ? Math.pow(1 - alpha, n - 1) : alpha * Math.pow(1 - alpha, n - i);
  });
}

/**
 * Schedule-derived coefficients in the style of WSM (warmup-stable-merge) and Megatron's
 * weighted_merge: the merge that imitates decaying the learning rate by `decay` over the
 * window. Write checkpoint k as M_1 + sum_{t=2..k} u_t (u_t the update between
 * checkpoints t-1 and t). Then sum_i c_i M_i = M_1 + sum_t u_t * (sum_{i>=t} c_i), while
 * annealing scales update t by the LR multiplier f_t. Matching the two gives
 * sum_{i>=t} c_i = f_t, i.e. c_1 = 1 - f_2, c_k = f_k - f_{k+1}, c_N = f_N, with
 * f_k = decay((k-1)/N) falling from 1. Linear decay gives exactly SMA; 1-sqrt decays
 * fast at first and so weights older checkpoints more.
 */
export function wsmCoefficients(n: number, decay: DecayShape): number[] {
  requireCount(n);
  const shape = (x: number) =>
    decay === "linear" ? 1 - x : decay === "1-sqrt" ? 1 - Math.sqrt(x) : (1 + Math.cos(Math.PI * x)) / 2;
  // f_k for k = 1..N (f_1 = shape(0) = 1), and f_{N+1} = 0 closes the telescoping sum.
  const f = (k: number) => (k > n ? 0 : shape((k - 1) / n));
  return Array.from({ length: n }, (_, idx) => f(idx + 1) - f(idx + 2));
}

/** User-given weights, oldest first; normalised to sum 1 unless normalize === false. */
export function customCoefficients(weights: number[], normalize = true): number[] {
  requireCount(weights.length);
  for (const w of weights) {
    if (!Number.isFinite(w))
      throw new PmaError("WEIGHTS_INVALID", `weights must be finite numbers, got ${w}`);
  }
  if (!normalize) return [...weights];
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) {
    throw new PmaError(
      "WEIGHTS_INVALID",
      "custom weights sum to 0 and cannot be normalised; pass --no-normalize to use them as given",
    );
  }
  return weights.map((w) => w / sum);
}

function requireCount(n: number): void {
  if (!Number.isInteger(n) || n < 1)
    throw new PmaError("WEIGHTS_INVALID", `need at least one checkpoint to merge, got ${n}`);
}
