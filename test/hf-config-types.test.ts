/**
 * transformers 5 loads configs as strict dataclasses: a float field given a JSON integer
 * is refused ("expected float, got int"). pma's config.json (written by pma train, and
 * by merges with --dtype) must match the field types of LlamaConfig and MixtralConfig.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTopLevelString, stringifyHfConfig } from "../src/formats/hf-config-json.js";
import { DEFAULT_DENSE_CONFIG, DEFAULT_MOE_CONFIG, toHfConfig } from "../src/nn/config.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { pythonTopLevelTypes, type PythonJsonType } from "./helpers/python-json.js";

/**
 * Field -> accepted Python types, from the annotated fields of LlamaConfig
 * (src/transformers/models/llama/configuration_llama.py) and MixtralConfig
 * (src/transformers/models/mixtral/configuration_mixtral.py) in huggingface/transformers
 * at commit 008e574391258935f3ecc3035c882e73bbcac419; rope_theta is a float of
 * RopeParameters (src/transformers/modeling_rope_utils.py).
 */
const COMMON: Record<string, readonly PythonJsonType[]> = {
  vocab_size: ["int"],
  hidden_size: ["int"],
  intermediate_size: ["int"],
  num_hidden_layers: ["int"],
  num_attention_heads: ["int"],
  hidden_act: ["str"],
  max_position_embeddings: ["int"],
  initializer_range: ["float"],
  rms_norm_eps: ["float"],
  use_cache: ["bool"],
  pad_token_id: ["int", "None"],
  bos_token_id: ["int", "None"],
  eos_token_id: ["int", "list", "None"],
  tie_word_embeddings: ["bool"],
  head_dim: ["int", "None"],
  rope_theta: ["float"],
};
const LLAMA_TYPES: Record<string, readonly PythonJsonType[]> = {
  ...COMMON,
  num_key_value_heads: ["int", "None"],
  pretraining_tp: ["int", "None"],
  attention_bias: ["bool"],
  attention_dropout: ["int", "float", "None"],
  mlp_bias: ["bool"],
};
const MIXTRAL_TYPES: Record<string, readonly PythonJsonType[]> = {
  ...COMMON,
  num_key_value_heads: ["int"],
  sliding_window: ["int", "None"],
  attention_dropout: ["float", "int"],
  num_experts_per_tok: ["int"],
  num_local_experts: ["int"],
  output_router_logits: ["bool"],
  router_aux_loss_coef: ["float"],
  router_jitter_noise: ["float"],
};

function checkTypes(text: string, what: string): void {
  const types = pythonTopLevelTypes(text);
  const modelType = JSON.parse(text).model_type as string;
  const table = modelType === "mixtral" ? MIXTRAL_TYPES : modelType === "llama" ? LLAMA_TYPES : null;
  assert.ok(table !== null, `${what}: model_type ${modelType}`);
  let checked = 0;
  for (const [field, accepted] of Object.entries(table)) {
    const t = types.get(field);
    if (t === undefined) continue;
    checked++;
    assert.ok(
      accepted.includes(t),
      `${what}: ${field} is a JSON ${t}, ${modelType} accepts ${accepted.join(" | ")}`,
    );
  }
  assert.ok(checked >= 15, `${what}: only ${checked} known fields`);
}

test("the written config.json of Llama and Mixtral has transformers' field types", () => {
  checkTypes(stringifyHfConfig(toHfConfig(DEFAULT_DENSE_CONFIG)), "llama");
  const moe = stringifyHfConfig(toHfConfig(DEFAULT_MOE_CONFIG));
  checkTypes(moe, "mixtral");
  assert.match(moe, /"router_jitter_noise": 0\.0,/);
  assert.match(moe, /"rope_theta": 10000\.0,/);
  assert.deepEqual(JSON.parse(moe), toHfConfig(DEFAULT_MOE_CONFIG), "same values");
  // The table catches what JSON.stringify writes.
  assert.throws(
    () => checkTypes(JSON.stringify(toHfConfig(DEFAULT_MOE_CONFIG), null, 2), "stringify"),
    /(rope_theta|router_jitter_noise) is a JSON int/,
  );
});

test("setTopLevelString changes one top-level string and keeps every other byte", () => {
  const text = '{\n  "a": {"torch_dtype": "x"},\n  "torch_dtype" : "float32",\n  "f": 0.0\n}\n';
  assert.equal(setTopLevelString(text, "torch_dtype", "bfloat16"), text.replace('"float32"', '"bfloat16"'));
  assert.deepEqual(JSON.parse(setTopLevelString('{"f": 1.0}', "torch_dtype", "float16")!), {
    torch_dtype: "float16",
    f: 1,
  });
  assert.deepEqual(JSON.parse(setTopLevelString("{ }", "k", "v")!), { k: "v" });
  assert.equal(setTopLevelString("[1]", "k", "v"), null);
});

describe("a trained MoE checkpoint and its merges", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const pma = (...args: string[]) =>
    spawnSync(process.execPath, [PMA_CLI, ...args], {
      encoding: "utf8",
      env: { ...process.env, PMA_CACHE_DIR: join(tmp.dir, "cache") },
    });
  before(async () => {
    tmp = await tempDir("pma-hf-config-");
  });
  after(() => tmp.cleanup());

  test("pma train (MoE), merge --dtype and merge --shard-size write config.json transformers accepts", async () => {
    await writeFile(
      join(tmp.dir, "moe.yaml"),
      [
        "model: {preset: moe, hidden_size: 32, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_local_experts: 4}",
        "data: {vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2}",
        "training: {max_tokens: 512, backend: wasm}",
        "schedule: {lr: 1.0e-2, warmup_tokens: 256}",
        "eval: {every_tokens: 0, max_tokens: 512}",
        "checkpointing: {every_tokens: 256}",
        "",
      ].join("\n"),
    );
    const run = join(tmp.dir, "run");
    const t = pma("train", "--config", join(tmp.dir, "moe.yaml"), "--out", run);
    assert.equal(t.status, 0, t.stderr);
    const trained = await readFile(join(run, "checkpoint-2", "config.json"), "utf8");
    checkTypes(trained, "trained");

    const asBf16 = join(tmp.dir, "bf16");
    const m = pma(
      "merge",
      join(run, "checkpoint-1"),
      join(run, "checkpoint-2"),
      "--out",
      asBf16,
      "--dtype",
      "bf16",
      "--threads",
      "1",
    );
    assert.equal(m.status, 0, m.stderr);
    const merged = await readFile(join(asBf16, "config.json"), "utf8");
    checkTypes(merged, "merge --dtype");
    assert.equal(JSON.parse(merged).torch_dtype, "bfloat16");
    assert.equal(
      merged,
      trained.replace(/"torch_dtype": "[a-z0-9]+"/, '"torch_dtype": "bfloat16"'),
      "only torch_dtype changed",
    );

    const sharded = join(tmp.dir, "sharded");
    const s = pma(
      "merge",
      join(run, "checkpoint-1"),
      join(run, "checkpoint-2"),
      "--out",
      sharded,
      "--shard-size",
      "20KB",
      "--threads",
      "1",
      "--json",
    );
    assert.equal(s.status, 0, s.stderr);
    const rec = JSON.parse(s.stdout) as { files: string[] };
    const shards = rec.files.filter((f) => f.endsWith(".safetensors")).length;
    assert.ok(shards > 2);
    checkTypes(await readFile(join(sharded, "config.json"), "utf8"), "sharded merge");
    const text = pma(
      "merge",
      join(run, "checkpoint-1"),
      join(run, "checkpoint-2"),
      "--out",
      sharded,
      "--shard-size",
      "20KB",
      "--threads",
      "1",
      "--force",
    );
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`in ${shards} shards and the index,`));
  });
});
