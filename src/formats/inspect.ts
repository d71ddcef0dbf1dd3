import { resolve } from "node:path";
import { decodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType } from "../tensor/dtype.js";
import { StatsAccumulator, type TensorStats } from "../tensor/stats.js";
import { stat } from "node:fs/promises";
import { openCheckpointTensors } from "./checkpoint-files.js";
import { inspectDcp, type DcpSummary } from "./dcp/inspect.js";
import { isDcpFolder } from "./dcp/open.js";
import { isGgufPath } from "./gguf.js";
import { inspectGguf, type GgufSummary } from "./gguf-inspect.js";
import { numel } from "../tensor/shape.js";
import { TorchSaveFile } from "./torch-save.js";

export interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
  parameters: number;
  bytes: number;
  file: string;
  /** GGUF only: ggml dims, ne0 first (`shape` is in torch order). */
  dims?: number[];
  stats?: TensorStats;
}

export interface CheckpointSummary {
  path: string;
  format: "safetensors" | "torch.save" | "gguf" | "dcp";
  files: { path: string; bytes: number }[];
  tensors: TensorSummary[];
  parameters: number;
  bytes: number;
  dtypes: Record<string, number>;
  metadata: Record<string, string>;
  /** GGUF only: version, alignment and every key with its type. */
  gguf?: GgufSummary;
  /** Distributed checkpoints only: layout, chunk count, non-tensor items, progress. */
  dcp?: DcpSummary;
}

const STATS_CHUNK = 1 << 20;

/**
 * Describes a checkpoint from its headers; with `stats`, also streams every float tensor
 * once to compute min/max/mean/std and NaN/Inf counts in bounded memory.
 */
export async function inspectCheckpoint(
  path: string,
  opts: { stats?: boolean } = {},
): Promise<CheckpointSummary> {
  if (isGgufPath(path)) return inspectGguf(path, opts);
  if ((await stat(path).catch(() => null))?.isDirectory() && (await isDcpFolder(path)))
    return inspectDcp(path, opts);
  const ckpt = await openCheckpointTensors(path);
  try {
    const tensors: TensorSummary[] = [];
    const dtypes: Record<string, number> = {};
    const scratch = new Float64Array(STATS_CHUNK);
    for (const t of ckpt.tensors.values()) {
      const parameters = numel(t.shape);
      const summary: TensorSummary = {
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        parameters,
        bytes: t.byteLength,
        file: t.file.path,
      };
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + parameters;
      if (opts.stats && isFloatDType(t.dtype)) {
        const acc = new StatsAccumulator();
        const size = floatDTypeBytes(t.dtype);
        for (let start = 0; start < parameters; start += STATS_CHUNK) {
          const n = Math.min(STATS_CHUNK, parameters - start);
          const bytes = await t.file.read(t.name, start * size, n * size);
          const out = scratch.subarray(0, n);
          decodeFloats(bytes, t.dtype, out);
          acc.add(out);
        }
        summary.stats = acc.result();
      }
      tensors.push(summary);
    }
    // A file given by name is what the output names (as for GGUF), not its folder.
    const given = resolve(path);
    return {
      path: ckpt.files.length === 1 && ckpt.files[0]!.path === given ? given : ckpt.root,
      format: ckpt.files[0] instanceof TorchSaveFile ? "torch.save" : "safetensors",
      files: ckpt.files.map((f) => ({ path: f.path, bytes: f.fileSize })),
      tensors,
      parameters: tensors.reduce((s, t) => s + t.parameters, 0),
      bytes: tensors.reduce((s, t) => s + t.bytes, 0),
      dtypes,
      metadata: ckpt.metadata,
    };
  } finally {
    await ckpt.close();
  }
}
