import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { ParamSet } from "../src/nn/params.js";
import { Rng } from "../src/nn/rng.js";

const small = resolveConfig({
  vocab_size: 50,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
});

test("dense parameters: HF names, [out, in] shapes, one contiguous flat array", () => {
  const ps = new ParamSet(small, createJsBackend());
  const e = ps.entries();
  const names = e.map((t) => t.name);
  assert.equal(names[0], "model.embed_tokens.weight");
  assert.ok(names.includes("model.layers.1.self_attn.k_proj.weight"));
  assert.ok(!names.includes("lm_head.weight")); // tied
  assert.equal(names.at(-1), "model.norm.weight");
  const shape = (n: string): number[] => e.find((t) => t.name === n)!.shape;
  assert.deepEqual(shape("model.layers.0.self_attn.q_proj.weight"), [16, 16]);
  assert.deepEqual(shape("model.layers.0.self_attn.k_proj.weight"), [8, 16]); // 2 KV heads of 4
  assert.deepEqual(shape("model.layers.0.self_attn.o_proj.weight"), [16, 16]);
  assert.deepEqual(shape("model.layers.0.mlp.gate_proj.weight"), [24, 16]);
  assert.deepEqual(shape("model.layers.0.mlp.down_proj.weight"), [16, 24]);
  assert.deepEqual(shape("model.layers.0.input_layernorm.weight"), [16]);
  const total = e.reduce((a, t) => a + t.data.length, 0);
  assert.equal(total, ps.numel);
  assert.equal(ps.data.length, ps.numel);
  // Views alias the flat arrays: writing a named view is visible in data, same for grads.
  ps.get("model.norm.weight")[3] = 42;
  assert.equal(ps.data[ps.info("model.norm.weight").offset + 3], 42);
  ps.gradOf("model.layers.1.mlp.up_proj.weight")[0] = 7;
  assert.equal(ps.grad[ps.info("model.layers.1.mlp.up_proj.weight").offset], 7);
  // The stacked views the engine multiplies with cover exactly q|k|v and gate|up.
  assert.equal(ps.w.layers[0]!.qkv.length, (16 + 8 + 8) * 16);
  assert.equal(ps.w.layers[0]!.qkv.byteOffset, ps.get("model.layers.0.self_attn.q_proj.weight").byteOffset);
  assert.equal(ps.w.layers[1]!.gateUp!.length, 2 * 24 * 16);
  assert.equal(ps.w.lmHead, ps.w.embed);
  assert.ok(new ParamSet({ ...small, tie_word_embeddings: false }, createJsBackend()).has("lm_head.weight"));
});

test("MoE parameters: router [E, H] and experts w1/w3 [I, H], w2 [H, I]", () => {
  const c = resolveConfig({ ...small, num_local_experts: 3, num_experts_per_tok: 2 });
  const ps = new ParamSet(c, createJsBackend());
  assert.deepEqual(ps.info("model.layers.1.block_sparse_moe.gate.weight").shape, [3, 16]);
  assert.deepEqual(ps.info("model.layers.1.block_sparse_moe.experts.2.w1.weight").shape, [24, 16]);
  assert.deepEqual(ps.info("model.layers.1.block_sparse_moe.experts.2.w3.weight").shape, [24, 16]);
  assert.deepEqual(ps.info("model.layers.1.block_sparse_moe.experts.2.w2.weight").shape, [16, 24]);
  assert.equal(ps.has("model.layers.0.mlp.gate_proj.weight"), false);
  assert.equal(ps.w.layers[0]!.expertW13.length, 3);
  assert.equal(
    ps.w.layers[0]!.expertW13[1]!.byteOffset,
    ps.get("model.layers.0.block_sparse_moe.experts.1.w1.weight").byteOffset,
  );
});

test("init: normal(0, 0.02), residual projections scaled by 1/sqrt(2L), norms 1; seeded", () => {
  const c = resolveConfig({
    ...small,
    hidden_size: 64,
    intermediate_size: 128,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    vocab_size: 300,
  });
  const ps = new ParamSet(c, createJsBackend());
  ps.init(5);
  const stats = (a: Float32Array): { mean: number; std: number } => {
    let s = 0,
      s2 = 0;
    for (const v of a) {
      s += v;
      s2 += v * v;
    }
    return { mean: s / a.length, std: Math.sqrt(s2 / a.length - (s / a.length) ** 2) };
  };
  const emb = stats(ps.get("model.embed_tokens.weight")); // 19200 samples: std within ~1.5%
  assert.ok(Math.abs(emb.std - 0.02) < 0.001 && Math.abs(emb.mean) < 0.001, JSON.stringify(emb));
  const down = stats(ps.get("model.layers.0.mlp.down_proj.weight"));
  assert.ok(Math.abs(down.std - 0.02 / Math.sqrt(4)) < 0.0005, JSON.stringify(down));
  const o = stats(ps.get("model.layers.1.self_attn.o_proj.weight"));
  assert.ok(Math.abs(o.std - 0.01) < 0.0005, JSON.stringify(o));
  assert.ok(ps.get("model.layers.1.post_attention_layernorm.weight").every((v) => v === 1));
  assert.ok(ps.grad.every((v) => v === 0));

  const again = new ParamSet(c, createJsBackend());
  again.init(5);
  assert.deepEqual(again.data, ps.data);
  again.init(6);
  assert.notDeepEqual(again.data, ps.data);
  // Per-tensor streams: an untied model's trunk inits exactly like the tied one's.
  const untied = new ParamSet({ ...c, tie_word_embeddings: false }, createJsBackend());
  untied.init(5);
  assert.deepEqual(
    untied.get("model.layers.1.mlp.up_proj.weight"),
    ps.get("model.layers.1.mlp.up_proj.weight"),
  );
  assert.notDeepEqual(untied.get("lm_head.weight"), untied.get("model.embed_tokens.weight"));
});

test("load: copies a state dict; refuses missing, misshapen and unknown tensors atomically", () => {
  const be = createJsBackend();
  const src = new ParamSet(small, be);
  src.init(1);
  const dst = new ParamSet(small, be);
  const map = new Map(src.entries().map((e) => [e.name, e]));
  dst.load(map);
  assert.deepEqual(dst.data, src.data);

  const before = Float32Array.from(dst.data);
  const fresh = (): Map<string, Float32Array> =>
    new Map(src.entries().map((e) => [e.name, Float32Array.from(e.data).fill(9)]));
  const missing = fresh();
  missing.delete("model.layers.1.mlp.down_proj.weight");
  assert.throws(() => dst.load(missing), { code: "TENSOR_NOT_FOUND" });
  const wrongLen = fresh();
  wrongLen.set("model.norm.weight", new Float32Array(15));
  assert.throws(() => dst.load(wrongLen), { code: "TENSOR_SIZE_MISMATCH" });
  const wrongShape = new Map(src.entries().map((e) => [e.name, e]));
  const q = wrongShape.get("model.layers.0.self_attn.k_proj.weight")!;
  wrongShape.set(q.name, { ...q, shape: [16, 8] });
  assert.throws(() => dst.load(wrongShape), { code: "TENSOR_SIZE_MISMATCH" });
  const extra = fresh();
  extra.set("model.layers.2.input_layernorm.weight", new Float32Array(16));
  assert.throws(() => dst.load(extra), { code: "CHECKPOINT_MISMATCH" });
  assert.deepEqual(dst.data, before, "a refused load leaves the parameters untouched");

  // Tied: an lm_head equal to the embedding is accepted, a different one is not.
  const withHead = fresh();
  withHead.set("lm_head.weight", withHead.get("model.embed_tokens.weight")!);
  dst.load(withHead);
  withHead.set("lm_head.weight", new Float32Array(50 * 16));
  assert.throws(() => dst.load(withHead), { code: "CHECKPOINT_MISMATCH" });
});

test("rng: xoshiro128** reference sequence, state save/restore, bounded ints", () => {
  // Hand-evaluated from the reference algorithm for state [1, 2, 3, 4].
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.equal(r.nextU32(), 11520);
  assert.equal(r.nextU32(), 0);
  assert.equal(r.nextU32(), 5927040);
  const a = new Rng(123);
  for (let i = 0; i < 10; i++) a.nextU32();
  const saved = a.state();
  const seq = Array.from({ length: 5 }, () => a.uniform());
  const b = Rng.fromState(saved);
  assert.deepEqual(
    Array.from({ length: 5 }, () => b.uniform()),
    seq,
  );
  assert.ok(seq.every((u) => u >= 0 && u < 1));
  const hist = new Array(7).fill(0);
  for (let i = 0; i < 7000; i++) hist[a.int(7)]++;
  assert.ok(
    hist.every((h) => h > 850 && h < 1150),
    hist.join(","),
  );
  assert.notEqual(new Rng(1).nextU32(), new Rng(2).nextU32());
  assert.throws(() => Rng.fromState([0, 0, 0, 0]));
});
