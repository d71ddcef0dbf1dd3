/**
 * Training batches as a pure function of (seed, step): row r of optimizer step s is the
 * window of seq_len + 1 tokens starting at a position drawn by a counter-based hash of
 * (seed, s, r). Nothing is carried from one step to the next, so
 *  - a resumed run sees exactly the batches the uninterrupted run would have seen,
 *  - a fork (new schedule, PMA-init) sees the same batches as its parent at each step,
 *  - and the "RNG state" to save is just (seed, next step).
 * Windows are drawn with replacement and may span document separators, as in GPT-style
 * pre-training on a concatenated stream.
 */
import { PmaError } from "../common/errors.js";

/** Bumped if the drawing rule changes: a resume across versions would not be exact. */
export const SAMPLER_VERSION = "windows-fmix32-v1";

/** murmur3's 32-bit finalizer: a bijection on uint32 with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * 32 random bits from (seed, step, index). Each stage is a bijection of the previous
 * value xor one input, so for fixed other inputs distinct inputs give distinct outputs.
 */
export function hash32(seed: number, step: number, index: number): number {
  let h = fmix32((seed ^ 0x9e3779b9) >>> 0);
  h = fmix32((h ^ (step >>> 0)) >>> 0);
  h = fmix32((h ^ Math.floor(step / 0x100000000) ^ 0x632be5ab) >>> 0);
  return fmix32((h ^ (index >>> 0) ^ 0x7f4a7c15) >>> 0);
}

/** A uniform double in [0, 1) with 53 bits from (seed, step, index). */
export function uniform53(seed: number, step: number, index: number): number {
  const hi = hash32(seed, step, 2 * index) >>> 5; // 27 bits
  const lo = hash32(seed, step, 2 * index + 1) >>> 6; // 26 bits
  return (hi * 67108864 + lo) / 9007199254740992;
}

export type TokenStream = Uint16Array | Int32Array;

export class WindowSampler {
  readonly seq: number;
  readonly seed: number;
  /** Number of valid window starts: 0 .. stream.length - seq - 1. */
  readonly starts: number;

  constructor(
    private readonly stream: TokenStream,
    seq: number,
    seed: number,
  ) {
    if (stream.length < seq + 2) {
      throw new PmaError(
        "USAGE",
        `the training split has ${stream.length} tokens, too few for windows of ${seq} + 1 tokens; use a shorter data.seq_len`,
      );
    }
    this.seq = seq;
    this.seed = seed >>> 0;
    this.starts = stream.length - seq;
  }

  /** Start of row `row` (counted over the whole step, all micro-batches) of step `step` (0-based). */
  offset(step: number, row: number): number {
    return Math.floor(uniform53(this.seed, step, row) * this.starts);
  }

  /**
   * Fills micro-batch `micro` of step `step`: rows micro*R .. micro*R + R - 1 where
   * R = tokens.length / seq; targets are the inputs shifted by one token.
   */
  fill(step: number, micro: number, tokens: Int32Array, targets: Int32Array): void {
    const S = this.seq;
    const rows = tokens.length / S;
    for (let r = 0; r < rows; r++) {
      const o = this.offset(step, micro * rows + r);
      const base = r * S;
      for (let t = 0; t < S; t++) {
        tokens[base + t] = this.stream[o + t]!;
        targets[base + t] = this.stream[o + t + 1]!;
      }
    }
  }
}
