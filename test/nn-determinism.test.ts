// Same seed + same backend + same data => bit-identical parameters and optimizer state
// after several steps; and the engine actually learns (it overfits a fixed batch).
import assert from "node:assert/strict";
import { test } from "node:test";
import { AdamW } from "../src/nn/adamw.js";
import type { ModelConfig } from "../src/nn/config.js";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { createModel } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";
import { lrAt } from "../src/nn/schedule.js";

const B = 2,
  S = 8;
const base = {
  vocab_size: 17,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 8,
};

function train(
  c: ModelConfig,
  seed: number,
  steps: number,
): { params: Float32Array; m: Float32Array; v: Float32Array; losses: number[] } {
  const model = createModel(c, createJsBackend(), { batch: B, seq: S }, { seed });
  const opt = new AdamW(model.params);
  const data = new Rng(99);
  const losses: number[] = [];
  const schedule = {
    kind: "cosine" as const,
    lr: 3e-3,
    lrMin: 3e-4,
    warmupTokens: 2 * B * S,
    decayTokens: steps * B * S,
  };
  const tokens = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < B * S; i++) {
      tokens[i] = data.int(c.vocab_size);
      targets[i] = data.int(c.vocab_size);
    }
    model.zeroGrad();
    losses.push(model.forward(tokens, targets));
    model.backward();
    opt.step(lrAt(schedule, (s + 1) * B * S));
  }
  return {
    params: Float32Array.from(model.params.data),
    m: Float32Array.from(opt.m),
    v: Float32Array.from(opt.v),
    losses,
  };
}

for (const [name, c] of [
  ["dense", resolveConfig(base)],
  ["MoE", resolveConfig({ ...base, num_local_experts: 4 })],
] as const) {
  test(`${name}: same seed and backend give bit-identical training`, () => {
    const a = train(c, 5, 4);
    const b = train(c, 5, 4);
    assert.deepEqual(b.losses, a.losses);
    assert.deepEqual(b.params, a.params);
    assert.deepEqual(b.m, a.m);
    assert.deepEqual(b.v, a.v);
    const other = train(c, 6, 1);
    assert.notDeepEqual(other.params, a.params);
  });
}

test("the engine learns: loss on one repeated batch falls well below its start", () => {
  const c = resolveConfig({ ...base, num_local_experts: 4 });
  const model = createModel(c, createJsBackend(), { batch: B, seq: S }, { seed: 1 });
  const opt = new AdamW(model.params, { weightDecay: 0 });
  const r = new Rng(3);
  const tokens = Int32Array.from({ length: B * S }, () => r.int(c.vocab_size));
  const targets = Int32Array.from({ length: B * S }, () => r.int(c.vocab_size));
  const first = model.forward(tokens, targets);
  let last = first;
  for (let s = 0; s < 60; s++) {
    model.zeroGrad();
    last = model.forward(tokens, targets);
    model.backward();
    opt.step(1e-2);
  }
  assert.ok(
    Math.abs(first - Math.log(c.vocab_size)) < 0.2 + 2 * c.router_aux_loss_coef,
    `initial loss ${first} should be near ln(V)`,
  );
  assert.ok(last < 0.3 * first, `loss ${first} -> ${last}`);
  const counts = model.expertCounts();
  assert.equal(counts.length, c.num_hidden_layers * 4);
  assert.equal(
    counts.slice(0, 4).reduce((x, y) => x + y, 0),
    B * S * 2,
  );
});
