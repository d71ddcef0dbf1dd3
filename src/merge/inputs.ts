import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors, openRemoteCheckpointTensors } from "../formats/checkpoint-files.js";
import { progressFromName } from "../formats/revision-name.js";
import { parseTrainerState, TRAINER_STATE_FILE } from "../formats/trainer-state.js";
import { isRemoteUri, readSmall, resolveRemote, type RemoteLocation } from "../sources/location.js";
import type { SourceRef } from "../sources/source.js";
import { GgufFile, isGgufPath } from "../formats/gguf.js";
import { stepFromName } from "../formats/trainer-state.js";
import type { DType } from "../tensor/dtype.js";
import { readProgress, type CheckpointProgress } from "./order.js";

/** What the merge reads of one tensor, whatever the file format. */
export interface SourceTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Absolute position of the first byte in `file`. */
  fileOffset: number;
  file: {
    path: string;
    sourceRef: SourceRef | null;
    read(name: string, byteOffset?: number, byteLength?: number): Promise<Uint8Array>;
  };
}

/** An opened checkpoint as the merge sees it: a safetensors checkpoint or one GGUF file. */
export interface MergeSource {
  root: string;
  tensors: Map<string, SourceTensor>;
  close(): Promise<void>;
}

/** One checkpoint to merge: its tensors (not loaded), progress and identity. */
export interface MergeInput {
  path: string;
  checkpoint: MergeSource;
  /** The file itself when the input is a GGUF: the output takes its metadata. */
  gguf: GgufFile | null;
  progress: CheckpointProgress;
  /** Sum of the sizes of its safetensors files. */
  sizeBytes: number;
  /** sha256 of each file's JSON header: cheap, and pins names, shapes, dtypes, offsets. */
  headerSha256: string[];
  /** Set when the checkpoint is remote (hf://, s3://, https://): where its other files are. */
  remote?: RemoteLocation;
  /** A PEFT adapter folder (see merge/adapter.ts). */
  adapter?: boolean;
}

export async function openMergeInput(path: string): Promise<MergeInput> {
  if (isRemoteUri(path)) return openRemoteInput(path);
  await stat(path).catch((e: unknown) => {
    throw new PmaError("IO", `${path}: no such checkpoint (${(e as Error).message})`, {
      file: path,
      cause: e,
    });
  });
  if (isGgufPath(path)) return openGgufInput(path);
  const checkpoint = await openCheckpointTensors(path);
  const progress = await readProgress(path);
  return {
    path,
    checkpoint,
    gguf: null,
    progress,
    sizeBytes: checkpoint.files.reduce((s, f) => s + f.fileSize, 0),
    headerSha256: checkpoint.files.map((f) => createHash("sha256").update(f.headerBytes).digest("hex")),
    ...(checkpoint.adapter === true ? { adapter: true } : {}),
  };
}

/**
 * A GGUF file as a merge input. Only tensors whose bytes are plain little-endian
 * elements can be merged; quantized blocks would have to be dequantized and requantized,
 * which is lossy and not a merge. There is no trainer state beside a GGUF, so progress
 * is the step in the file name (`checkpoint-1200.gguf`) or its folder's name.
 */
async function openGgufInput(path: string, remote?: RemoteLocation): Promise<MergeInput> {
  const file = await GgufFile.open(remote !== undefined ? await [...remote.files.values()][0]!.open() : path);
  try {
    const split = file.metadata.get("split.count");
    if (split !== undefined && split.type !== "array" && Number(split.value) > 1) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${path}: is one part of a split GGUF (split.count ${String(split.value)}); pma merges single-file GGUFs only: join the parts first (llama-gguf-split --merge).`,
        { file: path },
      );
    }
    if (file.tensors.size === 0) {
      // A vocabulary-only GGUF (llama.cpp's ggml-vocab-*.gguf) or a metadata stub: a "merge" would copy metadata and nothing else.
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `${path}: holds no tensors (a vocabulary-only or metadata-only GGUF); there are no weights to merge. Pass the model's GGUF files.`,
        { file: path },
      );
    }
    const tensors = new Map<string, SourceTensor>();
    for (const t of file.tensors.values()) {
      if (t.dtype === null) {
        throw new PmaError(
          "DTYPE_UNSUPPORTED",
          `${path}: tensor "${t.name}" is ${t.typeName}, a quantized ggml type, which pma cannot merge; merge the F32/F16/BF16 GGUF files (or the original checkpoints) and quantize the result.`,
          { file: path },
        );
      }
      tensors.set(t.name, {
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        byteLength: t.byteLength,
        fileOffset: t.fileOffset,
        file,
      });
    }
    const abs = remote !== undefined ? path : resolve(path);
    const step = stepFromName(basename(abs).replace(/\.gguf$/i, "")) ?? stepFromName(basename(dirname(abs)));
    return {
      path,
      ...(remote !== undefined ? { remote } : {}),
      checkpoint: { root: dirname(abs), tensors, close: () => file.close() },
      gguf: file,
      progress: step === undefined ? {} : { step },
      sizeBytes: file.fileSize,
      headerSha256: [await file.headerSha256()],
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}

/**
 * A checkpoint in an S3 prefix, a Hub revision or behind a URL. Its progress comes from
 * its trainer_state.json when there is one, else from its name (the revision or the
 * folder): `tokens3892B`, `step143000`.
 */
async function openRemoteInput(uri: string): Promise<MergeInput> {
  const loc = await resolveRemote(uri);
  if (!loc.isFolder && isGgufPath(loc.name)) return openGgufInput(loc.uri, loc);
  const checkpoint = await openRemoteCheckpointTensors(loc);
  try {
    const progress: CheckpointProgress = {};
    const stateBytes = loc.isFolder ? await readSmall(loc, TRAINER_STATE_FILE) : null;
    const state =
      stateBytes === null ? null : parseTrainerState(stateBytes, `${loc.uri}/${TRAINER_STATE_FILE}`);
    const fromName = progressFromName(loc.name);
    const tokens = state?.tokensSeen ?? fromName.tokens;
    const step = state?.globalStep ?? fromName.step;
    if (tokens !== undefined) progress.tokens = tokens;
    if (step !== undefined) progress.step = step;
    return {
      path: loc.uri,
      remote: loc,
      checkpoint,
      gguf: null,
      progress,
      sizeBytes: checkpoint.files.reduce((s, f) => s + f.fileSize, 0),
      headerSha256: checkpoint.files.map((f) => createHash("sha256").update(f.headerBytes).digest("hex")),
    };
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}

/**
 * Every input must have exactly the reference's tensors, shapes and dtypes: a merge of
 * mismatched checkpoints is meaningless, and listing the first differences (not just
 * the first) saves the user a round trip per mistake.
 */
/** The mismatch error for a list of per-checkpoint problems (the first `maxListed`); nothing when the list is empty. */
export function throwTensorMismatch(problems: string[], file: string, maxListed: number): void {
  if (problems.length === 0) return;
  const shown = problems.slice(0, maxListed).map((p) => `  ${p}`);
  if (problems.length > maxListed) shown.push(`  ... and ${problems.length - maxListed} more`);
  throw new PmaError(
    "CHECKPOINT_MISMATCH",
    `the checkpoints do not have the same tensors:\n${shown.join("\n")}`,
    {
      file,
    },
  );
}

export function checkSameTensors(inputs: MergeInput[], maxListed = 10): void {
  const ref = inputs[0]!;
  const problems: string[] = [];
  for (const other of inputs.slice(1)) {
    for (const [name, t] of ref.checkpoint.tensors) {
      const o = other.checkpoint.tensors.get(name);
      if (o === undefined) problems.push(`${other.path}: missing tensor "${name}"`);
      else if (o.dtype !== t.dtype)
        problems.push(`${other.path}: "${name}" is ${o.dtype}, but ${t.dtype} in ${ref.path}`);
      else if (o.shape.join(",") !== t.shape.join(",")) {
        problems.push(
          `${other.path}: "${name}" has shape [${o.shape.join(", ")}], but [${t.shape.join(", ")}] in ${ref.path}`,
        );
      }
    }
    for (const name of other.checkpoint.tensors.keys()) {
      if (!ref.checkpoint.tensors.has(name))
        problems.push(`${other.path}: extra tensor "${name}" not in ${ref.path}`);
    }
  }
  throwTensorMismatch(problems, inputs[1]?.path ?? ref.path, maxListed);
}
