/**
 * PEFT adapter checkpoints: a Trainer run with LoRA (or another PEFT method) saves
 * `checkpoint-N/` with `adapter_model.safetensors` and `adapter_config.json` instead of
 * the model's weights. Such a folder is a checkpoint like any other: its adapter
 * tensors are what is merged, and its config goes with the merge.
 */
import { stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { PmaError } from "../common/errors.js";
import { readJsonObjectFile } from "./json-file.js";

export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
export const ADAPTER_CONFIG_FILE = "adapter_config.json";

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** Whether `path` names an adapter weights file (given by name instead of its folder). */
export function isAdapterWeightsFile(path: string): boolean {
  return basename(path) === ADAPTER_WEIGHTS_FILE;
}

/**
 * The adapter weights file of a PEFT adapter folder, or null when `dir` has none. A
 * weights file without its config is an error: without it the adapter cannot be loaded
 * (rank, alpha, target modules), so neither can its merge.
 */
export async function findAdapterWeights(dir: string): Promise<string | null> {
  const weights = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await isFile(weights))) return null;
  if (!(await isFile(join(dir, ADAPTER_CONFIG_FILE)))) {
    throw new PmaError(
      "IO",
      `${dir}: has ${ADAPTER_WEIGHTS_FILE} but no ${ADAPTER_CONFIG_FILE}; a PEFT adapter folder needs both (the checkpoint is incomplete or was copied in part).`,
      { file: dir },
    );
  }
  return weights;
}

/** The adapter_config.json of an adapter folder, as an object. */
export async function readAdapterConfig(dir: string): Promise<Record<string, unknown>> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  const config = await readJsonObjectFile(path, { code: "CONFIG_INVALID", what: "a PEFT adapter config" });
  if (config === null)
    throw new PmaError("IO", `${path}: missing; a PEFT adapter folder needs it.`, { file: path });
  return config;
}
