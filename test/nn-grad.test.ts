// lossAndGradient: the gradient of the mean loss over several batches, checked against
// a central difference of the float64 reference loss along a random direction, and
// against per-batch gradients; it is a pure function of (params, batches).
import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveConfig } from "../src/nn/config.js";
import { lossAndGradient } from "../src/nn/grad.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { createModel } from "../src/nn/model.js";
import type { Params64 } from "./nn-ref64.js";
import { assertClose, lcg, model64, randn } from "./nn-ref64.js";

const B = 2,
  S = 4;
const c = resolveConfig({
  vocab_size: 13,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  max_position_embeddings: 8,
  num_local_experts: 4,
  router_aux_loss_coef: 0.1,
});

function batch(seed: number) {
  const r = lcg(seed);
  const tokens = Int32Array.from({ length: B * S }, () => Math.floor(r() * 13));
  const targets = Int32Array.from({ length: B * S }, () => Math.floor(r() * 13));
  return { tokens, targets };
}

test("lossAndGradient = gradient of the mean loss over batches (directional finite difference)", () => {
  const model = createModel(c, createJsBackend(), { batch: B, seq: S }, { seed: 3 });
  const params = Float32Array.from(model.params.data);
  // Larger-than-init weights so the loss is not flat in every direction.
  const noise = randn(lcg(1), params.length, 0.3);
  for (let i = 0; i < params.length; i++) params[i] = params[i]! + noise[i]!;
  const batches = [batch(10), batch(11)];
  const res = lossAndGradient(model, params, batches);

  const names = model.params.infos;
  const routes: string[] = [];
  const meanLoss = (p: Float64Array): number => {
    const p64: Params64 = new Map(names.map((i) => [i.name, p.subarray(i.offset, i.offset + i.size)]));
    const outs = batches.map((b) => model64(c, p64, b.tokens, b.targets, B, S));
    routes.push(JSON.stringify(outs.map((o) => o.chosen)));
    return outs.reduce((a, o) => a + o.loss, 0) / batches.length;
  };
  const p0 = Float64Array.from(params);
  assert.ok(Math.abs(res.loss - meanLoss(p0)) < 1e-5);
  const dir = randn(lcg(2), params.length);
  const h = 1e-6;
  const fd =
    (meanLoss(p0.map((v, i) => v + h * dir[i]!)) - meanLoss(p0.map((v, i) => v - h * dir[i]!))) / (2 * h);
  let dot = 0;
  for (let i = 0; i < dir.length; i++) dot += res.grad[i]! * dir[i]!;
  assert.ok(
    routes.every((x) => x === routes[0]),
    "the perturbation must not change the routing",
  );
  assert.ok(Math.abs(dot - fd) < 1e-4 * Math.abs(fd) + 1e-6, `directional derivative ${dot} vs ${fd}`);

  // Mean of per-batch gradients, computed separately.
  const g0 = lossAndGradient(model, params, [batches[0]!]);
  const g1 = lossAndGradient(model, params, [batches[1]!]);
  assertClose(
    res.grad,
    g0.grad.map((v, i) => (v + g1.grad[i]!) / 2),
    "mean of per-batch gradients",
    1e-6,
    0,
  );
  assert.ok(Math.abs(res.loss - (g0.loss + g1.loss) / 2) < 1e-6);
  assert.ok(res.ce < res.loss); // the aux part is included in loss, not in ce

  // Pure in (params, batches): a call elsewhere in between does not change the result,
  // and the model is left at the given parameters.
  lossAndGradient(model, Float32Array.from(model.params.data).fill(0.01), batches);
  const again = lossAndGradient(model, params, batches, new Float32Array(params.length));
  assert.deepEqual(again.grad, res.grad);
  assert.deepEqual(model.params.data, params);
  assert.throws(() => lossAndGradient(model, params.subarray(1), batches), { code: "TENSOR_SIZE_MISMATCH" });
  assert.throws(() => lossAndGradient(model, params, []), { code: "USAGE" });
});
