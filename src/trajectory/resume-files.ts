/**
 * The files of a training checkpoint besides its weights, sorted by what a resume does
 * with them once the weights are replaced by a merge (PMA-init). Trainer state, RNG
 * and data-position files say where training stands and are kept; optimizer moments
 * belong to the one parent they were accumulated on, so they are kept only on request.
 */
import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";

/** What happens to the optimizer state of the latest healthy checkpoint. */
export type OptimizerChoice = "latest" | "reset";

export interface ResumeFilePlan {
  /** Regular files copied next to the merged weights. */
  copy: string[];
  /** Files and folders left out, each with the reason. */
  omitted: { name: string; reason: string }[];
}

/** Written by the merge itself: the weights, and the config/tokenizer copied from the newest input. */
const WEIGHTS =
  /^(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|adapter_model\.safetensors)$/;
const MERGE_OWNED =
  /^(config\.json|adapter_config\.json|generation_config\.json|tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|vocab\.(json|txt)|merges\.txt|chat_template\.(json|jinja)|preprocessor_config\.json|pma_merge\.json)$/;
/** Weights in formats a resume would load instead of (or on top of) the merged safetensors. */
const OTHER_WEIGHTS = /^(pytorch_model.*\.bin(\.index\.json)?|adapter_model\.bin|model.*\.(pt|pth|ckpt))$/;

/**
 * Optimizer-state files. The Hugging Face Trainer restores optimizer.pt and scheduler.pt
 * only as a pair, so "reset" leaves out both: the scheduler then starts again from its
 * first step (a fresh warmup) while global_step, the data position and the RNG continue.
 */
const OPTIMIZER_STATE = /^(optimizer(\.pt|\.bin|\.safetensors|\.json|_state\.json)|scheduler\.pt)$/;

/** Sorts the files of `checkpointDir` (the latest healthy checkpoint) for a resume. */
export async function planResumeFiles(
  checkpointDir: string,
  optimizer: OptimizerChoice,
): Promise<ResumeFilePlan> {
  let entries;
  try {
    entries = await readdir(checkpointDir, { withFileTypes: true });
  } catch (e) {
    throw new PmaError("IO", `${checkpointDir}: cannot list (${(e as Error).message})`, {
      file: checkpointDir,
      cause: e,
    });
  }
  const plan: ResumeFilePlan = { copy: [], omitted: [] };
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.isDirectory()) {
      // DeepSpeed's global_step*/ and FSDP's sharded folders hold their own copy of the
      // weights, which the engine would load over the merge.
      plan.omitted.push({
        name: `${e.name}/`,
        reason:
          "a folder (DeepSpeed/FSDP state carries its own weights, which would replace the merge on resume)",
      });
      continue;
    }
    if (!e.isFile()) {
      plan.omitted.push({ name: e.name, reason: "not a regular file (a link could point anywhere)" });
      continue;
    }
    if (WEIGHTS.test(e.name) || MERGE_OWNED.test(e.name)) continue;
    if (OTHER_WEIGHTS.test(e.name)) {
      plan.omitted.push({
        name: e.name,
        reason: "weights in another format; a resume would load them instead of the merge",
      });
      continue;
    }
    if (OPTIMIZER_STATE.test(e.name) && optimizer === "reset") {
      plan.omitted.push({ name: e.name, reason: "--optimizer reset" });
      continue;
    }
    plan.copy.push(e.name);
  }
  return plan;
}

/** Copies the planned files (they are small next to the weights, except optimizer state). */
export async function copyResumeFiles(
  fromDir: string,
  toDir: string,
  plan: ResumeFilePlan,
  signal?: AbortSignal,
): Promise<void> {
  for (const name of plan.copy) {
    if (signal?.aborted) throw new PmaError("INTERRUPTED", "PMA-init interrupted; no output was written");
    try {
      await copyFile(join(fromDir, name), join(toDir, name));
    } catch (e) {
      throw new PmaError(
        "IO",
        `${join(fromDir, name)}: cannot copy into the PMA-init checkpoint (${(e as Error).message})`,
        { file: join(fromDir, name), cause: e },
      );
    }
  }
}
