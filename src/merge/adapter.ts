/**
 * Merging PEFT adapter checkpoints (a LoRA fine-tuning run's checkpoint-N folders).
 * The adapter tensors are averaged like any weights and written as
 * adapter_model.safetensors beside the newest input's adapter_config.json, so PEFT
 * loads the merge as it loads each checkpoint.
 *
 * Note what that is for LoRA: each delta is B_i A_i scaled by alpha/r, and the merge
 * averages the A's and the B's (the weight average of the adapter's parameters, as for
 * full checkpoints), whose product is not the average of the products.
 */
import { PmaError } from "../common/errors.js";
import { ADAPTER_CONFIG_FILE, readAdapterConfig } from "../formats/peft-adapter.js";
import type { MergeInput } from "./inputs.js";

/**
 * Fields of adapter_config.json that change what the tensors mean: adapters that differ
 * in them cannot be averaged (the same tensors, scaled or applied differently).
 */
const MEANING_FIELDS = [
  "peft_type",
  "r",
  "lora_alpha",
  "target_modules",
  "use_rslora",
  "use_dora",
  "fan_in_fan_out",
  "modules_to_save",
  "rank_pattern",
  "alpha_pattern",
];

/**
 * Whether the inputs are PEFT adapters. Adapters and full models are not mixed, and
 * adapters must agree on the fields that give their tensors meaning.
 */
export async function checkAdapterInputs(inputs: readonly MergeInput[]): Promise<boolean> {
  const adapters = inputs.filter((i) => i.adapter === true);
  if (adapters.length === 0) return false;
  if (adapters.length !== inputs.length) {
    const full = inputs.find((i) => i.adapter !== true)!;
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${adapters[0]!.path} is a PEFT adapter but ${full.path} is a full model; merge adapters with adapters and models with models.`,
      { file: full.path },
    );
  }
  const configs = await Promise.all(inputs.map((i) => readAdapterConfig(i.checkpoint.root)));
  const ref = configs[0]!;
  configs.forEach((c, k) => {
    for (const field of MEANING_FIELDS) {
      const a = JSON.stringify(ref[field] ?? null);
      const b = JSON.stringify(c[field] ?? null);
      if (a !== b) {
        throw new PmaError(
          "CHECKPOINT_MISMATCH",
          `${inputs[k]!.checkpoint.root}/${ADAPTER_CONFIG_FILE}: "${field}" is ${b.slice(0, 200)}, but ${a.slice(0, 200)} in ${inputs[0]!.checkpoint.root}; adapters configured differently cannot be averaged.`,
          { file: inputs[k]!.path },
        );
      }
    }
  });
  return true;
}
