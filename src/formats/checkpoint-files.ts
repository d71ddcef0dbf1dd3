import * as fs from "node:fs";
import * as nodePath from "node:path";
import { PmaError } from "../common/errors.js";
import { findDuplicateKey } from "./json-duplicate-keys.js";
import { findAdapterWeights, isAdapterWeightsFile } from "./peft-adapter.js";
import { checkJsonShape, SAFETENSORS_JSON_LIMITS } from "./json-shape.js";
import { SafetensorsFile, type TensorEntry } from "./safetensors.js";
import { checkShardName, resolveInside } from "./shard-path.js";
import { TorchSaveFile } from "./torch-save.js";
import { quoted } from "../common/quote.js";
import { readSmall, type RemoteLocation } from "../sources/location.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
/** Hugging Face's torch.save layout (`save_pretrained(..., safe_serialization=False)`). */
export const TORCH_SINGLE_FILE = "pytorch_model.bin";
export const TORCH_INDEX_FILE = "pytorch_model.bin.index.json";

/** A file of a checkpoint's weights: safetensors, or a torch.save archive read the same way. */
export type WeightsFile = SafetensorsFile | TorchSaveFile;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** An index is a name -> file table; anything near this size is not one. */
const MAX_INDEX_SIZE = 256 * 1024 * 1024;

export type CheckpointTensor = TensorEntry & { file: WeightsFile };

export interface CheckpointTensors {
  /** Absolute path of the checkpoint directory. */
  root: string;
  kind: "single" | "sharded";
  /** Shards in file-name order (one entry for a single file). */
  files: WeightsFile[];
  /** Every tensor of every file: files in order, tensors in file order. */
  tensors: Map<string, CheckpointTensor>;
  /** `__metadata__` of the first file. */
  metadata: Record<string, string>;
  /** The parsed index, when sharded. */
  indexJson?: unknown;
  /** A PEFT adapter (adapter_model.safetensors beside adapter_config.json), not a full model. */
  adapter?: boolean;
  close(): Promise<void>;
}

export interface OpenCheckpointOptions {
  /**
   * Accept shards that are symlinks resolving outside the directory, as in a Hugging
   * Face hub cache snapshot (links into ../../blobs). Off by default: such links can
   * point anywhere.
   */
  allowExternalSymlinks?: boolean;
}

// Extensions of other frameworks' weight files; seeing one means the user has a real
// checkpoint that we cannot read, which deserves a better message than "not found".
const FOREIGN_EXTENSION = /\.(pt|pth|ckpt|pkl|distcp|h5|msgpack)$/;
// In a directory only weight files count: a Trainer checkpoint also holds
// optimizer.pt, training_args.bin, rng_state.pth, which say nothing about the weights.
const FOREIGN_WEIGHTS_FILE =
  /^(tf_model.*\.h5(\.index\.json)?|flax_model.*\.msgpack(\.index\.json)?|consolidated\..*\.pth|model.*\.(pt|pth|ckpt)|.*\.distcp)$/;

function unsupported(path: string, found: string): PmaError {
  return new PmaError(
    "FORMAT_UNSUPPORTED",
    `${path}: weights are stored as "${found}", but pma reads safetensors, torch.save (pytorch_model.bin), GGUF and PyTorch distributed checkpoints; convert the checkpoint first ` +
      `(e.g. load it in transformers and save_pretrained(..., safe_serialization=True)).`,
    { file: path },
  );
}

async function statOrNull(path: string): Promise<fs.Stats | null> {
  try {
    return await fs.promises.stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return null;
    throw new PmaError("IO", `${path}: ${e instanceof Error ? e.message : String(e)}`, {
      file: path,
      cause: e,
    });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Opens a checkpoint's tensors: a `.safetensors` file, a directory holding
 * `model.safetensors`, or a directory with `model.safetensors.index.json` and shards
 * (the index file itself may also be given). Shards are cross-checked against the
 * index so that no tensor is missing, unlisted, or present twice.
 */
export async function openCheckpointTensors(
  path: string,
  opts: OpenCheckpointOptions = {},
): Promise<CheckpointTensors> {
  const abs = nodePath.resolve(path);
  const st = await statOrNull(abs);
  if (!st) throw new PmaError("IO", `${abs}: no such file or directory.`, { file: abs });
  if (st.isFile()) {
    if (abs.endsWith(".index.json")) {
      if (abs.endsWith(".bin.index.json")) return openSharded(nodePath.dirname(abs), abs, opts, ".bin");
      if (!abs.endsWith(".safetensors.index.json")) throw unsupported(abs, nodePath.basename(abs));
      return openSharded(nodePath.dirname(abs), abs, opts);
    }
    if (abs.endsWith(".bin")) return openSingleTorch(nodePath.dirname(abs), abs);
    if (FOREIGN_EXTENSION.test(abs)) throw unsupported(abs, nodePath.basename(abs));
    if (isAdapterWeightsFile(abs) && (await findAdapterWeights(nodePath.dirname(abs))) !== null)
      return { ...(await openSingle(nodePath.dirname(abs), abs)), adapter: true };
    return openSingle(nodePath.dirname(abs), abs);
  }
  if (!st.isDirectory()) throw new PmaError("IO", `${abs}: neither a file nor a directory.`, { file: abs });

  // transformers prefers the single file when both exist; do the same.
  const single = nodePath.join(abs, SINGLE_FILE);
  if ((await statOrNull(single))?.isFile()) return openSingle(abs, single);
  const index = nodePath.join(abs, INDEX_FILE);
  if ((await statOrNull(index))?.isFile()) return openSharded(abs, index, opts);
  const adapter = await findAdapterWeights(abs);
  if (adapter !== null) return { ...(await openSingle(abs, adapter)), adapter: true };
  // The same preference for torch.save weights, which transformers reads after safetensors.
  const torchSingle = nodePath.join(abs, TORCH_SINGLE_FILE);
  if ((await statOrNull(torchSingle))?.isFile()) return openSingleTorch(abs, torchSingle);
  const torchIndex = nodePath.join(abs, TORCH_INDEX_FILE);
  if ((await statOrNull(torchIndex))?.isFile()) return openSharded(abs, torchIndex, opts, ".bin");

  const names = await fs.promises.readdir(abs);
  const foreign = names.find((n) => FOREIGN_WEIGHTS_FILE.test(n));
  if (foreign !== undefined) throw unsupported(abs, foreign);
  // Megatron-LM's legacy format (--ckpt-format torch): iter_N/mp_rank_XX/model_optim_rng.pt.
  const megatronRank = names.find((n) => /^mp_rank_\d+(_\d+)?$/.test(n));
  if (megatronRank !== undefined)
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${abs}: a Megatron-LM legacy checkpoint (${megatronRank}/model_optim_rng.pt, --ckpt-format torch), which pma does not read; ` +
        `pma reads Megatron's torch_dist format: save with --ckpt-format torch_dist, or convert with Megatron's checkpoint converter.`,
      { file: abs },
    );
  const others = names.filter((n) => n.endsWith(".safetensors"));
  const hint =
    others.length > 0
      ? ` It holds ${others.slice(0, 3).join(", ")}${others.length > 3 ? ", ..." : ""}: pass one of them as a file path.`
      : "";
  throw new PmaError(
    "IO",
    `${abs}: expected ${SINGLE_FILE}, ${INDEX_FILE} with its shards, ${TORCH_SINGLE_FILE}, ${TORCH_INDEX_FILE} with its shards, or a PEFT adapter (adapter_model.safetensors with adapter_config.json) in this directory.${hint}`,
    { file: abs },
  );
}

/** A checkpoint that is one opened weights file (local or remote). */
function singleFileCheckpoint(root: string, f: WeightsFile): CheckpointTensors {
  const tensors = new Map<string, CheckpointTensor>();
  for (const t of f.tensors.values()) tensors.set(t.name, { ...t, file: f });
  return { root, kind: "single", files: [f], tensors, metadata: f.metadata, close: () => f.close() };
}

async function openSingleTorch(root: string, file: string): Promise<CheckpointTensors> {
  return singleFileCheckpoint(root, await TorchSaveFile.open(file));
}

async function openSingle(root: string, file: string): Promise<CheckpointTensors> {
  return singleFileCheckpoint(root, await SafetensorsFile.open(file));
}

interface ParsedIndex {
  json: Record<string, unknown>;
  weightMap: Map<string, string>;
  totalSize: number | null;
}

async function readIndex(indexPath: string): Promise<ParsedIndex> {
  const invalid = (what: string): never => {
    throw new PmaError("INDEX_INVALID", `${indexPath}: ${what}`, { file: indexPath });
  };
  let bytes: Buffer;
  try {
    const st = await fs.promises.stat(indexPath);
    if (st.size > MAX_INDEX_SIZE) invalid(`is ${st.size} bytes, too large for a shard index.`);
    bytes = await fs.promises.readFile(indexPath);
  } catch (e) {
    if (e instanceof PmaError) throw e;
    throw new PmaError("IO", `${indexPath}: cannot read: ${e instanceof Error ? e.message : String(e)}`, {
      file: indexPath,
      cause: e,
    });
  }
  return parseIndex(bytes, indexPath);
}

/** A shard index from its bytes (read from disk or a remote store). */
function parseIndex(bytes: Uint8Array, indexPath: string): ParsedIndex {
  const invalid = (what: string): never => {
    throw new PmaError("INDEX_INVALID", `${indexPath}: ${what}`, { file: indexPath });
  };
  let json: unknown;
  let text = "";
  try {
    text = utf8.decode(bytes);
    const shape = checkJsonShape(text, SAFETENSORS_JSON_LIMITS);
    if (shape) invalid(`has ${shape.what} (at character ${shape.position}), which no shard index has.`);
    json = JSON.parse(text);
  } catch (e) {
    if (e instanceof PmaError) throw e;
    invalid(`is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)}).`);
  }
  if (!isObject(json)) return invalid('must be a JSON object with a "weight_map".');
  const dup = findDuplicateKey(text);
  if (dup) {
    const inside = dup.parents.length === 0 ? "" : ` inside "${dup.parents.join('" > "')}"`;
    throw new PmaError(
      "DUPLICATE_NAME",
      `${indexPath}: has the key "${dup.key}" twice${inside}; refusing an ambiguous index.`,
      {
        file: indexPath,
      },
    );
  }
  const wm = json.weight_map;
  if (!isObject(wm)) return invalid(`"weight_map" must be an object of tensor name -> shard file name.`);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== "string" || file === "")
      invalid(`"weight_map" entry for tensor ${quoted(name)} must be a non-empty file name.`);
    weightMap.set(name, file as string);
  }
  let totalSize: number | null = null;
  if (json.metadata !== undefined) {
    if (!isObject(json.metadata)) invalid(`"metadata" must be an object.`);
    const ts = (json.metadata as Record<string, unknown>).total_size;
    if (ts !== undefined) {
      if (typeof ts !== "number" || !Number.isSafeInteger(ts) || ts < 0)
        invalid(`"metadata.total_size" must be a non-negative integer.`);
      totalSize = ts as number;
    }
  }
  return { json, weightMap, totalSize };
}

async function openSharded(
  root: string,
  indexPath: string,
  opts: OpenCheckpointOptions,
  extension: ShardExtension = ".safetensors",
): Promise<CheckpointTensors> {
  const index = await readIndex(indexPath);
  const shardNames = shardNamesOf(index, indexPath, extension);
  const paths: string[] = [];
  for (const name of shardNames)
    paths.push(await resolveInside(root, name, indexPath, opts.allowExternalSymlinks ?? false));
  const open = extension === ".bin" ? TorchSaveFile.open : SafetensorsFile.open;
  return assembleSharded(root, indexPath, index, shardNames, (i) => open(paths[i]!));
}

type ShardExtension = ".safetensors" | ".bin";

/** The index's shard names, normalised ("a.safetensors" and "./a.safetensors" are one) and sorted. */
function shardNamesOf(
  index: ParsedIndex,
  indexPath: string,
  extension: ShardExtension = ".safetensors",
): string[] {
  const names = [
    ...new Set([...index.weightMap.values()].map((file) => checkShardName(file, indexPath))),
  ].sort();
  for (const name of names) {
    if (!name.endsWith(extension)) {
      if (FOREIGN_EXTENSION.test(name)) throw unsupported(indexPath, name);
      throw new PmaError(
        "INDEX_INVALID",
        `${indexPath}: names shard ${quoted(name)}, which is not a ${extension} file.`,
        { file: indexPath },
      );
    }
  }
  return names;
}

/**
 * Opens the shards (through `openShard`, local or remote) and cross-checks them against
 * the index so that no tensor is missing, unlisted, or present twice.
 */
async function assembleSharded(
  root: string,
  indexPath: string,
  index: ParsedIndex,
  shardNames: string[],
  openShard: (i: number) => Promise<WeightsFile>,
): Promise<CheckpointTensors> {
  const invalid = (what: string): PmaError =>
    new PmaError("INDEX_INVALID", `${indexPath}: ${what}`, { file: indexPath });
  const shardOf = new Map<string, string>();
  for (const [tensor, file] of index.weightMap) shardOf.set(tensor, checkShardName(file, indexPath));
  const files: WeightsFile[] = [];
  const closeAll = async () => {
    await Promise.allSettled(files.map((f) => f.close()));
  };
  try {
    for (let i = 0; i < shardNames.length; i++) files.push(await openShard(i));

    const tensors = new Map<string, CheckpointTensor>();
    files.forEach((f, i) => {
      for (const t of f.tensors.values()) {
        // Checked as the map is filled, so it never outgrows weight_map (a Map stops at 2^24 entries).
        if (!shardOf.has(t.name))
          throw invalid(
            `tensor ${quoted(t.name)} is stored in shard ${quoted(shardNames[i]!)} but missing from "weight_map".`,
          );
        const prior = tensors.get(t.name);
        if (prior) {
          throw new PmaError(
            "DUPLICATE_NAME",
            `${f.path}: tensor ${quoted(t.name)} is also stored in ${prior.file.path}; which copy is meant is ambiguous.`,
            {
              file: f.path,
            },
          );
        }
        tensors.set(t.name, { ...t, file: f });
      }
    });
    const nameOfFile = new Map(files.map((f, i) => [f, shardNames[i]!]));
    for (const [name, t] of tensors) {
      const listed = shardOf.get(name);
      const actual = nameOfFile.get(t.file)!;
      if (listed !== actual)
        throw invalid(
          `maps tensor ${quoted(name)} to ${quoted(listed ?? "")} but it is stored in ${quoted(actual)}.`,
        );
    }
    for (const [name, file] of shardOf) {
      if (!tensors.has(name))
        throw invalid(`maps tensor ${quoted(name)} to shard ${quoted(file)}, which does not contain it.`);
    }
    let sum = 0;
    for (const t of tensors.values()) sum += t.byteLength;
    if (index.totalSize !== null && index.totalSize !== sum) {
      throw invalid(
        `"metadata.total_size" is ${index.totalSize} but the shards hold ${sum} tensor bytes; the index does not describe these shards.`,
      );
    }
    return {
      root,
      kind: "sharded",
      files,
      tensors,
      metadata: files[0]?.metadata ?? {},
      indexJson: index.json,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * Opens a remote checkpoint's tensors (an S3 prefix, a Hub revision, one remote file),
 * with the same rules as a local folder: model.safetensors first, else the index and
 * its shards, cross-checked.
 */
export async function openRemoteCheckpointTensors(loc: RemoteLocation): Promise<CheckpointTensors> {
  const openFile = async (name: string) => SafetensorsFile.open(await loc.files.get(name)!.open());
  if (!loc.isFolder) {
    const [entry] = loc.files.values();
    const name = entry!.name;
    if (name.endsWith(".safetensors.index.json"))
      throw new PmaError(
        "USAGE",
        `${loc.uri}: give the folder (prefix or revision) rather than the index file.`,
        { file: loc.uri },
      );
    if (FOREIGN_EXTENSION.test(name) || !name.endsWith(".safetensors")) throw unsupported(loc.uri, name);
    return singleFileCheckpoint(loc.uri, await openFile(name));
  }
  if (loc.files.has(SINGLE_FILE)) {
    return singleFileCheckpoint(loc.uri, await openFile(SINGLE_FILE));
  }
  const indexPath = `${loc.uri}/${INDEX_FILE}`;
  const bytes = await readSmall(loc, INDEX_FILE);
  if (bytes === null) {
    const names = [...loc.files.keys()];
    const foreign = names.find((n) => FOREIGN_WEIGHTS_FILE.test(n));
    if (foreign !== undefined) throw unsupported(loc.uri, foreign);
    throw new PmaError("IO", `${loc.uri}: expected ${SINGLE_FILE} or ${INDEX_FILE} with its shards there.`, {
      file: loc.uri,
    });
  }
  const index = parseIndex(bytes, indexPath);
  const shardNames = shardNamesOf(index, indexPath);
  for (const name of shardNames) {
    if (!loc.files.has(name))
      throw new PmaError(
        "INDEX_INVALID",
        `${indexPath}: names shard "${name}", which is not in ${loc.uri}.`,
        { file: indexPath },
      );
  }
  return assembleSharded(loc.uri, indexPath, index, shardNames, (i) => openFile(shardNames[i]!));
}
