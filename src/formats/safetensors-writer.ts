import * as fs from "node:fs";
import * as nodePath from "node:path";
import { promisify } from "node:util";
import { PmaError } from "../common/errors.js";
import { fsyncPath } from "../common/atomic-dir.js";
import type { DType } from "../tensor/dtype.js";
import {
  encodeHeader,
  fileMetadata,
  orderForWrite,
  type PlannedTensor,
  type TensorSpec,
} from "./safetensors-layout.js";
import { ioError, writeFully, writeFullySync } from "../common/positional-io.js";

export type { PlannedTensor, TensorSpec } from "./safetensors-layout.js";

/** The Hugging Face ecosystem's default `max_shard_size`. */
export const DEFAULT_SHARD_SIZE = 5e9;

export interface PlannedShard {
  /** File name inside the output directory. */
  file: string;
  /** In the order their bytes follow each other in the file. */
  tensors: PlannedTensor[];
  dataLength: number;
}

export interface ShardPlan {
  shards: PlannedShard[];
  /** Sum of all tensor bytes (the index's `total_size`). */
  totalSize: number;
  /** `<base>.safetensors.index.json` when there are several shards, else null. */
  indexFile: string | null;
}

export interface TensorLayout {
  /** Absolute path of the shard holding the tensor. */
  file: string;
  /** Absolute position of the tensor's first byte in that file. */
  fileOffset: number;
  byteLength: number;
}

export interface WriterOptions {
  shardSize?: number;
  metadata?: Record<string, string>;
  fileBaseName?: string;
  /**
   * Several processes write disjoint parts of the same files (a partitioned merge):
   * each one creates the files if absent, writes the same header and size, and never
   * writes the index; the process that assembles the parts does (`writeShardIndex`).
   */
  shared?: boolean;
}

const openAsync = promisify(fs.open);
const closeAsync = promisify(fs.close);
const fsyncAsync = promisify(fs.fsync);
const ftruncateAsync = promisify(fs.ftruncate);

function shardFileName(base: string, index: number, count: number): string {
  if (count === 1) return `${base}.safetensors`;
  const pad = (k: number) => String(k).padStart(5, "0");
  return `${base}-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/**
 * Splits tensors into shards greedily in the reference write order, as
 * huggingface_hub does with `max_shard_size`: a shard closes when the next tensor would
 * push it past `shardSize`; a tensor larger than that gets a shard of its own.
 */
export function planShards(specs: TensorSpec[], shardSize: number, fileBaseName = "model"): ShardPlan {
  if (!(Number.isFinite(shardSize) && shardSize > 0)) {
    throw new PmaError("USAGE", `shard size must be a positive number of bytes, got ${shardSize}.`);
  }
  if (fileBaseName === "" || /[/\\\0]/.test(fileBaseName) || fileBaseName === "." || fileBaseName === "..") {
    throw new PmaError("USAGE", `file base name "${fileBaseName}" must be a plain file name.`);
  }
  const groups: { tensors: PlannedTensor[]; dataLength: number }[] = [];
  let current: { tensors: PlannedTensor[]; dataLength: number } = { tensors: [], dataLength: 0 };
  let totalSize = 0;
  for (const t of orderForWrite(specs)) {
    if (current.tensors.length > 0 && current.dataLength + t.byteLength > shardSize) {
      groups.push(current);
      current = { tensors: [], dataLength: 0 };
    }
    current.tensors.push(t);
    current.dataLength += t.byteLength;
    totalSize += t.byteLength;
  }
  groups.push(current);
  const shards = groups.map((g, i) => ({ file: shardFileName(fileBaseName, i, groups.length), ...g }));
  return {
    shards,
    totalSize,
    indexFile: shards.length > 1 ? `${fileBaseName}.safetensors.index.json` : null,
  };
}

interface OpenShard {
  path: string;
  fd: number | null;
}

function createError(path: string, e: unknown): PmaError {
  if ((e as NodeJS.ErrnoException | undefined)?.code === "EEXIST") {
    return new PmaError("EXISTS", `${path}: already exists; write into a fresh directory.`, {
      file: path,
      cause: e,
    });
  }
  return ioError(path, "create", e);
}

/**
 * Writes a (possibly sharded) safetensors checkpoint whose layout is fixed up front:
 * `create` writes every header and sizes every file, so tensor bytes can then land at
 * known positions in any order, from this thread or from workers that open the files
 * themselves (see `layout`). Publishing the directory atomically is the caller's job.
 */
export class SafetensorsWriter {
  readonly dir: string;
  readonly plan: ShardPlan;
  private readonly shards: OpenShard[];
  private readonly layouts: Map<string, TensorLayout & { shard: OpenShard }>;
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(
    dir: string,
    plan: ShardPlan,
    shards: OpenShard[],
    layouts: Map<string, TensorLayout & { shard: OpenShard }>,
    private readonly shared: boolean,
  ) {
    this.dir = dir;
    this.plan = plan;
    this.shards = shards;
    this.layouts = layouts;
  }

  static async create(
    dir: string,
    specs: TensorSpec[],
    opts: WriterOptions = {},
  ): Promise<SafetensorsWriter> {
    const plan = planShards(specs, opts.shardSize ?? DEFAULT_SHARD_SIZE, opts.fileBaseName);
    const metadata = fileMetadata(opts.metadata);
    const absDir = nodePath.resolve(dir);
    try {
      await fs.promises.mkdir(absDir, { recursive: true });
    } catch (e) {
      throw ioError(absDir, "mkdir", e);
    }
    const opened: OpenShard[] = [];
    const layouts = new Map<string, TensorLayout & { shard: OpenShard }>();
    try {
      for (const shard of plan.shards) {
        const path = nodePath.join(absDir, shard.file);
        const header = encodeHeader(shard.tensors, metadata, path);
        let fd: number;
        try {
          fd = await openAsync(path, opts.shared ? fs.constants.O_RDWR | fs.constants.O_CREAT : "wx");
        } catch (e) {
          throw createError(path, e);
        }
        const open: OpenShard = { path, fd };
        opened.push(open);
        await writeFully(fd, path, header.bytes, 0);
        try {
          await ftruncateAsync(fd, header.dataStart + header.dataLength);
        } catch (e) {
          throw ioError(path, "resize", e);
        }
        shard.tensors.forEach((t, i) => {
          layouts.set(t.name, {
            file: path,
            fileOffset: header.dataStart + header.offsets[i]!,
            byteLength: t.byteLength,
            shard: open,
          });
        });
      }
    } catch (e) {
      await Promise.allSettled(opened.map((s) => (s.fd === null ? undefined : closeAsync(s.fd))));
      throw e;
    }
    return new SafetensorsWriter(absDir, plan, opened, layouts, opts.shared ?? false);
  }

  layout(name: string): TensorLayout {
    const l = this.layouts.get(name);
    if (!l)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.dir}: the output has no tensor named "${name}".`, {
        file: this.dir,
      });
    return { file: l.file, fileOffset: l.fileOffset, byteLength: l.byteLength };
  }

  private target(
    name: string,
    byteOffset: number,
    length: number,
  ): { fd: number; path: string; position: number } {
    if (this.state !== "open") {
      throw new PmaError("INTERNAL", `${this.dir}: write of "${name}" after the writer was ${this.state}.`, {
        file: this.dir,
      });
    }
    const l = this.layouts.get(name);
    if (!l)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.dir}: the output has no tensor named "${name}".`, {
        file: this.dir,
      });
    if (!(Number.isSafeInteger(byteOffset) && byteOffset >= 0 && byteOffset + length <= l.byteLength)) {
      throw new PmaError(
        "RANGE_INVALID",
        `${l.file}: write of ${length} bytes at ${byteOffset} falls outside tensor "${name}" of ${l.byteLength} bytes.`,
        { file: l.file },
      );
    }
    // fd is only null after finish/abort, which the state check above excludes.
    return { fd: l.shard.fd as number, path: l.file, position: l.fileOffset + byteOffset };
  }

  /** Writes bytes of one tensor starting `byteOffset` bytes into it. */
  async write(name: string, byteOffset: number, data: Uint8Array): Promise<void> {
    const t = this.target(name, byteOffset, data.length);
    await writeFully(t.fd, t.path, data, t.position);
  }

  writeSync(name: string, byteOffset: number, data: Uint8Array): void {
    const t = this.target(name, byteOffset, data.length);
    writeFullySync(t.fd, t.path, data, t.position);
  }

  /**
   * Makes every shard durable, then writes the index (when sharded) and syncs the
   * directory entry. Returns absolute paths: shards in order, then the index.
   */
  async finish(): Promise<{ files: string[]; totalSize: number }> {
    if (this.state !== "open") {
      throw new PmaError("INTERNAL", `${this.dir}: finish() on a writer that was already ${this.state}.`, {
        file: this.dir,
      });
    }
    this.state = "finished";
    for (const s of this.shards) {
      const fd = s.fd as number;
      s.fd = null;
      try {
        await fsyncAsync(fd);
      } catch (e) {
        await closeAsync(fd).catch(() => undefined);
        throw ioError(s.path, "fsync", e);
      }
      await closeAsync(fd);
    }
    const files = this.shards.map((s) => s.path);
    if (this.plan.indexFile !== null && !this.shared) {
      const indexPath = nodePath.join(this.dir, this.plan.indexFile);
      await writeShardIndex(indexPath, this.plan);
      files.push(indexPath);
    }
    try {
      await fsyncPath(this.dir);
    } catch (e) {
      throw ioError(this.dir, "fsync of directory", e);
    }
    return { files, totalSize: this.plan.totalSize };
  }

  /** Closes every file without syncing; the caller discards the directory. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    const fds = this.shards.map((s) => s.fd).filter((fd): fd is number => fd !== null);
    for (const s of this.shards) s.fd = null;
    await Promise.allSettled(fds.map((fd) => closeAsync(fd)));
  }
}

/** Writes `<base>.safetensors.index.json` for a sharded plan; refuses to replace a file. */
export async function writeShardIndex(indexPath: string, plan: ShardPlan): Promise<void> {
  const entries: [string, string][] = [];
  for (const shard of plan.shards) for (const t of shard.tensors) entries.push([t.name, shard.file]);
  entries.sort((a, b) => Buffer.compare(Buffer.from(a[0], "utf8"), Buffer.from(b[0], "utf8")));
  const weightMap: Record<string, string> = {};
  for (const [name, file] of entries) {
    Object.defineProperty(weightMap, name, {
      value: file,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  // Same shape and spacing as huggingface_hub (indent=2, sorted keys, trailing newline).
  const text =
    JSON.stringify({ metadata: { total_size: plan.totalSize }, weight_map: weightMap }, null, 2) + "\n";
  let fd: number;
  try {
    fd = await openAsync(indexPath, "wx");
  } catch (e) {
    throw createError(indexPath, e);
  }
  try {
    await writeFully(fd, indexPath, Buffer.from(text, "utf8"), 0);
    await fsyncAsync(fd);
  } finally {
    await closeAsync(fd);
  }
}

export interface TensorData {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** Writes one whole safetensors file at `path` (replacing it) from in-memory tensors. */
export async function writeSafetensors(
  path: string,
  tensors: TensorData[],
  metadata?: Record<string, string>,
): Promise<void> {
  const ordered = orderForWrite(tensors);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  for (const t of ordered) {
    const given = byName.get(t.name)!.data.length;
    if (given !== t.byteLength) {
      throw new PmaError(
        "TENSOR_SIZE_MISMATCH",
        `${path}: tensor "${t.name}" (${t.dtype}, shape [${t.shape.join(", ")}]) needs ${t.byteLength} bytes, got ${given}.`,
        { file: path },
      );
    }
  }
  const header = encodeHeader(ordered, fileMetadata(metadata), path);
  let fd: number;
  try {
    fd = await openAsync(path, "w");
  } catch (e) {
    throw createError(path, e);
  }
  try {
    await writeFully(fd, path, header.bytes, 0);
    for (let i = 0; i < ordered.length; i++) {
      await writeFully(fd, path, byName.get(ordered[i]!.name)!.data, header.dataStart + header.offsets[i]!);
    }
    await fsyncAsync(fd);
  } finally {
    await closeAsync(fd);
  }
}
