import { closeSync, openSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { readFullySync, writeFullySync } from "../formats/positional-io.js";
import { floatDTypeBytes } from "../tensor/codec.js";
import { PmaError } from "../common/errors.js";
import type { NonfiniteReport, TensorJob, WorkerMessage, WorkerPlan } from "./job.js";
import { MergeKernels } from "./kernels.js";

/**
 * A merge worker: takes chunks from the shared queue until it is empty. For each chunk
 * it reads the chunk of every input straight into WebAssembly memory, accumulates
 * c_i * x_i in order i = 1..N (so the result does not depend on which worker ran it),
 * rounds to the output dtype while counting NaN/Inf, and writes the bytes in place.
 */
export function runMergeWorker(plan: WorkerPlan, slot: number): WorkerMessage {
  const kernels = new MergeKernels();
  kernels.reserve(plan.chunkElements);
  const inputFds = plan.inputFiles.map((f) => openSync(f, "r"));
  const outputFds = plan.outputFiles.map((f) => openSync(f, "r+"));
  const chunks = new Float64Array(plan.chunks);
  const next = new Int32Array(plan.next);
  const stop = new Int32Array(plan.stop);
  const progress = new Float64Array(plan.progress);
  const written = new Float64Array(plan.written);
  const nonfinite: NonfiniteReport[] = [];
  try {
    for (;;) {
      if (Atomics.load(stop, 0) !== 0) break;
      const k = Atomics.add(next, 0, 1);
      if (k >= plan.chunkCount) break;
      const tensor = plan.tensors[chunks[3 * k]!]!;
      const start = chunks[3 * k + 1]!;
      const n = chunks[3 * k + 2]!;
      const found = mergeChunk(plan, kernels, inputFds, outputFds, tensor, start, n);
      if (found.length > 0) {
        if (!plan.allowNonfinite) return { type: "nonfinite", report: found[0]! };
        nonfinite.push(...found);
      }
      progress[slot] = progress[slot]! + n * floatDTypeBytes(tensor.inDtype) * plan.inputFiles.length;
      written[slot] = written[slot]! + n * floatDTypeBytes(tensor.outDtype);
    }
  } finally {
    for (const fd of [...inputFds, ...outputFds]) closeSync(fd);
  }
  return { type: "done", nonfinite };
}

function mergeChunk(
  plan: WorkerPlan,
  kernels: MergeKernels,
  inputFds: number[],
  outputFds: number[],
  t: TensorJob,
  start: number,
  n: number,
): NonfiniteReport[] {
  const inSize = floatDTypeBytes(t.inDtype);
  const accumulateAll = () => {
    kernels.zero(n, t.precision);
    t.sources.forEach((src, i) => {
      readFullySync(inputFds[src.file]!, plan.inputFiles[src.file]!, kernels.srcBytes(n * inSize), src.offset + start * inSize);
      kernels.accumulate(t.inDtype, t.precision, n, plan.coefficients[i]!);
    });
  };
  accumulateAll();
  let out = kernels.emit(t.precision, t.outDtype, n);
  const reports: NonfiniteReport[] = [];
  if (out.nonfinite > 0) {
    // Rare path: find which inputs hold the NaN/Inf (an input read with coefficient 1
    // into an empty accumulator is exact), then redo the merge for the output.
    t.sources.forEach((src, i) => {
      kernels.zero(n, t.precision);
      readFullySync(inputFds[src.file]!, plan.inputFiles[src.file]!, kernels.srcBytes(n * inSize), src.offset + start * inSize);
      kernels.accumulate(t.inDtype, t.precision, n, 1);
      const count = kernels.countNonfinite(t.precision, n);
      if (count > 0) reports.push({ tensor: t.name, input: i, count });
    });
    if (reports.length === 0) reports.push({ tensor: t.name, input: -1, count: out.nonfinite });
    if (!plan.allowNonfinite) return reports;
    accumulateAll();
    out = kernels.emit(t.precision, t.outDtype, n);
  }
  writeFullySync(outputFds[t.target.file]!, plan.outputFiles[t.target.file]!, out.bytes, t.target.offset + start * floatDTypeBytes(t.outDtype));
  return reports;
}

if (parentPort !== null && workerData !== null && typeof workerData === "object" && "plan" in workerData) {
  const { plan, slot } = workerData as { plan: WorkerPlan; slot: number };
  let message: WorkerMessage;
  try {
    message = runMergeWorker(plan, slot);
  } catch (e) {
    message =
      e instanceof PmaError
        ? { type: "error", message: e.message, code: e.code, ...(e.file !== undefined ? { file: e.file } : {}) }
        : { type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  parentPort.postMessage(message);
}
