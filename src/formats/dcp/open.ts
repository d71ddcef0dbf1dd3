/**
 * Opens a PyTorch Distributed Checkpoint folder (`.metadata` + data files) in any layout
 * torch writes: torch.save zips per item (FileSystemWriter's default, Megatron
 * torch_dist, torchtitan, FSDP, Lightning), or one safetensors blob per file
 * (SerializationFormat.SAFETENSORS). Folders written by HuggingFaceStorageWriter have no
 * `.metadata` and go through hf-storage.ts. Only headers and metadata are read here;
 * tensor bytes are read on demand through DcpReader.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { PmaError } from "../../common/errors.js";
import { readFullySync } from "../../common/positional-io.js";
import { LENGTH_PREFIX, parseSafetensorsHeader } from "../safetensors-header.js";
import { checkShardName, staysInside } from "../shard-path.js";
import { decodeMetadata, storageKey, type DcpMetadata, type StorageInfo } from "./metadata.js";
import type { DcpBytesItem, DcpCheckpoint, DcpLayout, DcpTensor } from "./model.js";
import { loadPickle, type PyValue } from "./pickle-values.js";
import { segmentTensor } from "./segment-tensor.js";
import { openForRead, readRecord, readSegmentRecords, segmentRoot } from "./segment-zip.js";
import { validateCheckpoint } from "./validate.js";
import { isShardedHfStorage, openHfStorage } from "./hf-storage.js";

export const METADATA_FILE = ".metadata";
/** Metadata of even a very large model is a few MB; far more is not metadata. */
const MAX_METADATA_SIZE = 1 << 30;

export interface OpenedDcp extends DcpCheckpoint {
  /** The decoded `.metadata`; null for HuggingFaceStorageWriter folders. */
  metadata: DcpMetadata | null;
  metadataPath: string | null;
}

/** Whether `dir` holds a distributed checkpoint pma can open (a `.metadata`, or sharded HF storage). */
export async function isDcpFolder(dir: string): Promise<boolean> {
  const st = await fs.promises.stat(nodePath.join(dir, METADATA_FILE)).catch(() => null);
  if (st?.isFile()) return true;
  return isShardedHfStorage(dir).catch(() => false);
}

export async function openDcp(dir: string): Promise<OpenedDcp> {
  const root = nodePath.resolve(dir);
  const metaPath = nodePath.join(root, METADATA_FILE);
  const st = await fs.promises.stat(metaPath).catch(() => null);
  if (!st?.isFile()) {
    if (await isShardedHfStorage(root))
      return { ...(await openHfStorage(root)), metadata: null, metadataPath: null };
    throw new PmaError("IO", `${root}: no ${METADATA_FILE}; not a torch.distributed.checkpoint folder.`, {
      file: root,
    });
  }
  if (!(await staysInside(root, metaPath))) {
    throw new PmaError(
      "PATH_UNSAFE",
      `${metaPath}: is a link leading outside the checkpoint folder; refusing to read it.`,
      { file: metaPath },
    );
  }
  if (st.size > MAX_METADATA_SIZE)
    throw new PmaError(
      "METADATA_INVALID",
      `${metaPath}: is ${st.size} bytes, far more than any checkpoint's metadata.`,
      { file: metaPath },
    );
  const meta = decodeMetadata(loadPickle(await fs.promises.readFile(metaPath), metaPath), metaPath);

  // Every relative_path must name a file in this folder: metadata is untrusted input.
  const paths = new Map<string, string>();
  const resolvePath = async (rel: string): Promise<string> => {
    let abs = paths.get(rel);
    if (abs === undefined) {
      const name = checkShardName(rel, metaPath);
      if (name.includes("/")) {
        throw new PmaError(
          "PATH_UNSAFE",
          `${metaPath}: data file "${rel}" is in a subfolder; DCP writes its files beside .metadata, so pma refuses it.`,
          { file: metaPath },
        );
      }
      abs = nodePath.join(root, name);
      if (!(await staysInside(root, abs))) {
        throw new PmaError(
          "PATH_UNSAFE",
          `${metaPath}: data file "${rel}" is a link leading outside the checkpoint folder; refusing to read it.`,
          { file: metaPath },
        );
      }
      paths.set(rel, abs);
    }
    return abs;
  };
  const storageOf = (fqn: string, offsets: number[] | null): StorageInfo => {
    const s = meta.storage.get(storageKey(fqn, offsets));
    if (s === undefined) {
      throw new PmaError(
        "METADATA_INVALID",
        `${metaPath}: item "${fqn}"${offsets ? ` (chunk at [${offsets.join(", ")}])` : ""} has no storage entry; the checkpoint is incomplete.`,
        { file: metaPath },
      );
    }
    return s;
  };

  const bytesItems = new Map<string, DcpBytesItem>();
  for (const name of meta.bytesItems) {
    const s = storageOf(name, null);
    const file = await resolvePath(s.relativePath);
    const size = (await fs.promises.stat(file).catch(() => null))?.size ?? 0;
    checkInside(metaPath, `item "${name}"`, file, size, s);
    bytesItems.set(name, {
      name,
      file: await resolvePath(s.relativePath),
      offset: s.offset,
      length: s.length,
    });
  }

  const fds = new Map<string, number>();
  const fdOf = (file: string) => {
    let fd = fds.get(file);
    if (fd === undefined) fds.set(file, (fd = openForRead(file)));
    return fd;
  };
  const tensors = new Map<string, DcpTensor>();
  let layout: DcpLayout = "torch-save";
  try {
    const first = [...meta.tensors.values()].find((t) => t.chunks.length > 0);
    if (first !== undefined) {
      const s = storageOf(first.name, first.chunks[0]!.offsets);
      const file = await resolvePath(s.relativePath);
      const magic = Buffer.alloc(4);
      if (fs.fstatSync(fdOf(file)).size >= s.offset + 4) readFullySync(fdOf(file), file, magic, s.offset);
      layout = magic.readUInt32LE(0) === 0x04034b50 ? "torch-save" : "safetensors";
    }
    const blobs = new Map<
      string,
      Map<string, { fileOffset: number; byteLength: number; shape: number[]; dtype: string }>
    >();
    const blobOf = (file: string, start: number) => {
      const key = `${file}\u0000${start}`;
      let b = blobs.get(key);
      if (b === undefined) {
        const fd = fdOf(file);
        const size = fs.fstatSync(fd).size;
        if (start + LENGTH_PREFIX > size) {
          throw new PmaError(
            "METADATA_INVALID",
            `${metaPath}: a safetensors blob at byte ${start} of ${file} lies past its end (${size} bytes).`,
            { file: metaPath },
          );
        }
        const prefix = Buffer.alloc(LENGTH_PREFIX);
        readFullySync(fd, file, prefix, start);
        const n = prefix.readBigUInt64LE(0);
        if (n > BigInt(size - start - LENGTH_PREFIX))
          throw new PmaError(
            "METADATA_INVALID",
            `${file}: the safetensors header at byte ${start} claims ${n} bytes, past the end of the file.`,
            { file },
          );
        const header = Buffer.alloc(Number(n));
        readFullySync(fd, file, header, start + LENGTH_PREFIX);
        const parsed = parseSafetensorsHeader(header, size - start, file);
        b = new Map(
          parsed.tensors.map((t) => [
            t.name,
            { fileOffset: start + t.fileOffset, byteLength: t.byteLength, shape: t.shape, dtype: t.dtype },
          ]),
        );
        blobs.set(key, b);
      }
      return b;
    };
    if (layout === "torch-save") checkNoSharedBytes(metaPath, meta, paths);
    for (const t of meta.tensors.values()) {
      const chunks = [];
      for (const c of t.chunks) {
        const s = storageOf(t.name, c.offsets);
        const file = await resolvePath(s.relativePath);
        if (layout === "torch-save") {
          checkInside(
            metaPath,
            `the chunk of "${t.name}" at [${c.offsets.join(", ")}]`,
            file,
            fs.fstatSync(fdOf(file)).size,
            s,
          );
          const records = readSegmentRecords(fdOf(file), file, s.offset, s.length, t.name);
          const seg = segmentTensor(fdOf(file), file, records, t.name, t.dtype, c.sizes);
          chunks.push({
            ...c,
            file,
            dataOffset: seg.dataOffset,
            byteLength: seg.byteLength,
            record: {
              dataOffset: seg.record.dataOffset,
              length: seg.record.length,
              crcFields: seg.record.crcFields,
            },
          });
        } else {
          // The blob's own header locates the data; .metadata gives only the blob's start.
          const entry = blobOf(file, s.offset).get(t.name);
          if (entry === undefined || t.chunks.length !== 1) {
            throw new PmaError(
              "FORMAT_UNSUPPORTED",
              `${metaPath}: tensor "${t.name}" is not a whole tensor in the safetensors blob of ${file}; pma reads unsharded safetensors-format DCP only.`,
              { file: metaPath },
            );
          }
          if (entry.dtype !== t.dtype || entry.shape.join(",") !== c.sizes.join(",")) {
            throw new PmaError(
              "METADATA_INVALID",
              `${file}: tensor "${t.name}" is ${entry.dtype} [${entry.shape.join(", ")}] in the file but ${t.dtype} [${c.sizes.join(", ")}] in .metadata.`,
              { file },
            );
          }
          chunks.push({ ...c, file, dataOffset: entry.fileOffset, byteLength: entry.byteLength });
        }
      }
      tensors.set(t.name, { name: t.name, dtype: t.dtype, shape: t.shape, chunks });
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
  const dataFiles = [...new Set([...paths.values()].map((p) => nodePath.basename(p)))].sort();
  const ckpt: OpenedDcp = {
    root,
    layout,
    tensors,
    bytesItems,
    dataFiles,
    metadata: meta,
    metadataPath: metaPath,
  };
  await validateCheckpoint(ckpt, metaPath);
  // DCP unpickles BYTE_IO items with weights_only=False: a checkpoint pma copies or
  // merges must not carry a payload that would run when the trainer loads it.
  for (const name of bytesItems.keys()) readBytesValue(ckpt, name);
  return ckpt;
}

/**
 * In the torch.save layout every item is its own zip at its own byte range: two items
 * sharing bytes would make one stored value two tensors (and a writer replacing one
 * would change the other), so metadata that says so is refused.
 */
function checkNoSharedBytes(metaPath: string, meta: DcpMetadata, paths: Map<string, string>): void {
  const byFile = new Map<string, { start: number; end: number; what: string }[]>();
  for (const [key, s] of meta.storage) {
    const list = byFile.get(s.relativePath) ?? byFile.set(s.relativePath, []).get(s.relativePath)!;
    list.push({
      start: s.offset,
      end: s.offset + s.length,
      what:
        key.replace("\u0000bytes", "").replace("\u0000", " at [") + (key.endsWith("\u0000bytes") ? "" : "]"),
    });
  }
  for (const [rel, list] of byFile) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++) {
      if (list[i]!.start < list[i - 1]!.end) {
        throw new PmaError(
          "METADATA_INVALID",
          `${metaPath}: items "${list[i - 1]!.what}" and "${list[i]!.what}" overlap in ${paths.get(rel) ?? rel} (bytes ${list[i]!.start} to ${list[i - 1]!.end}); each item of a torch.save-layout checkpoint has its own bytes, so the metadata is damaged or hostile.`,
          { file: metaPath },
        );
      }
    }
  }
}

function checkInside(metaPath: string, what: string, file: string, size: number, s: StorageInfo): void {
  if (s.offset + s.length > size) {
    throw new PmaError(
      "METADATA_INVALID",
      `${metaPath}: ${what} lies at bytes [${s.offset}, ${s.offset + s.length}) of ${file}, past its end (${size} bytes); the checkpoint is truncated or its metadata is damaged.`,
      { file: metaPath },
    );
  }
}

/**
 * The value of a BYTE_IO item (a torch.save zip holding only `data.pkl`), as inert data.
 * DCP itself unpickles these with weights_only=False, so this is where a hostile
 * checkpoint would run code; here any global outside the allowlist is refused.
 */
export function readBytesValue(ckpt: DcpCheckpoint, name: string): PyValue {
  const b = ckpt.bytesItems.get(name);
  if (b === undefined)
    throw new PmaError("TENSOR_NOT_FOUND", `${ckpt.root}: no item named "${name}".`, { file: ckpt.root });
  const fd = openForRead(b.file);
  try {
    const records = readSegmentRecords(fd, b.file, b.offset, b.length, name);
    const root = segmentRoot(records, b.file, name);
    const pkl = records.find((r) => r.name === `${root}data.pkl`)!;
    return loadPickle(readRecord(fd, b.file, pkl), `${b.file} (item "${name}")`);
  } finally {
    fs.closeSync(fd);
  }
}
