import assert from "node:assert/strict";
import { test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { lrAt } from "../src/nn/schedule.js";
import {
  DEFAULT_TRAIN_CONFIG,
  maxSteps,
  modelConfigFor,
  parseTrainConfig,
  parseTrainConfigYaml,
  scheduleSpec,
  stepsEvery,
  tokensPerStep,
  trainConfigToYaml,
} from "../src/train/config.js";

/** Asserts a CONFIG_INVALID error whose message names `field`. */
function rejects(fn: () => unknown, field: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isPmaError(e, "CONFIG_INVALID"), `expected CONFIG_INVALID, got ${String(e)}`);
    if (typeof field === "string")
      assert.ok(e.message.includes(field), `"${e.message}" does not name ${field}`);
    else assert.match(e.message, field);
    return true;
  });
}

test("defaults are the lab notes' small dense model and optimizer", () => {
  const c = DEFAULT_TRAIN_CONFIG;
  assert.equal(c.model.preset, "dense");
  assert.equal(c.model.hidden_size, 128);
  assert.equal(c.model.num_hidden_layers, 4);
  assert.equal(c.model.num_attention_heads, 4);
  assert.equal(c.model.intermediate_size, 344);
  assert.equal(c.model.head_dim, 32);
  assert.equal(c.model.max_position_embeddings, c.data.seq_len);
  assert.equal(c.data.seq_len, 128);
  assert.equal(tokensPerStep(c), 4096);
  assert.deepEqual(c.optimizer, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1 });
  const s = scheduleSpec(c.schedule);
  // 50 warmup steps then constant 3e-3.
  assert.equal(lrAt(s, 25 * 4096), 1.5e-3);
  assert.equal(lrAt(s, 50 * 4096), 3e-3);
  assert.equal(lrAt(s, 1e9), 3e-3);
  assert.equal(stepsEvery(c, c.checkpointing.every_tokens), 25);
  assert.equal(stepsEvery(c, c.eval.every_tokens), 100);
  assert.equal(c.eval.max_tokens, 0);
  assert.equal(maxSteps(c), 1000);
  assert.equal(c.checkpointing.dtype, "f32");
});

test("an empty file, null and {} all give the defaults; the resolved config round-trips through YAML", () => {
  assert.deepEqual(parseTrainConfigYaml("", "empty.yaml"), DEFAULT_TRAIN_CONFIG);
  assert.deepEqual(parseTrainConfig(null, "x"), DEFAULT_TRAIN_CONFIG);
  const c = parseTrainConfigYaml(
    "model: {preset: moe}\nschedule: {kind: wsd, lr: 1e-3}\ncheckpointing: {dtype: bf16}\n",
    "run.yaml",
  );
  assert.deepEqual(parseTrainConfigYaml(trainConfigToYaml(c), "again.yaml"), c);
  assert.deepEqual(parseTrainConfig(JSON.parse(JSON.stringify(c)), "json"), c);
});

test("YAML fields override defaults; token counts accept suffixes; derived fields follow", () => {
  const c = parseTrainConfigYaml(
    [
      "model: {hidden_size: 64, num_attention_heads: 2, num_key_value_heads: 1}",
      "data: {seq_len: 64, micro_batch: 2, grad_accum: 3, vocab_size: 1024}",
      "training: {max_tokens: 1.5M}",
      "eval: {every_tokens: 100k}",
      "checkpointing: {every_tokens: '38400'}",
    ].join("\n"),
    "run.yaml",
  );
  assert.equal(c.model.head_dim, 32);
  assert.equal(c.model.num_key_value_heads, 1);
  assert.equal(c.model.max_position_embeddings, 64);
  assert.equal(c.training.max_tokens, 1_500_000);
  assert.equal(tokensPerStep(c), 384);
  // 100k / 384 = 260.4 -> 260 steps; 38400 / 384 = 100 exactly.
  assert.equal(stepsEvery(c, c.eval.every_tokens), 260);
  assert.equal(stepsEvery(c, c.checkpointing.every_tokens), 100);
  assert.equal(maxSteps(c), Math.ceil(1_500_000 / 384));
  const m = modelConfigFor(c.model, 1024, 1023);
  assert.equal(m.vocab_size, 1024);
  assert.equal(m.eos_token_id, 1023);
  assert.equal(m.num_local_experts, 0);
});

test("the moe preset gives 8 experts of half the dense width, top-2", () => {
  const c = parseTrainConfig({ model: { preset: "moe" } }, "x");
  assert.equal(c.model.num_local_experts, 8);
  assert.equal(c.model.num_experts_per_tok, 2);
  assert.equal(c.model.intermediate_size * 2, DEFAULT_TRAIN_CONFIG.model.intermediate_size);
  assert.equal(modelConfigFor(c.model, 4096, 4095).num_local_experts, 8);
});

test("schedule defaults for cosine and wsd span the run; wsd decays over its last 20%", () => {
  const w = parseTrainConfig(
    {
      schedule: { kind: "wsd" },
      training: { max_tokens: 1_000_000 },
      data: { micro_batch: 1, grad_accum: 1, seq_len: 100 },
    },
    "x",
  );
  // warmup 50 steps of 100 tokens = 5000; remaining 995000: decay 199000, stable 796000.
  assert.equal(w.schedule.warmup_tokens, 5000);
  assert.equal(w.schedule.decay_tokens, 199_000);
  assert.equal(w.schedule.stable_tokens, 796_000);
  assert.equal(lrAt(scheduleSpec(w.schedule), 1_000_000), 0);
  const cos = parseTrainConfig({ schedule: { kind: "cosine", lr: 1e-3 } }, "x");
  assert.equal(cos.schedule.lr_min, 1e-4);
  assert.equal(cos.schedule.warmup_tokens + cos.schedule.decay_tokens!, cos.training.max_tokens);
});

test("a fork's new schedule starts at the fork's tokens without warmup; an untouched schedule is kept", () => {
  const parent = parseTrainConfig({ training: { max_tokens: 400_000 } }, "parent");
  const fork = parseTrainConfig(
    { schedule: { kind: "wsd", stable_tokens: 0, decay_tokens: 100_000 } },
    "fork",
    { base: parent, forkTokens: 200_704 },
  );
  assert.equal(fork.schedule.start_tokens, 200_704);
  assert.equal(fork.schedule.warmup_tokens, 0);
  assert.equal(fork.schedule.lr, parent.schedule.lr);
  const s = scheduleSpec(fork.schedule);
  assert.equal(lrAt(s, 200_704), parent.schedule.lr);
  assert.equal(lrAt(s, 250_704), parent.schedule.lr / 2);
  const same = parseTrainConfig({ training: { max_tokens: 800_000 } }, "resume", {
    base: parent,
    forkTokens: 200_704,
  });
  assert.deepEqual(same.schedule, parent.schedule);
  assert.equal(same.training.max_tokens, 800_000);
});

test("invalid configs name the file and the field", () => {
  rejects(() => parseTrainConfigYaml("modle: {}", "run.yaml"), /run\.yaml: modle is not a config section/);
  rejects(
    () => parseTrainConfigYaml("optimizer: {betas: [0.9, 0.95]}", "run.yaml"),
    "optimizer.betas is not a known field",
  );
  rejects(
    () => parseTrainConfigYaml("schedule: {lr: fast}", "run.yaml"),
    'run.yaml: schedule.lr must be a finite number, got "fast"',
  );
  rejects(() => parseTrainConfigYaml("schedule: {lr: -1}", "run.yaml"), "schedule.lr must be >= 0");
  rejects(
    () => parseTrainConfigYaml("schedule: {kind: linear}", "run.yaml"),
    "schedule.kind must be one of constant, cosine, wsd",
  );
  rejects(
    () => parseTrainConfigYaml("schedule: {kind: constant, decay_tokens: 5}", "run.yaml"),
    "schedule.decay_tokens is not a known field",
  );
  rejects(
    () => parseTrainConfigYaml("data: {seq_len: 0}", "run.yaml"),
    "data.seq_len must be an integer >= 1",
  );
  rejects(
    () => parseTrainConfigYaml("data: {micro_batch: 2.5}", "run.yaml"),
    "data.micro_batch must be an integer",
  );
  rejects(() => parseTrainConfigYaml("training: {max_tokens: 4 million}", "run.yaml"), "training.max_tokens");
  rejects(
    () => parseTrainConfigYaml("training: {backend: cuda}", "run.yaml"),
    "training.backend must be one of auto, blas, wasm, js",
  );
  rejects(
    () => parseTrainConfigYaml("checkpointing: {dtype: fp8}", "run.yaml"),
    "checkpointing.dtype must be one of f32, bf16",
  );
  rejects(() => parseTrainConfigYaml("optimizer: {beta2: 1}", "run.yaml"), "optimizer.beta2 must be < 1");
  rejects(
    () => parseTrainConfigYaml("model: {num_local_experts: 8}", "run.yaml"),
    "model.num_local_experts must be 0 for preset dense",
  );
  rejects(
    () =>
      parseTrainConfigYaml(
        "model: {num_attention_heads: 3, hidden_size: 96, num_key_value_heads: 2}",
        "run.yaml",
      ),
    "num_attention_heads (3) must be a multiple of num_key_value_heads (2)",
  );
  rejects(
    () => parseTrainConfigYaml("model: {max_position_embeddings: 64}", "run.yaml"),
    "model.max_position_embeddings must be >= data.seq_len (128)",
  );
  rejects(() => parseTrainConfigYaml("model: [1, 2]", "run.yaml"), "model must be a mapping");
  rejects(() => parseTrainConfigYaml("model: {hidden_size: 64", "run.yaml"), /run\.yaml: not valid YAML/);
  rejects(() => parseTrainConfigYaml("- a\n- b", "run.yaml"), "must be a mapping of sections");
});
