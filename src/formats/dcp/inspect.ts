import * as fs from "node:fs";
import { join } from "node:path";
import { decodeFloats } from "../../tensor/codec.js";
import { dtypeBits, isFloatDType } from "../../tensor/dtype.js";
import { StatsAccumulator } from "../../tensor/stats.js";
import type { CheckpointSummary, TensorSummary } from "../inspect.js";
import { openDcp, readBytesValue } from "./open.js";
import { toJson } from "./pickle-values.js";
import { dcpProgress } from "./progress.js";
import { DcpReader } from "./reader.js";
import { numel } from "../../tensor/shape.js";

/** What `pma inspect` shows of a distributed checkpoint beyond its tensors. */
export interface DcpSummary {
  layout: string;
  version: string | null;
  chunks: number;
  /** Non-tensor items with their values (inert data: nothing in them is run). */
  items: Record<string, unknown>;
  tokens: number | null;
  step: number | null;
  progressFrom: string | null;
}

const STATS_CHUNK = 1 << 20;

export async function inspectDcp(path: string, opts: { stats?: boolean } = {}): Promise<CheckpointSummary> {
  const ckpt = await openDcp(path);
  const reader = new DcpReader(ckpt);
  try {
    const tensors: TensorSummary[] = [];
    const dtypes: Record<string, number> = {};
    // One window for every tensor, no larger than the largest one needs.
    const window = Math.min(STATS_CHUNK, Math.max(1, ...[...ckpt.tensors.values()].map((t) => numel(t.shape))));
    const scratch = opts.stats ? new Float64Array(window) : new Float64Array(0);
    const buf = opts.stats ? new Uint8Array(window * 8) : new Uint8Array(0);
    for (const t of ckpt.tensors.values()) {
      const parameters = numel(t.shape);
      const files = [...new Set(t.chunks.map((c) => c.file.slice(ckpt.root.length + 1)))];
      const summary: TensorSummary = { name: t.name, dtype: t.dtype, shape: t.shape, parameters, bytes: (parameters * dtypeBits(t.dtype)) / 8, file: files.join(", ") };
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + parameters;
      if (opts.stats && isFloatDType(t.dtype)) {
        const acc = new StatsAccumulator();
        for (let s = 0; s < parameters; s += window) {
          const n = Math.min(window, parameters - s);
          const out = scratch.subarray(0, n);
          decodeFloats(reader.readElements(t.name, s, n, buf), t.dtype, out);
          acc.add(out);
        }
        summary.stats = acc.result();
      }
      tensors.push(summary);
    }
    const items: Record<string, unknown> = {};
    for (const name of ckpt.bytesItems.keys()) items[name] = toJson(readBytesValue(ckpt, name));
    const progress = dcpProgress(ckpt);
    const dataFiles = ckpt.metadataPath === null ? ckpt.dataFiles : [".metadata", ...ckpt.dataFiles];
    return {
      path: ckpt.root,
      format: "dcp",
      files: dataFiles.map((f) => ({ path: join(ckpt.root, f), bytes: fs.statSync(join(ckpt.root, f)).size })),
      tensors,
      parameters: tensors.reduce((s, t) => s + t.parameters, 0),
      bytes: tensors.reduce((s, t) => s + t.bytes, 0),
      dtypes,
      metadata: {},
      dcp: {
        layout: ckpt.layout,
        version: ckpt.metadata?.version ?? null,
        chunks: [...ckpt.tensors.values()].reduce((s, t) => s + t.chunks.length, 0),
        items,
        tokens: progress.tokens ?? null,
        step: progress.step ?? null,
        progressFrom: [progress.tokensFrom, progress.stepFrom].filter((x) => x !== undefined).join(", ") || null,
      },
    };
  } finally {
    reader.close();
  }
}
