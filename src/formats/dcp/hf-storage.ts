/**
 * Checkpoints written by torch's HuggingFaceStorageWriter with `save_distributed=True`:
 * one safetensors file per rank (`shard-0000R-model-...safetensors`), each holding that
 * rank's piece of every tensor under the tensor's own name, and
 * `__metadata__.DCP_SHARDING_INFO` (a JSON string) giving each piece's `saved_offsets`
 * in the global tensor. There is no `.metadata`; the global shape is the bounding box of
 * the pieces, as torch's HuggingFaceStorageReader takes it.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { PmaError } from "../../common/errors.js";
import { SafetensorsFile } from "../safetensors.js";
import type { DcpCheckpoint, DcpChunk, DcpTensor } from "./model.js";
import { validateCheckpoint } from "./validate.js";

export const SHARDING_INFO_KEY = "DCP_SHARDING_INFO";

function offsetsOf(info: unknown, name: string, file: string, rank: number): number[] {
  const bad = (): never => {
    throw new PmaError(
      "METADATA_INVALID",
      `${file}: ${SHARDING_INFO_KEY} has no valid "saved_offsets" for tensor "${name}"; the file is damaged.`,
      { file },
    );
  };
  if (typeof info !== "object" || info === null) return bad();
  const entry = (info as Record<string, unknown>)[name];
  if (typeof entry !== "object" || entry === null) return bad();
  const offsets = (entry as Record<string, unknown>).saved_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== rank ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
  )
    return bad();
  return offsets as number[];
}

function parseInfo(f: SafetensorsFile): unknown {
  try {
    return JSON.parse(f.metadata[SHARDING_INFO_KEY]!) as unknown;
  } catch (e) {
    throw new PmaError(
      "METADATA_INVALID",
      `${f.path}: ${SHARDING_INFO_KEY} is not valid JSON (${(e as Error).message}).`,
      { file: f.path, cause: e },
    );
  }
}

/**
 * Whether `dir` is such a checkpoint: safetensors files carrying DCP_SHARDING_INFO
 * where some tensor is split (stored in several files or at a non-zero offset). A folder
 * whose pieces are all whole tensors is an ordinary Hugging Face checkpoint and is left
 * to the safetensors reader.
 */
export async function isShardedHfStorage(dir: string): Promise<boolean> {
  const names = (await fs.promises.readdir(dir).catch(() => [] as string[]))
    .filter((n) => n.endsWith(".safetensors"))
    .sort();
  if (names.length === 0) return false;
  const seen = new Set<string>();
  for (const n of names) {
    const f = await SafetensorsFile.open(nodePath.join(dir, n));
    try {
      if (f.metadata[SHARDING_INFO_KEY] === undefined) return false;
      const info = parseInfo(f);
      for (const t of f.tensors.values()) {
        if (seen.has(t.name)) return true;
        seen.add(t.name);
        if (offsetsOf(info, t.name, f.path, t.shape.length).some((o) => o !== 0)) return true;
      }
    } finally {
      await f.close();
    }
  }
  return false;
}

/** Opens a HuggingFaceStorageWriter folder as a sharded checkpoint; its files are closed again (reads go through DcpReader). */
export async function openHfStorage(dir: string): Promise<DcpCheckpoint> {
  const root = nodePath.resolve(dir);
  const names = (await fs.promises.readdir(root)).filter((n) => n.endsWith(".safetensors")).sort();
  const tensors = new Map<string, DcpTensor>();
  for (const n of names) {
    const f = await SafetensorsFile.open(nodePath.join(root, n));
    try {
      if (f.metadata[SHARDING_INFO_KEY] === undefined) {
        throw new PmaError(
          "METADATA_INVALID",
          `${f.path}: has no ${SHARDING_INFO_KEY}, unlike the other files of this sharded checkpoint; it does not belong here.`,
          {
            file: f.path,
          },
        );
      }
      const info = parseInfo(f);
      for (const t of f.tensors.values()) {
        const offsets = offsetsOf(info, t.name, f.path, t.shape.length);
        const chunk: DcpChunk = {
          offsets,
          sizes: t.shape,
          file: f.path,
          dataOffset: t.fileOffset,
          byteLength: t.byteLength,
        };
        const prior = tensors.get(t.name);
        if (prior === undefined)
          tensors.set(t.name, { name: t.name, dtype: t.dtype, shape: [], chunks: [chunk] });
        else if (prior.dtype !== t.dtype || prior.chunks[0]!.sizes.length !== t.shape.length) {
          throw new PmaError(
            "METADATA_INVALID",
            `${f.path}: tensor "${t.name}" is ${t.dtype} of rank ${t.shape.length} here but ${prior.dtype} of rank ${prior.chunks[0]!.sizes.length} in ${prior.chunks[0]!.file}.`,
            {
              file: f.path,
            },
          );
        } else prior.chunks.push(chunk);
      }
    } finally {
      await f.close();
    }
  }
  for (const t of tensors.values()) {
    const rank = t.chunks[0]!.sizes.length;
    t.shape = Array.from({ length: rank }, (_, d) =>
      Math.max(...t.chunks.map((c) => c.offsets[d]! + c.sizes[d]!)),
    );
  }
  const ckpt: DcpCheckpoint = {
    root,
    layout: "hf-storage",
    tensors,
    bytesItems: new Map(),
    dataFiles: names,
  };
  await validateCheckpoint(ckpt, root);
  return ckpt;
}
