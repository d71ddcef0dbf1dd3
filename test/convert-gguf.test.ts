// pma convert --to gguf without llama.cpp: the rotary permutation against both rope
// conventions computed independently in float64, the GGUF keys and their types, tensor
// names, shapes, bytes (stacked experts, f32 norms and router, tied head left out), the
// vocabulary round trip, error cases, and the CLI.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { isPmaError } from "../src/common/errors.js";
import { llamaGgufTensors, permuteRotaryRows } from "../src/convert/gguf-llama.js";
import { tokenizerFromGgufMetadata } from "../src/convert/gguf-vocab.js";
import { convertToGguf } from "../src/convert/to-gguf.js";
import { loadNodeLlamaCpp } from "../src/eval/node-llama-cpp.js";
import { GgufFile } from "../src/formats/gguf.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { resolveConfig, toHfConfig, type ModelConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/index.js";
import { paramLayout, ParamSet } from "../src/nn/params.js";
import { decodeFloats } from "../src/tensor/codec.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { saveTokenizer, tokenizerToJson } from "../src/data/tokenizer-json.js";
import { Tokenizer } from "../src/data/tokenizer.js";
import { encodeTensors, readWeights } from "../src/train/weights-io.js";
import { rng, tempDir } from "./helpers/fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const utf8 = new TextEncoder();

/** 256 byte tokens, "th" (256), "the" (257), <|endoftext|> (258). */
function tinyTokenizer(): Tokenizer {
  const tokens: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  tokens.push(utf8.encode("th"), utf8.encode("the"));
  const t = "t".charCodeAt(0);
  const h = "h".charCodeAt(0);
  const e = "e".charCodeAt(0);
  return new Tokenizer({
    tokens,
    merges: [
      [t, h, 256],
      [256, e, 257],
    ],
    specials: new Map([["<|endoftext|>", 258]]),
  });
}

/** A checkpoint folder with seeded random weights; vocab 264 leaves 5 padding rows. */
async function writeCheckpoint(
  dir: string,
  config: ModelConfig,
  dtype: FloatDType,
  extra: Record<string, unknown> = {},
): Promise<Map<string, Float32Array>> {
  await mkdir(dir, { recursive: true });
  const params = new ParamSet(config, createJsBackend());
  params.init(7);
  // Norm gains of all ones would hide a norm written in the wrong place.
  const r = rng(3);
  for (const t of params.entries())
    if (t.shape.length === 1) for (let i = 0; i < t.data.length; i++) t.data[i] = 0.5 + r();
  await writeSafetensors(join(dir, "model.safetensors"), encodeTensors(params.entries(), dtype));
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({ ...toHfConfig(config, dtype === "BF16" ? "bfloat16" : "float32"), ...extra }),
  );
  saveTokenizer(tinyTokenizer(), join(dir, "tokenizer.json"));
  // The values as stored (bf16 rounds), which a conversion in the stored type keeps exactly.
  const stored = await readWeights(dir);
  return new Map([...stored.tensors].map(([name, t]) => [name, t.data]));
}

const DENSE = resolveConfig({
  vocab_size: 264,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 6,
  max_position_embeddings: 32,
  tie_word_embeddings: false,
  bos_token_id: 258,
  eos_token_id: 258,
  rope_theta: 500,
});
const MOE = resolveConfig({
  vocab_size: 264,
  hidden_size: 16,
  intermediate_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  max_position_embeddings: 32,
  num_local_experts: 3,
  num_experts_per_tok: 2,
  bos_token_id: 258,
  eos_token_id: 258,
});

const DENSE_SHAPES = (c: ModelConfig) => new Map(paramLayout(c).map((p) => [p.name, p.shape]));

async function tensorValues(f: GgufFile, name: string): Promise<Float32Array> {
  const t = f.tensors.get(name);
  assert.ok(t !== undefined, `missing tensor ${name}`);
  const out = new Float32Array(t.elements);
  decodeFloats(await f.read(name), t.dtype as FloatDType, out);
  return out;
}

describe("rotary row permutation", () => {
  // Hugging Face rotates halves (i with i + d/2); llama.cpp's "llama" rope rotates
  // adjacent pairs (2i, 2i+1). Both use angle pos * theta^(-2i/d) for pair i.
  function ropeHalves(x: Float64Array, pos: number, theta: number): Float64Array {
    const d = x.length;
    const out = new Float64Array(d);
    for (let i = 0; i < d / 2; i++) {
      const a = pos * theta ** (-(2 * i) / d);
      out[i] = x[i]! * Math.cos(a) - x[i + d / 2]! * Math.sin(a);
      out[i + d / 2] = x[i + d / 2]! * Math.cos(a) + x[i]! * Math.sin(a);
    }
    return out;
  }
  function ropePairs(x: Float64Array, pos: number, theta: number): Float64Array {
    const d = x.length;
    const out = new Float64Array(d);
    for (let i = 0; i < d / 2; i++) {
      const a = pos * theta ** (-(2 * i) / d);
      out[2 * i] = x[2 * i]! * Math.cos(a) - x[2 * i + 1]! * Math.sin(a);
      out[2 * i + 1] = x[2 * i]! * Math.sin(a) + x[2 * i + 1]! * Math.cos(a);
    }
    return out;
  }
  /** Head h of W x for a [heads * hd, cols] matrix. */
  function headOf(w: Float64Array, x: Float64Array, h: number, hd: number): Float64Array {
    const cols = x.length;
    return Float64Array.from({ length: hd }, (_, r) => {
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[(h * hd + r) * cols + c]! * x[c]!;
      return s;
    });
  }
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

  test("attention scores of permuted q/k under llama.cpp's rope equal Hugging Face's", () => {
    const r = rng(11);
    const heads = 3;
    const hd = 8;
    const cols = 5;
    const random = (n: number) => Float64Array.from({ length: n }, () => r() * 2 - 1);
    const wq = random(heads * hd * cols);
    const wk = random(heads * hd * cols);
    const pq = permuteRotaryRows(wq, heads, hd, cols);
    const pk = permuteRotaryRows(wk, heads, hd, cols);
    let checked = 0;
    for (const [p1, p2] of [
      [0, 0],
      [3, 1],
      [17, 9],
      [31, 30],
    ] as const) {
      const x1 = random(cols);
      const x2 = random(cols);
      for (let h = 0; h < heads; h++) {
        const hf = dot(
          ropeHalves(headOf(wq, x1, h, hd), p1, 100),
          ropeHalves(headOf(wk, x2, h, hd), p2, 100),
        );
        const gg = dot(ropePairs(headOf(pq, x1, h, hd), p1, 100), ropePairs(headOf(pk, x2, h, hd), p2, 100));
        assert.ok(
          Math.abs(hf - gg) <= 1e-12 * Math.max(1, Math.abs(hf)),
          `head ${h} at (${p1}, ${p2}): ${hf} vs ${gg}`,
        );
        // Without the permutation the scores differ: the check above is not vacuous.
        const wrong = dot(
          ropePairs(headOf(wq, x1, h, hd), p1, 100),
          ropePairs(headOf(wk, x2, h, hd), p2, 100),
        );
        if (p1 !== p2 && Math.abs(wrong - hf) > 1e-6) checked++;
      }
    }
    assert.ok(checked > 0);
  });

  test("it is a permutation of whole rows within each head", () => {
    const src = Float32Array.from({ length: 2 * 6 * 3 }, (_, i) => i);
    const out = permuteRotaryRows(src, 2, 6, 3);
    const rowsOf = (a: Float32Array) => Array.from({ length: a.length / 3 }, (_, i) => a[i * 3]! / 3);
    // Head 0 rows [0..5] become [0, 3, 1, 4, 2, 5]; head 1 the same, offset by 6.
    assert.deepEqual(rowsOf(out), [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
    assert.deepEqual([...out.subarray(3, 6)], [9, 10, 11]);
  });
});

describe("pma convert --to gguf", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let dense: Map<string, Float32Array>;
  let moe: Map<string, Float32Array>;
  const dir = (n: string) => join(tmp.dir, n);

  before(async () => {
    tmp = await tempDir("pma-convert-");
    dense = await writeCheckpoint(dir("dense"), DENSE, "F32");
    moe = await writeCheckpoint(dir("moe"), MOE, "BF16");
  });
  after(() => tmp.cleanup());

  test("dense: llama keys typed as llama.cpp checks them, vocabulary padded, q/k permuted, untied head written", async () => {
    const r = await convertToGguf(dir("dense"), { out: dir("dense.gguf") });
    assert.equal(r.dtype, "F32");
    assert.equal(r.architecture, "LlamaForCausalLM");
    const f = await GgufFile.open(r.out);
    try {
      const md = f.metadata;
      const u32 = (k: string) => {
        const v = md.get(k);
        assert.equal(v?.type, "u32", `${k} must be u32`);
        return v.type === "u32" ? v.value : NaN;
      };
      const f32 = (k: string) => {
        const v = md.get(k);
        assert.equal(v?.type, "f32", `${k} must be f32`);
        return v.type === "f32" ? v.value : NaN;
      };
      assert.deepEqual(md.get("general.architecture"), { type: "string", value: "llama" });
      assert.equal(u32("llama.context_length"), 32);
      assert.equal(u32("llama.embedding_length"), 16);
      assert.equal(u32("llama.block_count"), 2);
      assert.equal(u32("llama.feed_forward_length"), 24);
      assert.equal(u32("llama.attention.head_count"), 4);
      assert.equal(u32("llama.attention.head_count_kv"), 2);
      // head_dim 6 is not hidden / heads (4): llama.cpp must be told.
      assert.equal(u32("llama.attention.key_length"), 6);
      assert.equal(u32("llama.rope.dimension_count"), 6);
      assert.equal(u32("llama.vocab_size"), 264);
      assert.equal(u32("general.file_type"), 0);
      assert.equal(f32("llama.rope.freq_base"), 500);
      assert.equal(f32("llama.attention.layer_norm_rms_epsilon"), Math.fround(1e-5));
      assert.equal(md.has("llama.expert_count"), false);

      const tokens = md.get("tokenizer.ggml.tokens");
      const types = md.get("tokenizer.ggml.token_type");
      assert.ok(tokens?.type === "array" && tokens.elementType === "string");
      assert.ok(types?.type === "array" && types.elementType === "i32");
      assert.equal(tokens.values.length, 264);
      assert.equal(tokens.values[32], "Ġ"); // byte 0x20 in the byte-level alphabet
      assert.deepEqual(tokens.values.slice(256, 260), ["th", "the", "<|endoftext|>", "[PAD259]"]);
      assert.deepEqual([...types.values.slice(255, 264)], [1, 1, 1, 3, 5, 5, 5, 5, 5]);
      assert.deepEqual(md.get("tokenizer.ggml.merges"), {
        type: "array",
        elementType: "string",
        values: ["t h", "th e"],
      });
      assert.deepEqual(md.get("tokenizer.ggml.model"), { type: "string", value: "gpt2" });
      assert.deepEqual(md.get("tokenizer.ggml.pre"), { type: "string", value: "gpt-2" });
      assert.equal(u32("tokenizer.ggml.bos_token_id"), 258);
      assert.deepEqual(md.get("tokenizer.ggml.add_bos_token"), { type: "bool", value: false });

      assert.deepEqual(
        [...f.tensors.keys()],
        llamaGgufTensors(DENSE).map((t) => t.name),
      );
      assert.ok(f.tensors.has("output.weight"));
      assert.deepEqual(f.tensors.get("blk.1.attn_k.weight")?.dims, [16, 12]); // ggml order: ne0 = in
      assert.deepEqual(await tensorValues(f, "token_embd.weight"), dense.get("model.embed_tokens.weight"));
      assert.deepEqual(await tensorValues(f, "output.weight"), dense.get("lm_head.weight"));
      assert.deepEqual(
        await tensorValues(f, "blk.1.ffn_norm.weight"),
        dense.get("model.layers.1.post_attention_layernorm.weight"),
      );
      assert.deepEqual(
        await tensorValues(f, "blk.0.ffn_down.weight"),
        dense.get("model.layers.0.mlp.down_proj.weight"),
      );
      assert.deepEqual(
        await tensorValues(f, "blk.0.attn_v.weight"),
        dense.get("model.layers.0.self_attn.v_proj.weight"),
      );
      assert.deepEqual(
        await tensorValues(f, "blk.0.attn_q.weight"),
        permuteRotaryRows(dense.get("model.layers.0.self_attn.q_proj.weight")!, 4, 6, 16),
      );
      assert.deepEqual(
        await tensorValues(f, "blk.1.attn_k.weight"),
        permuteRotaryRows(dense.get("model.layers.1.self_attn.k_proj.weight")!, 2, 6, 16),
      );
    } finally {
      await f.close();
    }
  });

  test("MoE (bf16, tied): experts stacked in expert order, router and norms in f32, no output.weight", async () => {
    const r = await convertToGguf(dir("moe"), { out: dir("moe.gguf") });
    assert.equal(r.dtype, "BF16");
    assert.equal(r.architecture, "MixtralForCausalLM");
    const f = await GgufFile.open(r.out);
    try {
      assert.deepEqual(f.metadata.get("llama.expert_count"), { type: "u32", value: 3 });
      assert.deepEqual(f.metadata.get("llama.expert_used_count"), { type: "u32", value: 2 });
      assert.deepEqual(f.metadata.get("general.file_type"), { type: "u32", value: 32 });
      assert.equal(f.tensors.has("output.weight"), false);
      const up = f.tensors.get("blk.1.ffn_up_exps.weight")!;
      assert.equal(up.typeName, "BF16");
      assert.deepEqual(up.dims, [16, 8, 3]);
      assert.deepEqual(f.tensors.get("blk.0.ffn_down_exps.weight")!.dims, [8, 16, 3]);
      assert.equal(f.tensors.get("blk.0.ffn_gate_inp.weight")!.typeName, "F32");
      assert.equal(f.tensors.get("blk.0.attn_norm.weight")!.typeName, "F32");
      const gate = await tensorValues(f, "blk.1.ffn_gate_exps.weight");
      const down = await tensorValues(f, "blk.1.ffn_down_exps.weight");
      for (let e = 0; e < 3; e++) {
        const p = `model.layers.1.block_sparse_moe.experts.${e}`;
        assert.deepEqual(gate.subarray(e * 128, (e + 1) * 128), moe.get(`${p}.w1.weight`), `expert ${e} w1`);
        assert.deepEqual(down.subarray(e * 128, (e + 1) * 128), moe.get(`${p}.w2.weight`), `expert ${e} w2`);
      }
      assert.deepEqual(
        await tensorValues(f, "blk.1.ffn_gate_inp.weight"),
        moe.get("model.layers.1.block_sparse_moe.gate.weight"),
      );
      assert.deepEqual(
        await tensorValues(f, "blk.0.attn_k.weight"),
        permuteRotaryRows(moe.get("model.layers.0.self_attn.k_proj.weight")!, 1, 8, 16),
      );
    } finally {
      await f.close();
    }
  });

  test("--dtype rounds the weight matrices once; the vocabulary read back encodes as the original", async () => {
    const r = await convertToGguf(dir("dense"), { out: dir("dense-f16.gguf"), dtype: "F16" });
    const f = await GgufFile.open(r.out);
    try {
      assert.equal(f.tensors.get("blk.0.ffn_up.weight")!.typeName, "F16");
      assert.equal(f.tensors.get("output_norm.weight")!.typeName, "F32");
      const got = await tensorValues(f, "blk.0.ffn_up.weight");
      const want = dense.get("model.layers.0.mlp.up_proj.weight")!;
      for (let i = 0; i < want.length; i++)
        assert.ok(
          Math.abs(got[i]! - want[i]!) <= Math.max(Math.abs(want[i]!) * 2 ** -11, 2 ** -25),
          `element ${i}`,
        );
      const tok = tokenizerFromGgufMetadata(f.metadata, r.out);
      const text = "the theatre: <|endoftext|> then\n\u00e9t\u00e9";
      assert.deepEqual(tok.encode(text), tinyTokenizer().encode(text));
      assert.equal(tok.vocabSize, 264);
    } finally {
      await f.close();
    }
  });

  test("a Hugging Face folder (sharded, GPT-2 form tokenizer.json, no head_dim, inv_freq buffers) gives the same GGUF as pma's", async () => {
    const config = resolveConfig({ ...DENSE, head_dim: 4 });
    const values = await writeCheckpoint(dir("pma-form"), config, "F32");
    const hf = dir("hf-form");
    await mkdir(hf, { recursive: true });
    const all = encodeTensors(
      [...values].map(([name, data]) => ({ name, shape: DENSE_SHAPES(config).get(name)!, data })),
      "F32",
    );
    const buffers = [0, 1].map((l) => ({
      name: `model.layers.${l}.self_attn.rotary_emb.inv_freq`,
      dtype: "F32" as const,
      shape: [2],
      data: new Uint8Array(8),
    }));
    const shards = [all.slice(0, 9), [...all.slice(9), ...buffers]];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(hf, file), part);
      for (const t of part) weightMap[t.name] = file;
    }
    writeFileSync(
      join(hf, "model.safetensors.index.json"),
      JSON.stringify({
        metadata: { total_size: shards.flat().reduce((n, t) => n + t.data.length, 0) },
        weight_map: weightMap,
      }),
    );
    const { head_dim: _omitted, ...hfConfig } = toHfConfig(config);
    writeFileSync(join(hf, "config.json"), JSON.stringify(hfConfig));
    const tokenizer = tokenizerToJson(tinyTokenizer());
    tokenizer["pre_tokenizer"] = {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    };
    writeFileSync(join(hf, "tokenizer.json"), JSON.stringify(tokenizer));

    const a = await GgufFile.open(
      (await convertToGguf(dir("pma-form"), { out: dir("pma-form.gguf"), name: "m" })).out,
    );
    const b = await GgufFile.open((await convertToGguf(hf, { out: dir("hf-form.gguf"), name: "m" })).out);
    try {
      assert.deepEqual(b.metadata, a.metadata);
      assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()]);
      for (const name of a.tensors.keys()) assert.deepEqual(await b.read(name), await a.read(name), name);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("refuses what llama.cpp's llama architecture would get wrong, and existing outputs", async () => {
    await writeCheckpoint(dir("scaled"), DENSE, "F32", { rope_scaling: { rope_type: "linear", factor: 2 } });
    await assert.rejects(
      convertToGguf(dir("scaled"), { out: dir("x.gguf") }),
      (e) => isPmaError(e, "FORMAT_UNSUPPORTED") && /rope_scaling/.test(e.message),
    );
    await writeCheckpoint(dir("moe-as-dense"), MOE, "F32", {
      model_type: "llama",
      architectures: ["LlamaForCausalLM"],
    });
    await assert.rejects(
      convertToGguf(dir("moe-as-dense"), { out: dir("x.gguf") }),
      (e) => isPmaError(e, "TENSOR_NOT_FOUND") && /mlp\.gate_proj/.test(e.message),
    );
    await assert.rejects(convertToGguf(dir("dense"), { out: dir("dense.gguf") }), (e) =>
      isPmaError(e, "EXISTS"),
    );
    await convertToGguf(dir("dense"), { out: dir("dense.gguf"), force: true });
  });

  test("CLI: --json result, default output name, usage errors", () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [PMA, "convert", ...args], { encoding: "utf8" });
    const ok = run(dir("moe"), "--to", "gguf", "--dtype", "f32", "--json");
    assert.equal(ok.status, 0, ok.stderr);
    const r = JSON.parse(ok.stdout) as { out: string; dtype: string; tensors: number; parameters: number };
    assert.equal(r.out, `${dir("moe")}-F32.gguf`);
    assert.equal(r.dtype, "F32");
    assert.equal(r.tensors, 1 + 2 * 10 + 1);
    assert.equal(r.parameters, new ParamSet(MOE, createJsBackend()).numel);
    const again = run(dir("moe"), "--dtype", "f32");
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists; .*--force/);
    assert.equal(run(dir("moe"), "--to", "onnx").status, 2);
    assert.equal(run(dir("moe"), "--dtype", "q4").status, 2);
    const missing = run(dir("nope"));
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /not a checkpoint folder/);
  });
});

test("a missing node-llama-cpp is an error that says how to install it", async () => {
  await assert.rejects(
    loadNodeLlamaCpp("pma-test-no-such-package"),
    (e) =>
      isPmaError(e, "BACKEND_UNAVAILABLE") &&
      /npm i -E node-llama-cpp@3\.21\.1/.test(e.message) &&
      /--engine pma/.test(e.message),
  );
});
