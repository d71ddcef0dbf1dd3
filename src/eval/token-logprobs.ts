/**
 * Per-token log-probabilities over the fixed held-out windows (data/heldout-windows.ts), the
 * common currency of pma's engine and llama.cpp: window i feeds stream[o .. o+S-1] and
 * scores log p(stream[o+t+1] | stream[o .. o+t]) for t < S, so both engines score the
 * same token ids at the same positions, with no BOS added by either.
 */
import { PmaError } from "../common/errors.js";
import type { Model } from "../nn/model.js";
import type { TokenStream } from "../data/batches.js";

/** Log-probabilities of the targets of each window, [windows x seq] row-major, in nats. */
export interface WindowLogprobs {
  /** Start offsets in the token stream. */
  windows: Uint32Array;
  seq: number;
  logprobs: Float64Array;
}

/** The seq + 1 tokens of the window starting at `offset`: inputs and, shifted by one, targets. */
export function windowTokens(stream: TokenStream, offset: number, seq: number): Int32Array {
  if (offset + seq + 1 > stream.length) {
    throw new PmaError(
      "RANGE_INVALID",
      `window at ${offset} of ${seq} + 1 tokens runs past the stream of ${stream.length}`,
    );
  }
  return Int32Array.from(stream.subarray(offset, offset + seq + 1));
}

/**
 * pma's engine: batched forward passes of a model of shape (batch, seq) whose
 * parameters are loaded; log-softmax per position in float64.
 */
export function pmaWindowLogprobs(model: Model, stream: TokenStream, windows: Uint32Array): WindowLogprobs {
  const S = model.seq;
  const V = model.config.vocab_size;
  const out = new Float64Array(windows.length * S);
  const tokens = new Int32Array(model.T);
  for (let w0 = 0; w0 < windows.length; w0 += model.batch) {
    const rows = Math.min(model.batch, windows.length - w0);
    tokens.fill(0);
    for (let r = 0; r < rows; r++) tokens.set(stream.subarray(windows[w0 + r]!, windows[w0 + r]! + S), r * S);
    const logits = model.infer(tokens);
    for (let r = 0; r < rows; r++) {
      const o = windows[w0 + r]!;
      for (let t = 0; t < S; t++) {
        const row = (r * S + t) * V;
        let max = -Infinity;
        for (let j = 0; j < V; j++) max = Math.max(max, logits[row + j]!);
        let sum = 0;
        for (let j = 0; j < V; j++) sum += Math.exp(logits[row + j]! - max);
        out[(w0 + r) * S + t] = logits[row + stream[o + t + 1]!]! - max - Math.log(sum);
      }
    }
  }
  return { windows, seq: S, logprobs: out };
}

/** Mean negative log-likelihood and perplexity of scored tokens. */
export function summarizeLogprobs(logprobs: Float64Array): {
  loss: number;
  perplexity: number;
  tokens: number;
} {
  let sum = 0;
  for (const lp of logprobs) sum -= lp;
  const loss = sum / logprobs.length;
  return { loss, perplexity: Math.exp(loss), tokens: logprobs.length };
}

export interface LogprobAgreement {
  tokens: number;
  /** Mean and largest |a - b| over tokens, in nats. */
  meanAbsDiff: number;
  maxAbsDiff: number;
  /** Where the largest difference is: window index and position in it. */
  worst: { window: number; position: number };
  /** Tokens whose difference exceeds the threshold given to compareLogprobs. */
  above: { threshold: number; tokens: number };
  /** perplexity(b) / perplexity(a). */
  perplexityRatio: number;
}

/**
 * How closely two engines' log-probabilities of the same tokens agree. `threshold`
 * (nats) counts the outliers: in an MoE model a token whose top-k experts are nearly
 * tied can be routed differently by the two engines, a discrete jump the mean hides.
 */
export function compareLogprobs(a: WindowLogprobs, b: WindowLogprobs, threshold = 0.05): LogprobAgreement {
  const same =
    a.seq === b.seq && a.windows.length === b.windows.length && a.windows.every((o, i) => o === b.windows[i]);
  if (!same)
    throw new PmaError(
      "USAGE",
      "the two scorings cover different windows; compare scorings of the same split, seq and token budget",
    );
  let sum = 0;
  let max = -1;
  let at = 0;
  let above = 0;
  for (let i = 0; i < a.logprobs.length; i++) {
    const d = Math.abs(a.logprobs[i]! - b.logprobs[i]!);
    sum += d;
    if (!(d <= threshold)) above++;
    // NaN (a token one engine could not score) must not hide as a small difference.
    if (!(d <= max)) {
      max = d;
      at = i;
    }
  }
  return {
    tokens: a.logprobs.length,
    meanAbsDiff: sum / a.logprobs.length,
    maxAbsDiff: max,
    worst: { window: Math.floor(at / a.seq), position: at % a.seq },
    above: { threshold, tokens: above },
    perplexityRatio: summarizeLogprobs(b.logprobs).perplexity / summarizeLogprobs(a.logprobs).perplexity,
  };
}
