/**
 * A LoRA fine-tuning run as the Hugging Face Trainer with PEFT saves it: checkpoint-N/
 * folders holding adapter_model.safetensors (PEFT's tensor names:
 * base_model.model.<module>.lora_A.weight [r, in] and lora_B.weight [out, r]),
 * adapter_config.json with PEFT's fields, the Trainer's state files, tokenizer files and
 * the README.md model card PEFT writes; no model weights.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors } from "../../src/formats/safetensors-writer.js";
import { rng } from "./fixtures.js";
import type { LossPoint } from "./spiky-run.js";

export const LORA_RANK = 4;
export const LORA_HIDDEN = 16;
export const LORA_TOKENS_PER_STEP = 2048;
const MODULES = ["q_proj", "v_proj"];

export function adapterConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: "meta-llama/Llama-3.2-1B",
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: 16,
    lora_dropout: 0.05,
    modules_to_save: null,
    peft_type: "LORA",
    r: LORA_RANK,
    rank_pattern: {},
    revision: null,
    target_modules: MODULES,
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
    ...overrides,
  };
}

/** Tensor name -> values (F32), seeded by `seed`. */
export function loraTensors(seed: number, layers = 2): Map<string, { shape: number[]; values: number[] }> {
  const r = rng(seed);
  const out = new Map<string, { shape: number[]; values: number[] }>();
  for (let l = 0; l < layers; l++) {
    for (const m of MODULES) {
      const prefix = `base_model.model.model.layers.${l}.self_attn.${m}`;
      const a = Array.from({ length: LORA_RANK * LORA_HIDDEN }, () => Math.fround(r() - 0.5));
      const b = Array.from({ length: LORA_HIDDEN * LORA_RANK }, () => Math.fround((r() - 0.5) * 0.1));
      out.set(`${prefix}.lora_A.weight`, { shape: [LORA_RANK, LORA_HIDDEN], values: a });
      out.set(`${prefix}.lora_B.weight`, { shape: [LORA_HIDDEN, LORA_RANK], values: b });
    }
  }
  return out;
}

export async function writeAdapterCheckpoint(
  dir: string,
  step: number,
  curve: LossPoint[],
  config = adapterConfig(),
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = [...loraTensors(step)].map(([name, t]) => {
    const buf = Buffer.alloc(t.values.length * 4);
    t.values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
    return {
      name,
      dtype: "F32" as const,
      shape: t.shape,
      data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length),
    };
  });
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  await writeFile(
    join(dir, "README.md"),
    "---\nbase_model: meta-llama/Llama-3.2-1B\nlibrary_name: peft\n---\n# Model Card\n",
  );
  for (const f of ["optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"])
    await writeFile(join(dir, f), `${f} of step ${step}\n`);
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ model_max_length: 2048, step }));
  const history = curve
    .filter((p) => p.step <= step)
    .map((p) => ({
      epoch: p.step / 1000,
      grad_norm: p.gradNorm,
      learning_rate: 2e-4,
      loss: p.loss,
      num_input_tokens_seen: p.step * LORA_TOKENS_PER_STEP,
      step: p.step,
    }));
  await writeFile(
    join(dir, "trainer_state.json"),
    JSON.stringify(
      { global_step: step, num_input_tokens_seen: step * LORA_TOKENS_PER_STEP, log_history: history },
      null,
      2,
    ),
  );
}

/** Writes checkpoint-{interval, 2*interval, ...} and returns their paths, oldest first. */
export async function writePeftRun(
  dir: string,
  checkpoints: number,
  interval: number,
  curve: LossPoint[],
): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 1; i <= checkpoints; i++) {
    const p = join(dir, `checkpoint-${i * interval}`);
    await writeAdapterCheckpoint(p, i * interval, curve);
    paths.push(p);
  }
  return paths;
}
