import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors } from "../../src/formats/safetensors-writer.js";
import { checkAdapterInputs } from "../../src/merge/adapter.js";
import { openMergeInput, type MergeInput } from "../../src/merge/inputs.js";
import { utf8, type FuzzTarget } from "../target.js";

/** adapter_config.json as PEFT writes it for a LoRA run. */
const CONFIG = {
  alpha_pattern: {},
  base_model_name_or_path: "meta-llama/Llama-3.2-1B",
  bias: "none",
  fan_in_fan_out: false,
  inference_mode: true,
  lora_alpha: 16,
  lora_dropout: 0.05,
  modules_to_save: null,
  peft_type: "LORA",
  r: 2,
  rank_pattern: {},
  target_modules: ["q_proj", "v_proj"],
  task_type: "CAUSAL_LM",
  use_dora: false,
  use_rslora: false,
};

/**
 * PEFT adapter folders (checkpoint-N/ with adapter_model.safetensors and
 * adapter_config.json) as merge inputs: the fuzzed bytes are one folder's
 * adapter_config.json, read beside a valid one, through opening both as merge inputs
 * and checking they can be merged.
 */
export const adapterTarget: FuzzTarget = {
  name: "peft-adapter",
  description:
    "adapter_config.json of a PEFT adapter folder: openMergeInput -> checkAdapterInputs against a second adapter",
  dictionary: [
    '"peft_type"',
    '"LORA"',
    '"r"',
    '"lora_alpha"',
    '"target_modules"',
    '"use_rslora"',
    '"rank_pattern"',
    "NaN",
    "Infinity",
    "null",
    "[]",
    "{}",
  ],
  async seeds() {
    return [
      utf8(JSON.stringify(CONFIG, null, 2)),
      // Python's json.dumps of a config with a non-finite field, which PEFT can write.
      utf8(
        JSON.stringify({ ...CONFIG, lora_dropout: 0 }, null, 2).replace(
          '"lora_dropout": 0',
          '"lora_dropout": NaN',
        ),
      ),
      utf8(JSON.stringify({ ...CONFIG, r: 4 })),
    ];
  },
  async setup(work) {
    const tensors = [
      {
        name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        dtype: "F32" as const,
        shape: [2, 4],
        data: new Uint8Array(32),
      },
      {
        name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        dtype: "F32" as const,
        shape: [4, 2],
        data: new Uint8Array(32),
      },
    ];
    const dirs = [join(work, "run", "checkpoint-1"), join(work, "run", "checkpoint-2")];
    for (const d of dirs) {
      await mkdir(d, { recursive: true });
      await writeSafetensors(join(d, "adapter_model.safetensors"), tensors);
    }
    await writeFile(join(dirs[0]!, "adapter_config.json"), JSON.stringify(CONFIG));
    return async (data) => {
      await writeFile(join(dirs[1]!, "adapter_config.json"), data);
      const inputs: MergeInput[] = [];
      try {
        for (const d of dirs) inputs.push(await openMergeInput(d));
        await checkAdapterInputs(inputs);
      } finally {
        await Promise.all(inputs.map((i) => i.checkpoint.close()));
      }
    };
  },
};
