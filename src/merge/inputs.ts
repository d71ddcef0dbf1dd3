import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors, type CheckpointTensors } from "../formats/checkpoint-files.js";
import { readProgress, type CheckpointProgress } from "./order.js";

/** One checkpoint to merge: its tensors (not loaded), progress and identity. */
export interface MergeInput {
  path: string;
  checkpoint: CheckpointTensors;
  progress: CheckpointProgress;
  /** Sum of the sizes of its safetensors files. */
  sizeBytes: number;
  /** sha256 of each file's JSON header: cheap, and pins names, shapes, dtypes, offsets. */
  headerSha256: string[];
}

export async function openMergeInput(path: string): Promise<MergeInput> {
  await stat(path).catch((e: unknown) => {
    throw new PmaError("IO", `${path}: no such checkpoint (${(e as Error).message})`, { file: path, cause: e });
  });
  const checkpoint = await openCheckpointTensors(path);
  const progress = await readProgress(path);
  return {
    path,
    checkpoint,
    progress,
    sizeBytes: checkpoint.files.reduce((s, f) => s + f.fileSize, 0),
    headerSha256: checkpoint.files.map((f) => createHash("sha256").update(f.headerBytes).digest("hex")),
  };
}

/**
 * Every input must have exactly the reference's tensors, shapes and dtypes: a merge of
 * mismatched checkpoints is meaningless, and listing the first differences (not just
 * the first) saves the user a round trip per mistake.
 */
export function checkSameTensors(inputs: MergeInput[], maxListed = 10): void {
  const ref = inputs[0]!;
  const problems: string[] = [];
  for (const other of inputs.slice(1)) {
    for (const [name, t] of ref.checkpoint.tensors) {
      const o = other.checkpoint.tensors.get(name);
      if (o === undefined) problems.push(`${other.path}: missing tensor "${name}"`);
      else if (o.dtype !== t.dtype) problems.push(`${other.path}: "${name}" is ${o.dtype}, but ${t.dtype} in ${ref.path}`);
      else if (o.shape.join(",") !== t.shape.join(",")) {
        problems.push(`${other.path}: "${name}" has shape [${o.shape.join(", ")}], but [${t.shape.join(", ")}] in ${ref.path}`);
      }
    }
    for (const name of other.checkpoint.tensors.keys()) {
      if (!ref.checkpoint.tensors.has(name)) problems.push(`${other.path}: extra tensor "${name}" not in ${ref.path}`);
    }
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, maxListed).map((p) => `  ${p}`);
    if (problems.length > maxListed) shown.push(`  ... and ${problems.length - maxListed} more`);
    throw new PmaError("CHECKPOINT_MISMATCH", `the checkpoints do not have the same tensors:\n${shown.join("\n")}`, { file: inputs[1]?.path ?? ref.path });
  }
}
