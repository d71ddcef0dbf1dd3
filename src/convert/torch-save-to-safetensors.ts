/**
 * A torch.save checkpoint (a folder with pytorch_model.bin, or a sharded .bin folder
 * with its index) as a Hugging Face safetensors folder. This is the one-input merge: with
 * float64 accumulation one input comes back bit for bit in its own dtype
 * (test/merge-identity.test.ts), the folder's config and tokenizer files are copied, the
 * output is written atomically, and pma_merge.json records where it came from.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { TORCH_INDEX_FILE, TORCH_SINGLE_FILE } from "../formats/checkpoint-files.js";
import { merge, type MergeRecord } from "../merge/merger.js";

/** A folder whose weights are torch.save archives (and no safetensors beside them). */
export function isTorchSaveFolder(dir: string): boolean {
  const isFile = (name: string): boolean => existsSync(join(dir, name)) && statSync(join(dir, name)).isFile();
  return (
    existsSync(dir) &&
    statSync(dir).isDirectory() &&
    (isFile(TORCH_SINGLE_FILE) || isFile(TORCH_INDEX_FILE)) &&
    !isFile("model.safetensors") &&
    !isFile("model.safetensors.index.json")
  );
}

export interface TorchSaveToSafetensorsOptions {
  out: string;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function convertTorchSaveToSafetensors(
  input: string,
  opts: TorchSaveToSafetensorsOptions,
): Promise<MergeRecord> {
  if (!isTorchSaveFolder(input))
    throw new PmaError(
      "USAGE",
      `${input}: not a torch.save checkpoint folder (${TORCH_SINGLE_FILE} or ${TORCH_INDEX_FILE}); --to safetensors converts those and distributed checkpoints.`,
      { file: input },
    );
  return merge({
    inputs: [input],
    out: opts.out,
    force: opts.force ?? false,
    accumulate: "f64",
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
  });
}
