import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { createModel } from "../src/nn/model.js";
import { heldoutWindows } from "../src/data/heldout-windows.js";
import { HeldoutEvaluator } from "../src/train/heldout.js";
import { rng } from "./helpers/fixtures.js";

test("windows tile the stream without overlap; a budget takes evenly spaced ones", () => {
  // 1 + 10 * 8 tokens: exactly 10 windows of 8 inputs + 1 shifted target.
  const all = heldoutWindows(81, 8);
  assert.deepEqual([...all], [0, 8, 16, 24, 32, 40, 48, 56, 64, 72]);
  assert.equal(heldoutWindows(80, 8).length, 9);
  const some = heldoutWindows(81, 8, 40);
  assert.deepEqual([...some], [0, 16, 32, 48, 64]);
  assert.deepEqual([...heldoutWindows(81, 8, 1000)], [...all]);
  assert.deepEqual([...heldoutWindows(81, 8, 3)], [0]);
  assert.equal(heldoutWindows(8, 8).length, 0);
});

test("batched, padded held-out loss equals a float64 reference computed window by window", () => {
  const config = resolveConfig({
    vocab_size: 37,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 8,
    num_local_experts: 3,
  });
  const backend = createJsBackend();
  const r = rng(5);
  const stream = Uint16Array.from({ length: 8 * 7 + 1 }, () => Math.floor(r() * config.vocab_size));
  // Batch 3 over 7 windows: the last batch has two padding rows that must not count.
  const batched = createModel(config, backend, { batch: 3, seq: 8 }, { seed: 9 });
  const got = new HeldoutEvaluator(batched, stream).run();
  assert.equal(got.windows, 7);
  assert.equal(got.tokens, 56);

  const single = createModel(config, backend, { batch: 1, seq: 8 }, { params: batched.params });
  let sum = 0;
  for (const o of heldoutWindows(stream.length, 8)) {
    const logits = single.infer(Int32Array.from(stream.subarray(o, o + 8)));
    for (let t = 0; t < 8; t++) {
      const row = logits.subarray(t * 37, (t + 1) * 37);
      const max = Math.max(...row);
      let z = 0;
      for (const v of row) z += Math.exp(v - max);
      sum += max + Math.log(z) - row[stream[o + t + 1]!]!;
    }
  }
  const want = sum / 56;
  assert.ok(Math.abs(got.loss - want) < 1e-5 * want, `${got.loss} vs ${want}`);
  assert.ok(Math.abs(got.perplexity - Math.exp(want)) < 1e-4 * Math.exp(want));
  // Deterministic: a second run gives the same bits.
  assert.equal(new HeldoutEvaluator(batched, stream).run().loss, got.loss);
});
