import { closeSync, openSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { readFullySync, writeFullySync } from "../common/positional-io.js";
import { openSource } from "../sources/open.js";
import type { PositionalSource } from "../sources/source.js";
import { floatDTypeBytes } from "../tensor/codec.js";
import { PmaError } from "../common/errors.js";
import type { NonfiniteReport, TensorJob, WorkerMessage, WorkerPlan } from "./job.js";
import { MergeKernels } from "./kernels.js";

/** Fills `into` with input `i`'s bytes of the chunk at `position`. */
type LoadInput = (i: number, into: Uint8Array, position: number) => void;

/**
 * A merge worker: takes chunks from the shared queue until it is empty. For each chunk
 * it reads the chunk of every input straight into WebAssembly memory, accumulates
 * c_i * x_i in order i = 1..N (so the result does not depend on which worker ran it),
 * rounds to the output dtype while counting NaN/Inf, and writes the bytes in place.
 *
 * Local inputs are read synchronously, straight into WebAssembly memory. When any input
 * is remote, the chunk of every input is fetched at once (N requests in flight per
 * worker, so latency is paid once per chunk, not N times) into per-input buffers and
 * copied in, the next chunk's reads running while this one is merged; memory is then
 * 2 x N x chunk bytes per worker.
 */
export async function runMergeWorker(plan: WorkerPlan, slot: number): Promise<WorkerMessage> {
  const kernels = new MergeKernels();
  kernels.reserve(plan.chunkElements);
  const remote = plan.inputRefs.some((r) => r.kind !== "file");
  const sources: PositionalSource[] = [];
  const inputFds: number[] = [];
  const outputFds: number[] = [];
  const chunks = new Float64Array(plan.chunks);
  const next = new Int32Array(plan.next);
  const stop = new Int32Array(plan.stop);
  const progress = new Float64Array(plan.progress);
  const written = new Float64Array(plan.written);
  const nonfinite: NonfiniteReport[] = [];
  try {
    if (remote)
      for (let i = 0; i < plan.inputRefs.length; i++)
        sources.push(await openSource(plan.inputRefs[i]!, plan.inputFiles[i]));
    else for (const f of plan.inputFiles) inputFds.push(openSync(f, "r"));
    for (const f of plan.outputFiles) outputFds.push(openSync(f, "r+"));
    const maxInBytes = Math.max(1, ...plan.tensors.map((t) => floatDTypeBytes(t.inDtype)));
    // Remote reads are double-buffered: chunk k+1 is in flight while chunk k is merged.
    const sets = remote
      ? [0, 1].map(() =>
          Array.from(
            { length: plan.coefficients.length },
            () => new Uint8Array(plan.chunkElements * maxInBytes),
          ),
        )
      : [];
    const claim = (): number => {
      if (Atomics.load(stop, 0) !== 0) return -1;
      const k = Atomics.add(next, 0, 1);
      return k < plan.chunkCount ? k : -1;
    };
    const fetchChunk = (k: number, set: Uint8Array[]): Promise<unknown> => {
      const tensor = plan.tensors[chunks[3 * k]!]!;
      const inSize = floatDTypeBytes(tensor.inDtype);
      const length = chunks[3 * k + 2]! * inSize;
      const pending = Promise.all(
        tensor.sources.map((src, i) =>
          sources[src.file]!.read(set[i]!.subarray(0, length), src.offset + chunks[3 * k + 1]! * inSize),
        ),
      );
      pending.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
      return pending;
    };
    let k = claim();
    let set = 0;
    let inFlight = remote && k >= 0 ? fetchChunk(k, sets[0]!) : null;
    while (k >= 0) {
      const tensor = plan.tensors[chunks[3 * k]!]!;
      const start = chunks[3 * k + 1]!;
      const n = chunks[3 * k + 2]!;
      const inSize = floatDTypeBytes(tensor.inDtype);
      let load: LoadInput;
      let following = -1;
      if (remote) {
        await inFlight;
        following = claim();
        inFlight = following >= 0 ? fetchChunk(following, sets[1 - set]!) : null;
        const buffers = sets[set]!;
        load = (i, into) => into.set(buffers[i]!.subarray(0, into.length));
      } else {
        load = (i, into, position) => {
          const file = tensor.sources[i]!.file;
          readFullySync(inputFds[file]!, plan.inputFiles[file]!, into, position);
        };
      }
      const found = mergeChunk(plan, kernels, load, outputFds, tensor, start, n);
      if (found.length > 0) {
        if (!plan.allowNonfinite) return { type: "nonfinite", report: found[0]! };
        nonfinite.push(...found);
      }
      progress[slot] = progress[slot]! + n * inSize * plan.inputFiles.length;
      written[slot] = written[slot]! + n * floatDTypeBytes(tensor.outDtype);
      if (remote) {
        k = following;
        set = 1 - set;
      } else {
        k = claim();
      }
    }
  } finally {
    for (const fd of [...inputFds, ...outputFds]) closeSync(fd);
    await Promise.allSettled(sources.map((s) => s.close()));
  }
  return { type: "done", nonfinite };
}

function mergeChunk(
  plan: WorkerPlan,
  kernels: MergeKernels,
  load: LoadInput,
  outputFds: number[],
  t: TensorJob,
  start: number,
  n: number,
): NonfiniteReport[] {
  const inSize = floatDTypeBytes(t.inDtype);
  const accumulateAll = () => {
    kernels.zero(n, t.precision);
    t.sources.forEach((src, i) => {
      load(i, kernels.srcBytes(n * inSize), src.offset + start * inSize);
      kernels.accumulate(t.inDtype, t.precision, n, plan.coefficients[i]!);
    });
    if (plan.divisor !== undefined) kernels.divide(n, t.precision, plan.divisor);
  };
  accumulateAll();
  let out = kernels.emit(t.precision, t.outDtype, n);
  const reports: NonfiniteReport[] = [];
  if (out.nonfinite > 0) {
    // Rare path: find which inputs hold the NaN/Inf (an input read with coefficient 1
    // into an empty accumulator is exact), then redo the merge for the output.
    t.sources.forEach((src, i) => {
      kernels.zero(n, t.precision);
      load(i, kernels.srcBytes(n * inSize), src.offset + start * inSize);
      kernels.accumulate(t.inDtype, t.precision, n, 1);
      const count = kernels.countNonfinite(t.precision, n);
      if (count > 0) reports.push({ tensor: t.name, input: i, count });
    });
    if (reports.length === 0) reports.push({ tensor: t.name, input: -1, count: out.nonfinite });
    if (!plan.allowNonfinite) return reports;
    accumulateAll();
    out = kernels.emit(t.precision, t.outDtype, n);
  }
  writeFullySync(
    outputFds[t.target.file]!,
    plan.outputFiles[t.target.file]!,
    out.bytes,
    t.target.offset + start * floatDTypeBytes(t.outDtype),
  );
  return reports;
}

if (parentPort !== null && workerData !== null && typeof workerData === "object" && "plan" in workerData) {
  const { plan, slot } = workerData as { plan: WorkerPlan; slot: number };
  const port = parentPort;
  runMergeWorker(plan, slot).then(
    (message) => port.postMessage(message),
    (e: unknown) =>
      port.postMessage(
        e instanceof PmaError
          ? {
              type: "error",
              message: e.message,
              code: e.code,
              ...(e.file !== undefined ? { file: e.file } : {}),
            }
          : { type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) },
      ),
  );
}
