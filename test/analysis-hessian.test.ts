// Hessian cross terms: the quadratic bookkeeping against a quadratic computed directly,
// and the finite-difference Hessian-vector products of a real (tiny) model against an
// independent second difference of the loss itself.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { crossTerms, lossAt, quadraticCheck } from "../src/analysis/hessian.js";
import { combine, sub } from "../src/analysis/vectors.js";
import { resolveConfig } from "../src/nn/config.js";
import type { Batch } from "../src/nn/grad.js";
import { createWasmBackend, type MatmulBackend } from "../src/nn/kernels/index.js";
import { createModel, type Model } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";

function normal(r: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - r.uniform())) * Math.cos(2 * Math.PI * r.uniform());
}

test("quadraticCheck: predicted gain equals L(mean) - mean L(theta_i) for an exact quadratic, and (15) holds iff it is negative", () => {
  const rng = new Rng(11);
  for (let trial = 0; trial < 20; trial++) {
    const n = 4;
    const k = 3 + (trial % 3);
    // H = A'A + c I (positive definite), or with a negative eigenvalue for some trials.
    const a = Array.from({ length: n }, () => Array.from({ length: n }, () => normal(rng)));
    const shift = trial % 4 === 0 ? -3 : 0.1;
    const H = a.map((_, i) =>
      a.map((_, j) => a.reduce((s, row) => s + row[i]! * row[j]!, 0) + (i === j ? shift : 0)),
    );
    const quad = (x: number[]) =>
      0.5 * x.reduce((s, xi, i) => s + xi * x.reduce((t, xj, j) => t + H[i]![j]! * xj, 0), 0);
    const deltas = Array.from({ length: k }, () => Array.from({ length: n }, () => normal(rng)));
    const m = deltas.map((di) =>
      deltas.map((dj) => di.reduce((s, x, p) => s + x * dj.reduce((t, y, q) => t + H[p]![q]! * y, 0), 0)),
    );
    const avg = Array.from({ length: n }, (_, p) => deltas.reduce((s, d) => s + d[p]!, 0) / k);
    const direct = quad(avg) - deltas.reduce((s, d) => s + quad(d), 0) / k;
    const c = quadraticCheck(m);
    assert.ok(
      Math.abs(c.predictedGain - direct) < 1e-9 * (1 + Math.abs(direct)),
      `${c.predictedGain} vs ${direct}`,
    );
    assert.equal(c.holds, direct < 0);
  }
});

test("quadraticCheck counts negative off-diagonal entries", () => {
  const c = quadraticCheck([
    [2, -1, 0.5],
    [-1, 3, -0.25],
    [0.5, -0.25, 1],
  ]);
  assert.equal(c.negativeShare, 4 / 6);
  assert.equal(c.offDiagonalSum, 2 * (-1 + 0.5 - 0.25));
  assert.equal(c.bound, 2 * 6);
});

let backend: MatmulBackend;
let model: Model;
let batches: Batch[];
const config = resolveConfig({
  vocab_size: 61,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  max_position_embeddings: 12,
  bos_token_id: 0,
  eos_token_id: 0,
});

before(async () => {
  backend = await createWasmBackend({ threads: 1 });
  model = createModel(config, backend, { batch: 2, seq: 12 }, { seed: 5 });
  const rng = new Rng(3);
  batches = Array.from({ length: 2 }, () => {
    const tokens = Int32Array.from({ length: 24 }, () => Math.floor(rng.uniform() * 61));
    const targets = Int32Array.from({ length: 24 }, () => Math.floor(rng.uniform() * 61));
    return { tokens, targets };
  });
});
after(() => backend.dispose());

test("crossTerms on a real model: symmetric, and the diagonal matches a second difference of the loss", async () => {
  const center = Float32Array.from(model.params.data);
  const rng = new Rng(9);
  const points = Array.from({ length: 3 }, () => Float32Array.from(center, (x) => x + 0.005 * normal(rng)));
  const t = await crossTerms(model, batches, center, points, { h: 0.05 });
  assert.ok(t.asymmetry < 0.05, `asymmetry ${t.asymmetry}`);
  for (let i = 0; i < 3; i++) {
    // delta'H delta ~ (L(c + e d) - 2 L(c) + L(c - e d)) / e^2, computed in float64 from forward passes only.
    const d = sub(points[i]!, center);
    const e = 0.5;
    const lp = lossAt(model, combine([center, d], [1, e]), batches);
    const lm = lossAt(model, combine([center, d], [1, -e]), batches);
    const l0 = lossAt(model, center, batches);
    const second = (lp - 2 * l0 + lm) / (e * e);
    const got = t.matrix[i]![i]!;
    assert.ok(Math.abs(got - second) <= 0.1 * Math.abs(second), `diagonal ${i}: ${got} vs ${second}`);
  }
  // Two step sizes agree: the O(h^2) error is small at h = 0.05.
  const t2 = await crossTerms(model, batches, center, points, { h: 0.1 });
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 3; j++)
      assert.ok(Math.abs(t.matrix[i]![j]! - t2.matrix[i]![j]!) <= 0.05 * Math.abs(t.matrix[i]![i]!) + 1e-5);
});

test("with theta* = the mean of the points, the off-diagonal terms sum to minus the diagonal", async () => {
  const rng = new Rng(21);
  const base = Float32Array.from(model.params.data);
  const points = Array.from({ length: 4 }, () => Float32Array.from(base, (x) => x + 0.03 * normal(rng)));
  const mean = combine(points, [0.25, 0.25, 0.25, 0.25]);
  const c = quadraticCheck((await crossTerms(model, batches, mean, points)).matrix);
  const diag = c.bound / 3;
  assert.ok(Math.abs(c.offDiagonalSum + diag) <= 1e-3 * Math.abs(diag), `${c.offDiagonalSum} vs ${-diag}`);
});
