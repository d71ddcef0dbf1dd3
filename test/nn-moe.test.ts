// Mixtral MoE block against the float64 reference: routing (softmax, top-k,
// renormalised weights), per-expert counts, forward values, and backward through the
// experts, the routing weights, the router and the aux-loss term, against central
// finite differences taken with perturbations that provably keep the routing fixed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { MoeBlock, MoeScratch } from "../src/nn/layers/moe.js";
import type { Expert64 } from "./nn-ref64.js";
import { assertClose, fdGrad, lcg, moe64, randn } from "./nn-ref64.js";

test("MoE block: routing, counts, forward and backward (E=4, top-2)", () => {
  const be = createJsBackend();
  const r = lcg(21);
  const T = 12,
    H = 6,
    I = 5,
    E = 4,
    k = 2;
  const xn = randn(r, T * H);
  const wr = randn(r, E * H, 1.0); // a strong router: clear top-k margins
  const w13 = Array.from({ length: E }, () => randn(r, 2 * I * H, 0.5));
  const w2 = Array.from({ length: E }, () => randn(r, H * I, 0.5));
  const scratch = new MoeScratch(be, { tokens: T, hidden: H, intermediate: I, experts: E, topK: k });
  const moe = new MoeBlock(be, { tokens: T, hidden: H, intermediate: I, experts: E, topK: k }, scratch);
  const out = new Float32Array(T * H);
  moe.forward(out, xn, wr, w13, w2, false);

  const x64 = Float64Array.from(xn);
  const wr64 = Float64Array.from(wr);
  const w13_64 = w13.map((w) => Float64Array.from(w));
  const w2_64 = w2.map((w) => Float64Array.from(w));
  const aux = Float64Array.from([0.3, -0.2, 0.5, 0.1]); // d loss / d p[t, e] from an aux term
  const run = () => {
    const experts: Expert64[] = w13_64.map((w, e) => ({
      w1: w.subarray(0, I * H),
      w3: w.subarray(I * H),
      w2: w2_64[e]!,
    }));
    const rows = Array.from({ length: T }, (_, t) => x64.subarray(t * H, t * H + H));
    return moe64(rows, wr64, experts, H, I, k);
  };
  const base = run();
  assert.ok(base.minGap > 1e-3, `test data must have clear top-k margins (min gap ${base.minGap})`);

  // Routing and counts match the reference.
  const counts = new Int32Array(E);
  base.chosen.forEach((ch, t) => {
    assert.deepEqual([...moe.topIdx.subarray(t * k, t * k + k)], ch, `token ${t} experts`);
    const s = ch.reduce((a, e) => a + base.probs[t]![e]!, 0);
    ch.forEach((e, j) => assert.ok(Math.abs(moe.topW[t * k + j]! - base.probs[t]![e]! / s) < 1e-6));
    for (const e of ch) counts[e]!++;
  });
  assert.deepEqual([...moe.counts], [...counts]);
  assert.equal(
    counts.reduce((a, b) => a + b, 0),
    T * k,
  );
  assert.ok(counts.filter((c) => c > 0).length >= 3, "data should exercise several experts");
  for (let e = 0; e < E; e++) {
    const ps = base.probs.reduce((a, p) => a + p[e]!, 0);
    assert.ok(Math.abs(moe.probSum[e]! - ps) < 1e-5);
  }
  const flat = (rows: Float64Array[]): Float64Array => {
    const f = new Float64Array(T * H);
    rows.forEach((row, t) => f.set(row, t * H));
    return f;
  };
  assertClose(out, flat(base.out), "forward", 2e-6);

  // Backward of L = sum(dout * out) + sum_{t,e} aux[e] * p[t, e].
  const dout = randn(r, T * H);
  const dxn = new Float32Array(T * H).fill(NaN);
  const dwr = new Float32Array(E * H);
  const dw13 = w13.map((w) => new Float32Array(w.length));
  const dw2 = w2.map((w) => new Float32Array(w.length));
  moe.backward(dxn, dwr, dw13, dw2, dout, xn, wr, w13, w2, aux);
  let flips = 0;
  const L = (): number => {
    const o = run();
    if (JSON.stringify(o.chosen) !== JSON.stringify(base.chosen)) flips++;
    let s = 0;
    o.out.forEach((row, t) => row.forEach((v, i) => (s += dout[t * H + i]! * v)));
    o.probs.forEach((p) => p.forEach((v, e) => (s += aux[e]! * v)));
    return s;
  };
  assertClose(dxn, fdGrad(L, x64), "dxn", 2e-5);
  assertClose(dwr, fdGrad(L, wr64), "d router", 2e-5);
  for (let e = 0; e < E; e++) {
    assertClose(dw13[e]!, fdGrad(L, w13_64[e]!), `d experts.${e}.w1|w3`, 2e-5);
    assertClose(dw2[e]!, fdGrad(L, w2_64[e]!), `d experts.${e}.w2`, 2e-5);
  }
  assert.equal(flips, 0, "no finite-difference perturbation may change the routing");
});

test("MoE block: an expert with no tokens gets zero gradient; accumulate mode adds", () => {
  const be = createJsBackend();
  const r = lcg(22);
  const T = 4,
    H = 3,
    I = 2,
    E = 3,
    k = 1;
  const xn = randn(r, T * H);
  // Router row 2 is strongly negative: expert 2 never wins.
  const wr = Float32Array.from([1, 0, 0, 0, 1, 0, -50, -50, -50]);
  for (let t = 0; t < T; t++) for (let i = 0; i < H; i++) xn[t * H + i] = Math.abs(xn[t * H + i]!);
  const w13 = Array.from({ length: E }, () => randn(r, 2 * I * H));
  const w2 = Array.from({ length: E }, () => randn(r, H * I));
  const dims = { tokens: T, hidden: H, intermediate: I, experts: E, topK: k };
  const moe = new MoeBlock(be, dims, new MoeScratch(be, dims));
  const a = new Float32Array(T * H);
  moe.forward(a, xn, wr, w13, w2, false);
  assert.equal(moe.counts[2], 0);
  const b = new Float32Array(T * H).fill(2);
  moe.forward(b, xn, wr, w13, w2, true);
  assertClose(
    b,
    Array.from(a, (v) => v + 2),
    "accumulate",
    1e-7,
  );
  // top-1 renormalisation makes every weight exactly 1.
  assert.deepEqual([...moe.topW], [1, 1, 1, 1]);
  const dw13 = w13.map((w) => new Float32Array(w.length));
  const dw2 = w2.map((w) => new Float32Array(w.length));
  moe.backward(
    new Float32Array(T * H),
    new Float32Array(E * H),
    dw13,
    dw2,
    randn(r, T * H),
    xn,
    wr,
    w13,
    w2,
    null,
  );
  assert.ok(dw13[2]!.every((v) => v === 0) && dw2[2]!.every((v) => v === 0));
  assert.ok(dw13[0]!.some((v) => v !== 0) || dw13[1]!.some((v) => v !== 0));
});
