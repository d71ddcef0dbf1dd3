/**
 * Merging distributed checkpoints into a distributed checkpoint the trainer resumes
 * from. The output has the newest input's exact layout: its `.metadata` and companion
 * files byte for byte, its data files with the same size and the same item positions, and
 * only the merged chunks' bytes (and their zip CRC-32s) replaced. Each chunk is one
 * merge job, so the merge streams through the same workers as a safetensors merge:
 * memory is threads x chunk whatever the model size, and the sum runs in the same order
 * (oldest first) with the same kernels, so results are bit-identical to theirs.
 *
 * An input sharded differently from the newest one is first restaged, tensor by tensor,
 * into a scratch file in the newest one's chunk order (read by global coordinates), so
 * inputs from another TP/FSDP layout merge exactly too.
 */
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import { basename, join } from "node:path";
import { StagedDir } from "../common/atomic-dir.js";
import { fsError, PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { rowMajorStrides, sameChunking } from "../formats/dcp/chunks.js";
import { numel } from "../tensor/shape.js";
import type { DcpChunk, DcpTensor } from "../formats/dcp/model.js";
import { isDcpFolder, openDcp, type OpenedDcp } from "../formats/dcp/open.js";
import { dcpProgress } from "../formats/dcp/progress.js";
import { DcpReader } from "../formats/dcp/reader.js";
import { readFullySync, writeFullySync } from "../common/positional-io.js";
import { floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType, type FloatDType } from "../tensor/dtype.js";
import { crc32OfRange } from "./dcp-crc.js";
import type { TensorJob } from "./job.js";
import type { AccumulatePrecision } from "./kernels.js";
import { runWorkers, MERGE_RECORD_FILE, type MergeOptions, type MergeRecord } from "./merger.js";
import { throwTensorMismatch } from "./inputs.js";
import { orderByProgress } from "./order.js";
import { coefficientsFor, DEFAULT_METHOD, recordedParams, type MethodSpec } from "./methods.js";

export type OptimizerPolicy = "copy" | "merge";

export interface DcpMergeOptions {
  inputs: string[];
  out: string;
  method?: MethodSpec;
  accumulate?: AccumulatePrecision;
  /** Optimizer moments: copied from the newest input (default) or merged with the same coefficients. */
  optimizer?: OptimizerPolicy;
  allowNonfinite?: boolean;
  force?: boolean;
  keepOrder?: boolean;
  threads?: number;
  chunkElements?: number;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  onNote?: (message: string) => void;
  signal?: AbortSignal;
}

const OPTIMIZER_PREFIX = /^(optimizer|optim)\./;
const MOMENT = /(^|\.)(exp_avg|exp_avg_sq)(\.|$)/;
// Mixed-precision trainers (Megatron's distributed optimizer) keep the fp32 master copy
// of the weights in the optimizer state; resuming from it must give the merged weights.
const MASTER_WEIGHTS = /(^|\.)(fp32_param|fp32_from_fp16_params|master_param|master_weights)(\.|$)/;

/** What happens to a tensor of the newest input in the merged checkpoint. */
export function dcpTensorRole(name: string, optimizer: OptimizerPolicy): "merge" | "copy" {
  if (!OPTIMIZER_PREFIX.test(name)) return "merge";
  if (MASTER_WEIGHTS.test(name)) return "merge";
  return optimizer === "merge" && MOMENT.test(name) ? "merge" : "copy";
}

const COPY_BUFFER = 8 << 20;

function copyRange(
  fromFd: number,
  from: string,
  toFd: number,
  to: string,
  start: number,
  end: number,
  buf: Uint8Array,
): void {
  for (let p = start; p < end; p += buf.length) {
    const n = Math.min(buf.length, end - p);
    readFullySync(fromFd, from, buf.subarray(0, n), p);
    writeFullySync(toFd, to, buf.subarray(0, n), p);
  }
}

/** Writes `name`'s elements into `fd` in the chunk order of `layout`, reading the input by global coordinates. */
function restage(
  reader: DcpReader,
  t: DcpTensor,
  layout: DcpChunk[],
  fd: number,
  file: string,
  at: number,
): number[] {
  const size = floatDTypeBytes(t.dtype as FloatDType);
  const offsets: number[] = [];
  const buf = new Uint8Array(COPY_BUFFER);
  let pos = at;
  const strides = rowMajorStrides(t.shape);
  for (const c of layout) {
    offsets.push(pos);
    const rank = c.sizes.length;
    const row = rank === 0 ? 1 : c.sizes[rank - 1]!;
    const rows = numel(c.sizes) / Math.max(row, 1);
    for (let r = 0; r < rows; r++) {
      // The r-th row of the box, as a global element index.
      let rest = r;
      let g = rank === 0 ? 0 : c.offsets[rank - 1]!;
      for (let d = rank - 2; d >= 0; d--) {
        const i = rest % c.sizes[d]!;
        rest = Math.floor(rest / c.sizes[d]!);
        g += (c.offsets[d]! + i) * strides[d]!;
      }
      for (let s = 0; s < row; s += buf.length / size) {
        const n = Math.min(buf.length / size, row - s);
        const bytes = reader.readElements(t.name, g + s, n, buf);
        writeFullySync(fd, file, bytes, pos);
        pos += bytes.length;
      }
    }
  }
  return offsets;
}

/** Whether the inputs are distributed checkpoints; a mix with other formats is refused. */
export async function isDcpMerge(inputs: string[]): Promise<boolean> {
  const isDcp = await Promise.all(
    inputs.map(
      async (p) =>
        (await fs.promises.stat(p).catch(() => null))?.isDirectory() === true && (await isDcpFolder(p)),
    ),
  );
  if (!isDcp.some(Boolean)) return false;
  const other = inputs.find((_, i) => !isDcp[i]);
  if (other !== undefined) {
    throw new PmaError(
      "USAGE",
      `cannot merge distributed checkpoints with other checkpoints (${inputs[isDcp.indexOf(true)]} and ${other}); give inputs of one format, or convert first (pma convert --to safetensors)`,
    );
  }
  return true;
}

/** `merge()`'s options for distributed checkpoints: the output is always the newest input's layout. */
export function mergeDcpFromOptions(opts: MergeOptions): Promise<MergeRecord> {
  if (opts.dtype !== undefined)
    throw new PmaError(
      "USAGE",
      "--dtype does not apply to distributed checkpoints: the merge keeps the newest input's layout and dtypes so the trainer can resume from it",
    );
  if (opts.shardSize !== undefined)
    throw new PmaError(
      "USAGE",
      "--shard-size does not apply to distributed checkpoints: the merge keeps the newest input's files",
    );
  const { dtype: _d, shardSize: _s, ...rest } = opts;
  void _d;
  void _s;
  return mergeDcp(rest);
}

export async function mergeDcp(opts: DcpMergeOptions): Promise<MergeRecord> {
  const started = Date.now();
  if (opts.inputs.length === 0) throw new PmaError("USAGE", "pma merge needs at least one checkpoint");
  const opened: (OpenedDcp & { path: string; progress: ReturnType<typeof dcpProgress> })[] = [];
  for (const path of opts.inputs) {
    const ck = await openDcp(path);
    opened.push({ ...ck, path, progress: dcpProgress(ck) });
  }
  const ordered = opts.keepOrder ? { items: opened, basis: "arguments" as const } : orderByProgress(opened);
  if ("note" in ordered && ordered.note !== undefined) opts.onNote?.(ordered.note);
  const inputs = ordered.items;
  const newest = inputs[inputs.length - 1]!;
  if (newest.metadata === null) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${newest.path}: the newest input is a Hugging Face storage folder without .metadata; pma writes merged distributed checkpoints in a .metadata layout only. Put a torch.distributed.checkpoint folder last, or convert the inputs first.`,
      { file: newest.path },
    );
  }
  const method = opts.method ?? DEFAULT_METHOD;
  const coefficients = coefficientsFor(method, inputs.length);
  const optimizer = opts.optimizer ?? "copy";
  checkSameDcpTensors(inputs, optimizer);

  const out = await StagedDir.create(opts.out, opts.force ?? false);
  const scratch: string[] = [];
  const readers = inputs.map((i) => new DcpReader(i));
  try {
    // Companions first (.metadata, common.pt, metadata.json, ...): every file of the newest folder that is not data.
    const dataFiles = new Set(newest.dataFiles);
    for (const e of await fs.promises.readdir(newest.root, { withFileTypes: true })) {
      if (!e.isFile() || dataFiles.has(e.name) || e.name === MERGE_RECORD_FILE) continue;
      await fs.promises.copyFile(join(newest.root, e.name), join(out.staging, e.name));
    }
    // Merged chunks, and which byte ranges of each data file they cover.
    const merged = [...newest.tensors.values()].filter(
      (t) => isFloatDType(t.dtype) && dcpTensorRole(t.name, optimizer) === "merge",
    );
    const covered = new Map<string, [number, number][]>();
    for (const t of merged)
      for (const c of t.chunks)
        (covered.get(c.file) ?? covered.set(c.file, []).get(c.file)!).push([
          c.dataOffset,
          c.dataOffset + c.byteLength,
        ]);

    // Data files: same size; everything outside merged chunks copied from the newest input.
    const buf = new Uint8Array(COPY_BUFFER);
    const outputFiles: string[] = [];
    for (const name of newest.dataFiles) {
      const from = join(newest.root, name);
      const to = join(out.staging, name);
      outputFiles.push(to);
      const size = fs.statSync(from).size;
      const ranges = (covered.get(from) ?? []).sort((a, b) => a[0] - b[0]);
      const inFd = fs.openSync(from, "r");
      const outFd = fs.openSync(to, "w");
      try {
        fs.ftruncateSync(outFd, size);
        let p = 0;
        for (const [s, e] of ranges) {
          copyRange(inFd, from, outFd, to, p, s, buf);
          p = e;
        }
        copyRange(inFd, from, outFd, to, p, size, buf);
      } catch (e) {
        throw e instanceof PmaError ? e : fsError(to, "write", e);
      } finally {
        fs.closeSync(inFd);
        fs.closeSync(outFd);
      }
    }

    const inputFiles: string[] = [];
    const fileIndex = new Map<string, number>();
    const indexOf = (p: string) =>
      fileIndex.get(p) ?? (fileIndex.set(p, inputFiles.push(p) - 1), inputFiles.length - 1);
    const jobs: TensorJob[] = [];
    const precision = opts.accumulate ?? "f64";
    let restaged = 0;
    for (const t of merged) {
      // Per input, the (file, offset) of each of the newest layout's chunks.
      const sources = inputs.map((inp, i) => {
        const it = inp.tensors.get(t.name)!;
        if (sameChunking(it.chunks, t.chunks))
          return it.chunks.map((c) => ({ file: indexOf(c.file), offset: c.dataOffset }));
        const file = join(out.staging, `.pma-restage-${i}`);
        if (!scratch.includes(file)) scratch.push(file);
        const fd = fs.openSync(file, "a+");
        try {
          const at = fs.fstatSync(fd).size;
          const offsets = restage(readers[i]!, it, t.chunks, fd, file, at);
          restaged++;
          return offsets.map((offset) => ({ file: indexOf(file), offset }));
        } finally {
          fs.closeSync(fd);
        }
      });
      t.chunks.forEach((c, k) => {
        const elements = numel(c.sizes);
        if (elements === 0) return;
        jobs.push({
          name: t.chunks.length === 1 ? t.name : `${t.name} [${c.offsets.join(", ")}]`,
          inDtype: t.dtype as FloatDType,
          outDtype: t.dtype as FloatDType,
          precision: t.dtype === "F64" ? "f64" : precision,
          elements,
          sources: sources.map((s) => s[k]!),
          target: { file: outputFiles.indexOf(join(out.staging, basename(c.file))), offset: c.dataOffset },
        });
      });
    }
    if (restaged > 0)
      opts.onNote?.(
        `${restaged} tensor(s) were sharded differently in an older input and were read by global coordinates`,
      );
    const nonfinite: { tensor: string; input: number; count: number }[] = [];
    const floatBytes = jobs.reduce((s, j) => s + j.elements * floatDTypeBytes(j.inDtype) * inputs.length, 0);
    // A plain mean accumulated in f64 is computed as (x_1 + ... + x_n) / n, the float64
    // reference's formula, so it is bit-identical to it (c * x summed rounds n times more).
    const plainMean = method.method === "sma" && precision === "f64";
    await runWorkers(
      {
        inputFiles,
        inputRefs: inputFiles.map((path) => ({ kind: "file" as const, path })),
        outputFiles,
        coefficients: plainMean ? coefficients.map(() => 1) : coefficients,
        ...(plainMean ? { divisor: inputs.length } : {}),
        tensors: jobs,
        chunkElements: opts.chunkElements ?? 1 << 20,
        allowNonfinite: opts.allowNonfinite ?? false,
      },
      opts.threads ?? Math.min(availableParallelism(), 8),
      (done) => opts.onProgress?.(done, floatBytes),
      inputs,
      nonfinite,
      opts.signal,
    );
    for (const f of scratch) await fs.promises.rm(f, { force: true });
    fixCrcs(merged, out.staging);

    let parameters = 0;
    for (const t of merged) if (!OPTIMIZER_PREFIX.test(t.name)) parameters += numel(t.shape);
    const record: MergeRecord & {
      format: string;
      layout: string;
      optimizer: OptimizerPolicy;
      merged_tensors: number;
      copied_tensors: number;
    } = {
      pma_version: PMA_VERSION,
      format: "torch.distributed.checkpoint",
      layout: newest.layout,
      method: method.method,
      ...recordedParams(method),
      order_basis: ordered.basis,
      inputs: inputs.map((inp, i) => ({
        path: inp.path,
        tokens: inp.progress.tokens ?? null,
        step: inp.progress.step ?? null,
        coefficient: coefficients[i]!,
        size_bytes: inp.dataFiles.reduce((s, f) => s + fs.statSync(join(inp.root, f)).size, 0),
        header_sha256: [],
      })),
      coefficients,
      dtype: "same as input",
      accumulate: precision,
      optimizer,
      merged_tensors: merged.length,
      copied_tensors: newest.tensors.size - merged.length,
      tensors: newest.tensors.size,
      parameters,
      bytes_read: floatBytes,
      bytes_written: outputFiles.reduce((s, f) => s + fs.statSync(f).size, 0),
      files: newest.dataFiles,
      companions_from: newest.path,
      nonfinite: nonfinite.map((r) => ({
        tensor: r.tensor,
        checkpoint: r.input >= 0 ? inputs[r.input]!.path : null,
        count: r.count,
      })),
      started_at: new Date(started).toISOString(),
      seconds: (Date.now() - started) / 1000,
    };
    fs.writeFileSync(join(out.staging, MERGE_RECORD_FILE), JSON.stringify(record, null, 2) + "\n");
    await out.publish();
    return record;
  } catch (e) {
    await out.discard();
    throw e;
  } finally {
    for (const r of readers) r.close();
  }
}

/** The zip CRC-32 of every record whose bytes the merge replaced, rewritten where the zip keeps it. */
function fixCrcs(merged: DcpTensor[], staging: string): void {
  const fds = new Map<string, number>();
  const scratch = new Uint8Array(COPY_BUFFER);
  try {
    // All CRCs are computed first (reads only), then written together: a 4-byte write
    // into a page the kernel is writing back would wait for that write to finish.
    const fixes: { fd: number; file: string; crc: number; at: number[] }[] = [];
    const done = new Set<string>();
    for (const t of merged) {
      for (const c of t.chunks) {
        if (c.record === undefined) continue;
        const file = join(staging, basename(c.file));
        const key = `${file}:${c.record.dataOffset}`;
        if (done.has(key)) continue;
        done.add(key);
        let fd = fds.get(file);
        if (fd === undefined) fds.set(file, (fd = fs.openSync(file, "r+")));
        fixes.push({
          fd,
          file,
          crc: crc32OfRange(fd, file, c.record.dataOffset, c.record.length, scratch),
          at: c.record.crcFields,
        });
      }
    }
    const b = Buffer.alloc(4);
    for (const f of fixes) {
      b.writeUInt32LE(f.crc >>> 0, 0);
      for (const at of f.at) writeFullySync(f.fd, f.file, b, at);
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
}

/** Every input must have the newest input's tensors with the same dtypes and global shapes. */
function checkSameDcpTensors(
  inputs: (OpenedDcp & { path: string })[],
  optimizer: OptimizerPolicy,
  maxListed = 10,
): void {
  const ref = inputs[inputs.length - 1]!;
  const problems: string[] = [];
  for (const other of inputs.slice(0, -1)) {
    for (const [name, t] of ref.tensors) {
      if (!isFloatDType(t.dtype) || dcpTensorRole(name, optimizer) !== "merge") continue;
      const o = other.tensors.get(name);
      if (o === undefined) problems.push(`${other.path}: missing tensor "${name}"`);
      else if (o.dtype !== t.dtype)
        problems.push(`${other.path}: "${name}" is ${o.dtype}, but ${t.dtype} in ${ref.path}`);
      else if (o.shape.join(",") !== t.shape.join(","))
        problems.push(
          `${other.path}: "${name}" has shape [${o.shape.join(", ")}], but [${t.shape.join(", ")}] in ${ref.path}`,
        );
    }
    for (const [name, o] of other.tensors) {
      if (isFloatDType(o.dtype) && dcpTensorRole(name, optimizer) === "merge" && !ref.tensors.has(name))
        problems.push(`${other.path}: extra tensor "${name}" not in ${ref.path}`);
    }
  }
  throwTensorMismatch(problems, inputs[0]!.path, maxListed);
}
