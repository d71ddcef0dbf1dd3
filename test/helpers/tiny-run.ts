/**
 * A tiny real pma training run (dense Llama, Brown corpus, a few seconds on one core),
 * trained by the CLI once per test process and shared by the evaluation and tuning tests.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PMA_CLI } from "./processes.js";

export const TINY_RUN_CONFIG = `model: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}
data: {vocab_size: 384, seq_len: 16, micro_batch: 4, grad_accum: 1}
training: {max_tokens: 12288, seed: 3, backend: wasm}
schedule: {lr: 1.0e-2, warmup_tokens: 1024}
eval: {every_tokens: 0}
checkpointing: {every_tokens: 1024}
`;

/** Trains the tiny run into `dir/run` with `cacheDir` as PMA_CACHE_DIR; returns the run folder. */
export function trainTinyRun(dir: string, cacheDir: string): string {
  writeFileSync(join(dir, "tiny.yaml"), TINY_RUN_CONFIG);
  const out = join(dir, "run");
  const r = spawnSync(
    process.execPath,
    [PMA_CLI, "train", "--config", join(dir, "tiny.yaml"), "--out", out],
    {
      encoding: "utf8",
      env: { ...process.env, PMA_CACHE_DIR: cacheDir },
    },
  );
  assert.equal(r.status, 0, `pma train: ${r.stderr}`);
  return out;
}
