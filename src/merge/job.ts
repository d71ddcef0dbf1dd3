import type { SourceRef } from "../sources/source.js";
import type { FloatDType } from "../tensor/dtype.js";
import type { AccumulatePrecision } from "./kernels.js";

/** One float tensor to merge, with where its bytes are in every input and the output. */
export interface TensorJob {
  name: string;
  inDtype: FloatDType;
  outDtype: FloatDType;
  precision: AccumulatePrecision;
  elements: number;
  /** Per input, oldest first: index into `inputFiles` and absolute byte position. */
  sources: { file: number; offset: number }[];
  target: { file: number; offset: number };
}

/**
 * Everything a merge worker needs, structured-cloneable. Chunks are (tensor, first
 * element, count) triples in `chunks`; workers take the next one from the shared
 * counter `next`, so the faster worker does more and the split needs no tuning.
 */
export interface WorkerPlan {
  /** Names for messages: paths, or URIs of remote files. */
  inputFiles: string[];
  /** How each worker opens the inputs: a local file, or a remote source (HTTP, S3, Hub). */
  inputRefs: SourceRef[];
  outputFiles: string[];
  coefficients: number[];
  tensors: TensorJob[];
  chunkElements: number;
  allowNonfinite: boolean;
  /**
   * Set for a plain mean: coefficients are then all 1 and the sum is divided by this once,
   * so the result is (x_1 + ... + x_n) / n computed exactly as a float64 reference does.
   */
  divisor?: number;
  chunks: SharedArrayBuffer;
  chunkCount: number;
  next: SharedArrayBuffer;
  /** Float64 per worker: input bytes processed so far, for the progress bar. */
  progress: SharedArrayBuffer;
  /** Float64 per worker: output bytes written so far, for the write-behind. */
  written: SharedArrayBuffer;
  /** Int32 flag: set to 1 to ask workers to stop after their current chunk. */
  stop: SharedArrayBuffer;
}

/** A nonfinite value found while merging: in an input (`input` >= 0) or the result. */
export interface NonfiniteReport {
  tensor: string;
  /** Index into the ordered inputs; -1 when only the merged value overflowed. */
  input: number;
  count: number;
}

export type WorkerMessage =
  | { type: "done"; nonfinite: NonfiniteReport[] }
  | { type: "nonfinite"; report: NonfiniteReport }
  | { type: "error"; message: string; code?: string; file?: string };

/** Splits every tensor into chunks of at most `chunkElements` elements. */
export function makeChunks(
  tensors: TensorJob[],
  chunkElements: number,
): { buffer: SharedArrayBuffer; count: number } {
  let count = 0;
  for (const t of tensors) count += Math.ceil(t.elements / chunkElements);
  const buffer = new SharedArrayBuffer(Math.max(1, count) * 3 * 8);
  const view = new Float64Array(buffer);
  let k = 0;
  tensors.forEach((t, ti) => {
    for (let start = 0; start < t.elements; start += chunkElements) {
      view[k++] = ti;
      view[k++] = start;
      view[k++] = Math.min(chunkElements, t.elements - start);
    }
  });
  return { buffer, count };
}
