/**
 * A distributed checkpoint as a flat Hugging Face-style safetensors folder: every model
 * tensor assembled from its chunks under its DCP name (optimizer state left out), written
 * in pieces of at most 8 MiB, so a tensor of any size passes through bounded memory.
 * Nothing of the input is changed; the folder appears complete or not at all.
 */
import { StagedDir } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { openDcp } from "../formats/dcp/open.js";
import { DcpReader } from "../formats/dcp/reader.js";
import { SafetensorsWriter } from "../formats/safetensors-writer.js";
import { dtypeBits } from "../tensor/dtype.js";
import { numel } from "../tensor/shape.js";

export interface DcpToSafetensorsOptions {
  out: string;
  force?: boolean;
  shardSize?: number;
  /** Also write optimizer state (names under `optimizer.` / `optim.`). */
  includeOptimizer?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface DcpToSafetensorsResult {
  input: string;
  out: string;
  layout: string;
  tensors: number;
  parameters: number;
  bytes: number;
  files: string[];
  /** Tensors left out (optimizer state), and BYTE_IO items, which safetensors cannot hold. */
  skippedTensors: number;
  skippedItems: string[];
}

const PIECE_BYTES = 8 << 20;

export async function convertDcpToSafetensors(input: string, opts: DcpToSafetensorsOptions): Promise<DcpToSafetensorsResult> {
  const ckpt = await openDcp(input);
  const keep = [...ckpt.tensors.values()].filter((t) => opts.includeOptimizer || !/^(optimizer|optim)\./.test(t.name));
  if (keep.length === 0) throw new PmaError("USAGE", `${ckpt.root}: holds no model tensors to convert (only optimizer state); pass --include-optimizer to convert that.`, { file: ckpt.root });
  const staged = await StagedDir.create(opts.out, opts.force ?? false);
  const reader = new DcpReader(ckpt);
  let writer: SafetensorsWriter | null = null;
  try {
    writer = await SafetensorsWriter.create(
      staged.staging,
      keep.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
      { ...(opts.shardSize !== undefined ? { shardSize: opts.shardSize } : {}), metadata: { format: "pt", pma_version: PMA_VERSION, pma_converted_from: "torch.distributed.checkpoint" } },
    );
    const total = keep.reduce((s, t) => s + (numel(t.shape) * dtypeBits(t.dtype)) / 8, 0);
    const buf = new Uint8Array(PIECE_BYTES);
    let done = 0;
    for (const t of keep) {
      const size = dtypeBits(t.dtype) / 8;
      const n = numel(t.shape);
      const per = Math.max(1, Math.floor(PIECE_BYTES / size));
      for (let s = 0; s < n; s += per) {
        const k = Math.min(per, n - s);
        writer.writeSync(t.name, s * size, reader.readElements(t.name, s, k, buf));
        done += k * size;
        opts.onProgress?.(done, total);
      }
    }
    const { files } = await writer.finish();
    await staged.publish();
    return {
      input: ckpt.root,
      out: staged.target,
      layout: ckpt.layout,
      tensors: keep.length,
      parameters: keep.reduce((s, t) => s + numel(t.shape), 0),
      bytes: total,
      files,
      skippedTensors: ckpt.tensors.size - keep.length,
      skippedItems: [...ckpt.bytesItems.keys()],
    };
  } catch (e) {
    await writer?.abort().catch(() => undefined);
    await staged.discard();
    throw e;
  } finally {
    reader.close();
  }
}
