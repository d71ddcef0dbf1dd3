import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { PmaError, type PmaErrorCode } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import type { TensorSpec } from "../formats/safetensors-writer.js";
import { floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType, type DType, type FloatDType } from "../tensor/dtype.js";
import { checkAdapterInputs } from "./adapter.js";
import type { SourceRef } from "../sources/source.js";
import { checkSameTensors, openMergeInput, type MergeInput, type SourceTensor } from "./inputs.js";
import {
  makeChunks,
  type NonfiniteReport,
  type TensorJob,
  type WorkerMessage,
  type WorkerPlan,
} from "./job.js";
import type { AccumulatePrecision } from "./kernels.js";
import { copyIdenticalTensor } from "./nonfloat.js";
import { orderByProgress } from "./order.js";
import { createMergeOutput, outputFormatFor } from "./outputs.js";
import type { PartSpec } from "./part-output.js";
import {
  coefficientsFor,
  DEFAULT_METHOD,
  recordedParams,
  type MethodSpec,
  type RecordedParams,
} from "./methods.js";
import { numel } from "../tensor/shape.js";
import { WriteBehind } from "./write-behind.js";

export interface MergeOptions {
  /** Checkpoint paths (folders or .safetensors files, or .gguf files) or hf://, s3://, https:// locations, in any order. */
  inputs: string[];
  /** A folder for safetensors inputs (or s3://bucket/prefix); a .gguf file for GGUF inputs. */
  out: string;
  method?: MethodSpec;
  /** Output dtype of float tensors; default: each tensor's input dtype. */
  dtype?: FloatDType;
  accumulate?: AccumulatePrecision;
  shardSize?: number;
  allowNonfinite?: boolean;
  force?: boolean;
  /** Merge in the order given instead of by training progress. */
  keepOrder?: boolean;
  threads?: number;
  /** Elements per chunk and worker; with `threads` this bounds memory. */
  chunkElements?: number;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  onNote?: (message: string) => void;
  signal?: AbortSignal;
  /** Distributed checkpoints only: optimizer moments copied from the newest input (default) or merged. */
  optimizer?: "copy" | "merge";
  /** Merge only this share of the work, beside the other parts (see part-output.ts). */
  part?: PartSpec;
}

export interface MergeInputRecord {
  path: string;
  tokens: number | null;
  step: number | null;
  coefficient: number;
  size_bytes: number;
  header_sha256: string[];
}

export interface MergeRecord extends RecordedParams {
  pma_version: string;
  method: string;
  order_basis: "tokens" | "step" | "arguments";
  inputs: MergeInputRecord[];
  coefficients: number[];
  dtype: string;
  accumulate: AccumulatePrecision;
  tensors: number;
  parameters: number;
  bytes_read: number;
  bytes_written: number;
  files: string[];
  /** True for a merge of PEFT adapters (adapter_model.safetensors + adapter_config.json). */
  adapter?: boolean;
  companions_from: string | null;
  nonfinite: { tensor: string; checkpoint: string | null; count: number }[];
  started_at: string;
  seconds: number;
  /** Set in the record of one part of a partitioned merge. */
  part?: PartSpec;
  /** Set by --finalize: each part's host, start, seconds and bytes read. */
  parts?: PartSummary[];
}

export interface PartSummary {
  index: number;
  host: string;
  started_at: string;
  seconds: number;
  bytes_read: number;
}

export const MERGE_RECORD_FILE = "pma_merge.json";
const DEFAULT_CHUNK_ELEMENTS = 1 << 20;
/** Remote inputs: 4M elements (8 MiB of bf16) per request, so per-request costs (signing, headers, a round trip) stay small. */
const REMOTE_CHUNK_ELEMENTS = 1 << 22;
/** Output bytes between write-behind syncs: small enough to keep the disk busy, large enough to batch. */
const WRITE_BEHIND_BYTES = 64 * 2 ** 20;

/**
 * Merges N checkpoints of one run into one: out = sum_i c_i * M_i, tensor by tensor and
 * chunk by chunk, so memory stays at about threads x chunk x 24 bytes whatever the
 * model size. Inputs are only read; the output appears complete or not at all.
 */
export async function merge(opts: MergeOptions): Promise<MergeRecord> {
  const started = Date.now();
  if (opts.inputs.length === 0) throw new PmaError("USAGE", "pma merge needs at least one checkpoint");
  // Distributed checkpoints are merged into the newest one's own layout (imported lazily: that module uses runWorkers).
  const dcp = await import("./dcp-merge.js");
  if (await dcp.isDcpMerge(opts.inputs)) {
    if (opts.part !== undefined)
      throw new PmaError(
        "USAGE",
        "--part splits safetensors merges; a distributed checkpoint is merged by one process (its workers already share the chunks)",
      );
    return dcp.mergeDcpFromOptions(opts);
  }
  // The inputs' format picks the output: a Hugging Face folder or one GGUF file.
  const format = outputFormatFor(opts.inputs, opts.out, opts.shardSize, opts.part);
  const output = await createMergeOutput(format, opts.out, opts.force ?? false, opts.signal, opts.part);
  const opened: MergeInput[] = [];
  try {
    for (const path of opts.inputs) opened.push(await openMergeInput(path));
    const ordered = opts.keepOrder ? { items: opened, basis: "arguments" as const } : orderByProgress(opened);
    if ("note" in ordered && ordered.note !== undefined) opts.onNote?.(ordered.note);
    const inputs = ordered.items;
    const method = opts.method ?? DEFAULT_METHOD;
    const coefficients = coefficientsFor(method, inputs.length);
    checkSameTensors(inputs);
    const adapter = await checkAdapterInputs(inputs);
    if (adapter && opts.shardSize !== undefined) {
      throw new PmaError(
        "USAGE",
        "--shard-size does not apply to PEFT adapters: PEFT loads one adapter_model.safetensors",
      );
    }

    const reference = inputs[0]!.checkpoint;
    const specs: TensorSpec[] = [];
    for (const t of reference.tensors.values()) {
      const dtype: DType = isFloatDType(t.dtype) ? (opts.dtype ?? t.dtype) : t.dtype;
      specs.push({ name: t.name, dtype, shape: t.shape });
    }
    const writer = await output.open(specs, {
      inputs,
      method: method.method,
      coefficients,
      ...(opts.dtype !== undefined ? { dtype: opts.dtype } : {}),
      ...(opts.shardSize !== undefined ? { shardSize: opts.shardSize } : {}),
      ...(adapter ? { adapter } : {}),
      accumulate: opts.accumulate ?? "f32",
      allowNonfinite: opts.allowNonfinite ?? false,
    });
    if (writer.completed !== undefined) {
      opts.onNote?.(
        `part ${opts.part!.index}/${opts.part!.count} of ${opts.out} was already merged (same inputs and recipe); nothing to do`,
      );
      return writer.completed;
    }
    let bytesWritten = 0;
    let parameters = 0;
    const nonfinite: NonfiniteReport[] = [];
    // f64 by default: exact enough that merging identical checkpoints returns them bit for
    // bit, for about the cost of f32 (docs/benchmarks.md).
    const precision = opts.accumulate ?? "f64";
    const jobs: TensorJob[] = [];
    const outputFiles = writer.files;
    const inputFiles: string[] = [];
    const inputRefs: SourceRef[] = [];
    const fileIndex = new Map<string, number>();
    const indexOf = (file: SourceTensor["file"]) => {
      let i = fileIndex.get(file.path);
      if (i === undefined) {
        i = inputFiles.push(file.path) - 1;
        inputRefs.push(file.sourceRef ?? { kind: "file", path: file.path });
        fileIndex.set(file.path, i);
      }
      return i;
    };
    let nonfloatBytes = 0;
    const outputDtype = new Map(specs.map((s) => [s.name, s.dtype]));
    for (const name of writer.order) {
      const t = reference.tensors.get(name)!;
      const layout = writer.layout(name);
      const elements = numel(t.shape);
      parameters += elements;
      // One part of a partitioned merge writes some element ranges; a whole merge, everything.
      const ranges = writer.owned?.(name) ?? [{ start: 0, end: elements }];
      if (ranges.length === 0) continue;
      if (!isFloatDType(t.dtype)) {
        bytesWritten += layout.byteLength;
        // A PmaError, as the workers report it: throwIfAborted() would surface a bare AbortError.
        if (opts.signal?.aborted)
          throw new PmaError("INTERRUPTED", "merge interrupted; no output was written");
        await copyIdenticalTensor(inputs, name, writer);
        nonfloatBytes += t.byteLength * inputs.length;
        continue;
      }
      if (elements === 0) continue;
      const outDtype = outputDtype.get(name) as FloatDType;
      const inSize = floatDTypeBytes(t.dtype);
      const outSize = floatDTypeBytes(outDtype);
      for (const { start, end } of ranges) {
        bytesWritten += (end - start) * outSize;
        jobs.push({
          name: t.name,
          inDtype: t.dtype,
          outDtype,
          precision: t.dtype === "F64" ? "f64" : precision,
          elements: end - start,
          sources: inputs.map((inp) => {
            const src = inp.checkpoint.tensors.get(t.name)!;
            return { file: indexOf(src.file), offset: src.fileOffset + start * inSize };
          }),
          target: { file: outputFiles.indexOf(layout.file), offset: layout.fileOffset + start * outSize },
        });
      }
    }
    const floatBytes = jobs.reduce((s, j) => s + j.elements * floatDTypeBytes(j.inDtype) * inputs.length, 0);
    await runWorkers(
      {
        inputFiles,
        inputRefs,
        outputFiles,
        coefficients,
        tensors: jobs,
        chunkElements:
          opts.chunkElements ??
          (inputRefs.some((r) => r.kind !== "file") ? REMOTE_CHUNK_ELEMENTS : DEFAULT_CHUNK_ELEMENTS),
        allowNonfinite: opts.allowNonfinite ?? false,
      },
      opts.threads ?? Math.min(availableParallelism(), 8),
      (done) => opts.onProgress?.(nonfloatBytes + done, nonfloatBytes + floatBytes),
      inputs,
      nonfinite,
      opts.signal,
    );
    const { files, companionsFrom } = await output.finish();
    const record: MergeRecord = {
      pma_version: PMA_VERSION,
      method: method.method,
      ...recordedParams(method),
      order_basis: ordered.basis,
      inputs: inputs.map((inp, i) => ({
        path: inp.path,
        tokens: inp.progress.tokens ?? null,
        step: inp.progress.step ?? null,
        coefficient: coefficients[i]!,
        size_bytes: inp.sizeBytes,
        header_sha256: inp.headerSha256,
      })),
      coefficients,
      dtype: opts.dtype ?? "same as input",
      accumulate: precision,
      tensors: specs.length,
      parameters,
      bytes_read: nonfloatBytes + floatBytes,
      bytes_written: bytesWritten,
      files,
      ...(adapter ? { adapter } : {}),
      companions_from: companionsFrom,
      nonfinite: nonfinite.map((r) => ({
        tensor: r.tensor,
        checkpoint: r.input >= 0 ? inputs[r.input]!.path : null,
        count: r.count,
      })),
      started_at: new Date(started).toISOString(),
      seconds: (Date.now() - started) / 1000,
      ...(opts.part !== undefined ? { part: opts.part } : {}),
    };
    // A GGUF output keeps its provenance in its metadata; a folder also gets the record.
    await output.publish({ [MERGE_RECORD_FILE]: JSON.stringify(record, null, 2) + "\n" });
    return record;
  } catch (e) {
    await output.discard();
    throw e;
  } finally {
    await Promise.allSettled(opened.map((i) => i.checkpoint.close()));
  }
}

export type PlanCore = Pick<
  WorkerPlan,
  | "inputFiles"
  | "inputRefs"
  | "outputFiles"
  | "coefficients"
  | "tensors"
  | "chunkElements"
  | "allowNonfinite"
  | "divisor"
>;

export async function runWorkers(
  core: PlanCore,
  threads: number,
  onProgress: (done: number) => void,
  inputs: readonly { path: string }[],
  nonfinite: NonfiniteReport[],
  signal?: AbortSignal,
): Promise<void> {
  const chunks = makeChunks(core.tensors, core.chunkElements);
  if (chunks.count === 0) return;
  const count = Math.max(1, Math.min(threads, chunks.count));
  const plan: WorkerPlan = {
    ...core,
    chunks: chunks.buffer,
    chunkCount: chunks.count,
    next: new SharedArrayBuffer(4),
    progress: new SharedArrayBuffer(8 * count),
    written: new SharedArrayBuffer(8 * count),
    stop: new SharedArrayBuffer(4),
  };
  const progress = new Float64Array(plan.progress);
  const written = new Float64Array(plan.written);
  const writeBehind = new WriteBehind(core.outputFiles, WRITE_BEHIND_BYTES);
  const syncTimer = setInterval(() => writeBehind.poll(written.reduce((a, b) => a + b, 0)), 10);
  const stop = new Int32Array(plan.stop);
  const workers = Array.from(
    { length: count },
    (_, slot) => new Worker(new URL("./merge-worker.js", import.meta.url), { workerData: { plan, slot } }),
  );
  const timer = setInterval(() => onProgress(progress.reduce((a, b) => a + b, 0)), 200);
  let failure: PmaError | null = null;
  const fail = (e: PmaError) => {
    failure ??= e;
    Atomics.store(stop, 0, 1);
  };
  const onAbort = () => fail(new PmaError("INTERRUPTED", "merge interrupted; no output was written"));
  signal?.addEventListener("abort", onAbort);
  if (signal?.aborted) onAbort();
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once("message", (m: WorkerMessage) => {
              if (m.type === "done") nonfinite.push(...m.nonfinite);
              else if (m.type === "nonfinite") fail(nonfiniteError(m.report, inputs));
              else
                fail(
                  new PmaError(
                    (m.code as PmaErrorCode | undefined) ?? "INTERNAL",
                    m.message,
                    m.file !== undefined ? { file: m.file } : {},
                  ),
                );
            });
            w.once("error", (e) =>
              fail(new PmaError("INTERNAL", `merge worker failed: ${e.stack ?? e.message}`)),
            );
            w.once("exit", () => resolve());
          }),
      ),
    );
  } finally {
    clearInterval(timer);
    clearInterval(syncTimer);
    signal?.removeEventListener("abort", onAbort);
  }
  try {
    await writeBehind.close();
  } catch (e) {
    failure ??= e as PmaError;
  }
  if (failure !== null) throw failure;
  onProgress(progress.reduce((a, b) => a + b, 0));
}

function nonfiniteError(r: NonfiniteReport, inputs: readonly { path: string }[]): PmaError {
  if (r.input < 0) {
    return new PmaError(
      "NONFINITE",
      `merged values of "${r.tensor}" overflow to Inf in the output dtype although every input is finite; check the weights (use normalised weights) and --dtype, or pass --allow-nonfinite`,
    );
  }
  const path = inputs[r.input]!.path;
  return new PmaError(
    "NONFINITE",
    `${path}: tensor "${r.tensor}" contains NaN or Inf (${r.count} value(s) in one chunk); this checkpoint is probably damaged or from a diverged run. Leave it out, or pass --allow-nonfinite to merge anyway`,
    { file: path },
  );
}
