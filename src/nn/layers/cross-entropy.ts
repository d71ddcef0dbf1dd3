import { PmaError } from "../../common/errors.js";
import { exp } from "./exp.js";

/** Targets equal to this are not scored (PyTorch / Hugging Face convention). */
export const IGNORE_INDEX = -100;

/**
 * Which positions count towards the loss: target != IGNORE_INDEX and, when a mask is
 * given, mask[t] != 0 (supervised fine-tuning scores answer tokens only).
 */
function counted(targets: Int32Array, mask: Uint8Array | null, t: number): boolean {
  return targets[t] !== IGNORE_INDEX && (mask === null || mask[t] !== 0);
}

/**
 * Cross-entropy of T rows of V logits against `targets`. Returns the summed negative
 * log-likelihood over counted positions and their number (the caller takes the mean);
 * keeps log-sum-exp per row in `lse` for the backward. Sums run in double.
 *
 * Also returns the largest output logit and the sum of log Z (the log-sum-exp) over
 * counted rows: their drift is the output-logit divergence that z-loss prevents
 * (Wortsman et al., 2023). Both come from values this pass computes anyway.
 */
export function crossEntropyForward(
  lse: Float32Array,
  logits: Float32Array,
  targets: Int32Array,
  mask: Uint8Array | null,
  T: number,
  V: number,
): { sum: number; count: number; maxLogit: number; logZSum: number } {
  let sum = 0;
  let count = 0;
  let maxLogit = -Infinity;
  let logZSum = 0;
  for (let t = 0; t < T; t++) {
    if (!counted(targets, mask, t)) continue;
    const y = targets[t]!;
    if (y < 0 || y >= V) {
      throw new PmaError(
        "RANGE_INVALID",
        `target id ${y} at position ${t} is outside the vocabulary [0, ${V}) (use ${IGNORE_INDEX} to skip a position)`,
      );
    }
    const o = t * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j]! > max) max = logits[o + j]!;
    let s = 0;
    for (let j = 0; j < V; j++) s += exp(logits[o + j]! - max);
    const l = max + Math.log(s);
    lse[t] = l;
    if (max > maxLogit) maxLogit = max;
    logZSum += l;
    sum += l - logits[o + y]!;
    count++;
  }
  return { sum, count, maxLogit, logZSum };
}

/**
 * In place: logits -> d(scale * sum NLL)/d logits = scale * (softmax - onehot) on
 * counted rows, 0 on others. Reusing the logits buffer saves a [T, V] array, the
 * largest activation of a small-model step.
 */
export function crossEntropyBackward(
  logits: Float32Array,
  lse: Float32Array,
  targets: Int32Array,
  mask: Uint8Array | null,
  T: number,
  V: number,
  scale: number,
): void {
  for (let t = 0; t < T; t++) {
    const o = t * V;
    if (!counted(targets, mask, t)) {
      logits.fill(0, o, o + V);
      continue;
    }
    const l = lse[t]!;
    for (let j = 0; j < V; j++) logits[o + j] = scale * exp(logits[o + j]! - l);
    logits[o + targets[t]!]! -= scale;
  }
}
