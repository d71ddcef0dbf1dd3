import assert from "node:assert/strict";
import { test } from "node:test";
import {
  DEFAULT_DENSE_CONFIG,
  DEFAULT_MOE_CONFIG,
  fromHfConfig,
  isMoe,
  resolveConfig,
  toHfConfig,
} from "../src/nn/config.js";

test("default dense config is the lab model (d 256, 4x4 heads, SwiGLU 688, vocab 4096, seq 256, tied)", () => {
  const c = resolveConfig();
  assert.equal(c.hidden_size, 256);
  assert.equal(c.num_hidden_layers, 4);
  assert.equal(c.num_attention_heads, 4);
  assert.equal(c.num_key_value_heads, 4);
  assert.equal(c.head_dim, 64);
  assert.equal(c.intermediate_size, 688);
  assert.equal(c.vocab_size, 4096);
  assert.equal(c.max_position_embeddings, 256);
  assert.equal(c.tie_word_embeddings, true);
  assert.equal(isMoe(c), false);
  assert.deepEqual(c, { ...DEFAULT_DENSE_CONFIG });
});

test("resolveConfig derives head_dim and KV heads like transformers and picks MoE defaults", () => {
  const c = resolveConfig({ hidden_size: 96, num_attention_heads: 6 });
  assert.equal(c.head_dim, 16);
  assert.equal(c.num_key_value_heads, 6);
  const m = resolveConfig({ num_local_experts: 8 });
  assert.equal(isMoe(m), true);
  assert.equal(m.intermediate_size, DEFAULT_MOE_CONFIG.intermediate_size);
  assert.equal(m.num_experts_per_tok, 2);
});

test("invalid configs are refused with CONFIG_INVALID naming the field", () => {
  const cases: [Parameters<typeof resolveConfig>[0], RegExp][] = [
    [{ num_attention_heads: 4, num_key_value_heads: 3 }, /num_key_value_heads/],
    [{ head_dim: 7 }, /head_dim/],
    [{ hidden_size: 0 }, /hidden_size/],
    [{ num_local_experts: 4, num_experts_per_tok: 5 }, /num_experts_per_tok/],
    [{ vocab_size: 2, bos_token_id: 1, eos_token_id: 2 }, /eos_token_id/],
    [{ rms_norm_eps: 0 }, /rms_norm_eps/],
  ];
  for (const [partial, msg] of cases) {
    assert.throws(
      () => resolveConfig(partial),
      (e: unknown) => {
        const err = e as { code?: string; message?: string };
        return err.code === "CONFIG_INVALID" && msg.test(err.message ?? "");
      },
    );
  }
});

test("config.json: Llama and Mixtral objects with HF field names; round trip", () => {
  const dense = resolveConfig({ tie_word_embeddings: false, num_key_value_heads: 2 });
  const j = toHfConfig(dense, "bfloat16");
  assert.deepEqual(j["architectures"], ["LlamaForCausalLM"]);
  assert.equal(j["model_type"], "llama");
  assert.equal(j["torch_dtype"], "bfloat16");
  assert.equal(j["hidden_act"], "silu");
  assert.equal(j["num_key_value_heads"], 2);
  assert.equal(j["bos_token_id"], 1);
  assert.equal(j["eos_token_id"], 2);
  assert.equal("num_local_experts" in j, false);
  assert.deepEqual(fromHfConfig(JSON.parse(JSON.stringify(j))), dense);

  const moe = resolveConfig({ num_local_experts: 4, router_aux_loss_coef: 0.02 });
  const m = toHfConfig(moe);
  assert.deepEqual(m["architectures"], ["MixtralForCausalLM"]);
  assert.equal(m["model_type"], "mixtral");
  assert.equal(m["num_local_experts"], 4);
  assert.equal(m["num_experts_per_tok"], 2);
  assert.equal(m["router_aux_loss_coef"], 0.02);
  assert.equal(m["output_router_logits"], true);
  assert.equal(m["torch_dtype"], "float32");
  assert.deepEqual(fromHfConfig(JSON.parse(JSON.stringify(m))), moe);
});

test("fromHfConfig applies transformers defaults and refuses other architectures", () => {
  const c = fromHfConfig({
    model_type: "llama",
    vocab_size: 100,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_theta: 500000,
    bos_token_id: 1,
    eos_token_id: 2,
  });
  assert.equal(c.tie_word_embeddings, false); // LlamaConfig's default
  assert.equal(c.head_dim, 8);
  assert.equal(c.num_key_value_heads, 4);
  assert.throws(() => fromHfConfig({ model_type: "gpt2" }), { code: "CONFIG_INVALID" });
  assert.throws(() => fromHfConfig({ model_type: "llama", hidden_act: "gelu" }), { code: "CONFIG_INVALID" });
});
