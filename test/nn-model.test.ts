// Whole model (dense and MoE; tied and untied; MHA and GQA) against the independent
// float64 reference forward in nn-ref64.ts: logits and loss parts agree, and the
// engine's analytic gradient of every parameter matches central finite differences of
// the reference loss (MoE: with the routing checked unchanged at every perturbation).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelConfig } from "../src/nn/config.js";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { IGNORE_INDEX } from "../src/nn/layers/cross-entropy.js";
import { createModel } from "../src/nn/model.js";
import type { Model } from "../src/nn/model.js";
import type { Params64 } from "./nn-ref64.js";
import { assertClose, fdGrad, lcg, model64, randn } from "./nn-ref64.js";

const B = 2,
  S = 5;
const tiny = (o: Partial<ModelConfig>): ModelConfig =>
  resolveConfig({
    vocab_size: 13,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    head_dim: 4,
    max_position_embeddings: 16,
    bos_token_id: 1,
    eos_token_id: 2,
    ...o,
  });

/** A model with random (not init-like) parameters, and the same values in float64. */
function setup(c: ModelConfig, seed: number): { model: Model; p64: Params64 } {
  const model = createModel(c, createJsBackend(), { batch: B, seq: S });
  const r = lcg(seed);
  const values = new Map<string, Float32Array>();
  for (const i of model.params.infos) {
    const n = i.size;
    if (i.shape.length === 1) values.set(i.name, randn(r, n, 0.2, 1));
    else if (i.name.endsWith("block_sparse_moe.gate.weight")) values.set(i.name, randn(r, n, 0.6));
    else values.set(i.name, randn(r, n, 0.4));
  }
  model.params.load(values);
  const p64: Params64 = new Map();
  for (const e of model.params.entries()) p64.set(e.name, Float64Array.from(e.data));
  return { model, p64 };
}

function data(seed: number, V: number): { tokens: Int32Array; targets: Int32Array; mask: Uint8Array } {
  const r = lcg(seed);
  const tokens = Int32Array.from({ length: B * S }, () => Math.floor(r() * V));
  const targets = Int32Array.from({ length: B * S }, () => Math.floor(r() * V));
  targets[3] = IGNORE_INDEX;
  const mask = Uint8Array.from({ length: B * S }, (_, t) => (t % 4 === 1 ? 0 : 1));
  return { tokens, targets, mask };
}

const variants: [string, Partial<ModelConfig>][] = [
  ["dense, tied, MHA", { tie_word_embeddings: true }],
  ["dense, untied, GQA (2 heads on 1 KV head)", { tie_word_embeddings: false, num_key_value_heads: 1 }],
  [
    "MoE E=4 top-2, tied, MHA",
    { tie_word_embeddings: true, num_local_experts: 4, num_experts_per_tok: 2, router_aux_loss_coef: 0.5 },
  ],
  [
    "MoE E=4 top-2, untied, GQA",
    {
      tie_word_embeddings: false,
      num_key_value_heads: 1,
      num_local_experts: 4,
      num_experts_per_tok: 2,
      router_aux_loss_coef: 0.5,
    },
  ],
];

variants.forEach(([name, o], vi) => {
  const c = tiny(o);
  const moe = c.num_local_experts > 0;

  test(`model forward matches float64 reference: ${name}`, () => {
    const { model, p64 } = setup(c, 100 + vi);
    const { tokens, targets, mask } = data(200 + vi, c.vocab_size);
    for (const m of [undefined, mask]) {
      const loss = model.forward(tokens, targets, m);
      const ref = model64(c, p64, tokens, targets, B, S, m);
      const parts = model.lastLoss;
      assert.ok(Math.abs(loss - ref.loss) < 1e-5 * (1 + ref.loss), `loss ${loss} vs ${ref.loss}`);
      assert.ok(Math.abs(parts.ce - ref.ce) < 1e-5 * (1 + ref.ce), `ce ${parts.ce} vs ${ref.ce}`);
      assert.ok(Math.abs(parts.aux - ref.aux) < 1e-6, `aux ${parts.aux} vs ${ref.aux}`);
      assert.equal(parts.loss, loss);
      // The instability monitors: attention and output logit magnitudes, log Z.
      const mon = model.lastLogitStats;
      assert.ok(Math.abs(mon.attnLogitMax - ref.attnLogitMax) < 1e-5 * (1 + Math.abs(ref.attnLogitMax)));
      assert.ok(
        Math.abs(mon.outputLogitMax - ref.outputLogitMax) < 1e-5 * (1 + Math.abs(ref.outputLogitMax)),
      );
      assert.ok(Math.abs(mon.outputLogZ - ref.outputLogZ) < 1e-5 * (1 + Math.abs(ref.outputLogZ)));
      if (moe) assert.ok(ref.aux > 0);
      else assert.equal(parts.aux, 0);
      const flat = new Float64Array(B * S * c.vocab_size);
      ref.logits.forEach((row, t) => flat.set(row, t * c.vocab_size));
      assertClose(model.logits, flat, "logits", 1e-5);
      assert.equal(
        parts.tokens,
        Array.from(targets).filter((y, t) => y !== IGNORE_INDEX && (m === undefined || m[t] !== 0)).length,
      );
      if (moe) {
        const counts = model.expertCounts();
        const want = new Int32Array(c.num_hidden_layers * c.num_local_experts);
        ref.chosen.forEach((layer, l) =>
          layer.forEach((ch) => ch.forEach((e) => want[l * c.num_local_experts + e]!++)),
        );
        assert.deepEqual([...counts], [...want]);
      }
    }
    // infer() computes the same logits without a loss.
    model.forward(tokens, targets);
    const a = Float32Array.from(model.logits);
    assert.deepEqual(model.infer(tokens), a);
  });

  test(`model gradient matches finite differences: ${name}`, () => {
    const { model, p64 } = setup(c, 300 + vi);
    const { tokens, targets, mask } = data(400 + vi, c.vocab_size);
    const base = model64(c, p64, tokens, targets, B, S, mask);
    if (moe) assert.ok(base.minGap > 1e-3, `test data needs clear routing margins (min gap ${base.minGap})`);
    model.zeroGrad();
    model.forward(tokens, targets, mask);
    model.backward();
    let flips = 0;
    const L = (): number => {
      const o = model64(c, p64, tokens, targets, B, S, mask);
      if (moe && JSON.stringify(o.chosen) !== JSON.stringify(base.chosen)) flips++;
      return o.loss;
    };
    for (const info of model.params.infos) {
      assertClose(
        model.params.gradOf(info.name),
        fdGrad(L, p64.get(info.name)!),
        `d ${info.name}`,
        5e-5,
        1e-6,
      );
    }
    assert.equal(flips, 0, "routing must not change under the finite-difference perturbations");
  });
});

test("backward accumulates over micro-batches and refuses a stale forward", () => {
  const c = tiny({});
  const { model } = setup(c, 7);
  const { tokens, targets } = data(8, c.vocab_size);
  model.zeroGrad();
  model.forward(tokens, targets);
  model.backward();
  const g1 = Float32Array.from(model.params.grad);
  assert.throws(() => model.backward(), { code: "USAGE" });
  model.forward(tokens, targets);
  model.backward();
  assertClose(
    model.params.grad,
    Array.from(g1, (v) => 2 * v),
    "accumulated",
    1e-6,
    0,
  );
  model.infer(tokens);
  assert.throws(() => model.backward(), { code: "USAGE" });
  assert.throws(() => model.forward(tokens.subarray(1), targets), { code: "USAGE" });
});

test("a batch with no scored target has loss 0 and zero cross-entropy gradient", () => {
  const c = tiny({});
  const { model } = setup(c, 9);
  const { tokens } = data(10, c.vocab_size);
  const loss = model.forward(tokens, new Int32Array(B * S).fill(IGNORE_INDEX));
  assert.equal(loss, 0);
  assert.equal(model.lastLoss.tokens, 0);
  model.zeroGrad();
  model.backward();
  assert.ok(model.params.grad.every((v) => v === 0));
});

test("models of different shapes share one parameter set", () => {
  const c = tiny({});
  const { model } = setup(c, 11);
  const one = createModel(c, model.backend, { batch: 1, seq: S }, { params: model.params });
  const { tokens } = data(12, c.vocab_size);
  model.infer(tokens);
  one.infer(tokens.subarray(S));
  // Batch rows are independent: row 1 of the batch-2 model equals the batch-1 model.
  assertClose(one.logits, model.logits.subarray(S * c.vocab_size), "batch row independence", 1e-6, 0);
  assert.throws(
    () =>
      createModel(tiny({ hidden_size: 12 }), model.backend, { batch: 1, seq: S }, { params: model.params }),
    { code: "CHECKPOINT_MISMATCH" },
  );
  assert.throws(() => createModel(c, model.backend, { batch: 1, seq: 17 }), { code: "USAGE" });
  // Same values, different key order: still the same config.
  const reordered = Object.fromEntries(Object.entries(c).reverse()) as unknown as ModelConfig;
  assert.doesNotThrow(() =>
    createModel(reordered, model.backend, { batch: 1, seq: 2 }, { params: model.params }),
  );
  assert.throws(() => createModel(c, createJsBackend(), { batch: 1, seq: S }, { params: model.params }), {
    code: "USAGE",
  });
});
