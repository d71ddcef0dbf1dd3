/**
 * A merge candidate on a run's checkpoint grid: `count` checkpoints `stride` saves apart
 * ending at checkpoint `end` (0-based, oldest first), combined by a merge method. V, in
 * the paper's terms, is `stride` times the run's save spacing, N is `count`.
 */
import { PmaError } from "../common/errors.js";
import { coefficientsFor, PARAM_DEFAULTS, type MethodSpec } from "../merge/methods.js";

export const TUNE_METHODS = ["sma", "wma", "ema", "wsm-1-sqrt", "wsm-cosine"] as const;
export type TuneMethod = (typeof TUNE_METHODS)[number];

export interface Candidate {
  method: TuneMethod;
  /** EMA only, in (0, 1). */
  alpha?: number;
  stride: number;
  count: number;
  end: number;
}

/** Checkpoint indices of the window, oldest first. */
export function windowIndices(c: Pick<Candidate, "stride" | "count" | "end">): number[] {
  const first = c.end - (c.count - 1) * c.stride;
  if (!Number.isInteger(c.stride) || !Number.isInteger(c.count) || c.stride < 1 || c.count < 1 || first < 0) {
    throw new PmaError(
      "INTERNAL",
      `window of ${c.count} checkpoints ${c.stride} apart ending at ${c.end} does not fit the run`,
    );
  }
  return Array.from({ length: c.count }, (_, i) => first + i * c.stride);
}

export function methodSpec(c: Candidate): MethodSpec {
  switch (c.method) {
    case "sma":
    case "wma":
      return { method: c.method };
    case "ema":
      return { method: "ema", alpha: c.alpha ?? PARAM_DEFAULTS.alpha };
    case "wsm-1-sqrt":
      return { method: "wsm", decay: "1-sqrt" };
    case "wsm-cosine":
      return { method: "wsm", decay: "cosine" };
  }
}

/** Coefficients over windowIndices(c), oldest first, summing to 1. */
export function candidateCoefficients(c: Candidate): number[] {
  return coefficientsFor(methodSpec(c), c.count);
}

/** EMA's alpha is kept to 4 decimals, so a key names exactly one merge. */
export function roundAlpha(a: number): number {
  return Math.round(a * 1e4) / 1e4;
}

/** A stable name for the cache and the table. */
export function candidateKey(c: Candidate): string {
  const m = c.method === "ema" ? `ema(${roundAlpha(c.alpha ?? PARAM_DEFAULTS.alpha)})` : c.method;
  return `${m} stride=${c.stride} count=${c.count} end=${c.end}`;
}

/** Uniform and linearly weighted windows can be read from prefix sums; the rest need each checkpoint. */
export function prefixKind(c: Candidate): "uniform" | "linear" | null {
  if (c.method === "sma") return "uniform";
  if (c.method === "wma") return "linear";
  return null;
}
