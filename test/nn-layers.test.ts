// Elementwise layers and linear: float32 engine forward vs float64 reference, and
// engine backward vs central finite differences of the float64 reference applied to
// the scalar L = sum(dy * f(inputs)) with a random upstream gradient dy.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { crossEntropyBackward, crossEntropyForward, IGNORE_INDEX } from "../src/nn/layers/cross-entropy.js";
import { embeddingBackward, embeddingForward } from "../src/nn/layers/embedding.js";
import { exp } from "../src/nn/layers/exp.js";
import { linearBackward, linearForward } from "../src/nn/layers/linear.js";
import { rmsnormBackward, rmsnormForward } from "../src/nn/layers/rmsnorm.js";
import { ropeBackward, ropeForward, ropeTables } from "../src/nn/layers/rope.js";
import { causalSoftmaxBackward, causalSoftmaxForward } from "../src/nn/layers/softmax.js";
import { swigluBackward, swigluForward } from "../src/nn/layers/swiglu.js";
import { assertClose, fdGrad, lcg, matvec, rmsnorm64, rope64 } from "./nn-ref64.js";
import { randn } from "./nn-ref64.js";

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

test("linear: y = x W^T, dW += dy^T x, dx = dy W", () => {
  const be = createJsBackend();
  const r = lcg(1);
  const T = 5,
    inF = 7,
    outF = 6;
  const x = randn(r, T * inF);
  const w = randn(r, outF * inF);
  const dy = randn(r, T * outF);
  const y = new Float32Array(T * outF);
  linearForward(be, y, x, w, T, inF, outF);
  const x64 = Float64Array.from(x);
  const w64 = Float64Array.from(w);
  const ref = (): Float64Array => {
    const out = new Float64Array(T * outF);
    for (let t = 0; t < T; t++)
      out.set(matvec(w64, x64.subarray(t * inF, t * inF + inF), inF, outF), t * outF);
    return out;
  };
  assertClose(y, ref(), "linear forward", 1e-6);
  const dx = new Float32Array(T * inF).fill(NaN); // overwritten, old contents ignored
  const dw = new Float32Array(outF * inF).fill(0.5); // accumulated onto
  linearBackward(be, dx, dw, dy, x, w, T, inF, outF);
  const L = (): number => dot(dy, ref());
  assertClose(dx, fdGrad(L, x64), "linear dx", 1e-6);
  assertClose(
    dw,
    fdGrad(L, w64).map((g) => g + 0.5),
    "linear dW (accumulated)",
    1e-6,
  );
  // accumulateDx adds onto dx: a residual connection folded into the GEMM.
  const dx2 = Float32Array.from(dx);
  linearBackward(be, dx2, new Float32Array(outF * inF), dy, x, w, T, inF, outF, true);
  assertClose(
    dx2,
    Array.from(dx, (v) => 2 * v),
    "linear dx accumulate",
    1e-6,
  );
});

test("embedding: row gather and scatter-add with repeated tokens; bad ids refused", () => {
  const V = 5,
    H = 3;
  const wte = Float32Array.from({ length: V * H }, (_, i) => i);
  const tokens = Int32Array.from([4, 0, 4, 2]);
  const out = new Float32Array(tokens.length * H);
  embeddingForward(out, tokens, wte, H, V);
  assert.deepEqual(Array.from(out), [12, 13, 14, 0, 1, 2, 12, 13, 14, 6, 7, 8]);
  const dout = Float32Array.from({ length: 12 }, (_, i) => i + 1);
  const dw = new Float32Array(V * H);
  embeddingBackward(dw, dout, tokens, H);
  // token 4 appears at positions 0 and 2: rows (1,2,3) + (7,8,9).
  assert.deepEqual(Array.from(dw), [4, 5, 6, 0, 0, 0, 10, 11, 12, 0, 0, 0, 8, 10, 12]);
  assert.throws(() => embeddingForward(out, Int32Array.from([0, 5, 0, 0]), wte, H, V), {
    code: "RANGE_INVALID",
  });
});

test("rmsnorm: HF formula forward; dx, dw match finite differences", () => {
  const r = lcg(2);
  const T = 4,
    H = 6,
    eps = 1e-5;
  const x = randn(r, T * H, 2);
  const w = randn(r, H, 0.3, 1);
  const dy = randn(r, T * H);
  const y = new Float32Array(T * H);
  const rstd = new Float32Array(T);
  rmsnormForward(y, rstd, x, w, T, H, eps);
  const x64 = Float64Array.from(x);
  const w64 = Float64Array.from(w);
  const ref = (): Float64Array => {
    const out = new Float64Array(T * H);
    for (let t = 0; t < T; t++) out.set(rmsnorm64(x64.subarray(t * H, t * H + H), w64, eps), t * H);
    return out;
  };
  assertClose(y, ref(), "rmsnorm forward", 1e-6);
  const dx = new Float32Array(T * H).fill(0.25); // dx accumulates (residual stream)
  const dw = new Float32Array(H);
  rmsnormBackward(dx, dw, dy, x, w, rstd, T, H);
  const L = (): number => dot(dy, ref());
  assertClose(
    dx,
    fdGrad(L, x64).map((g) => g + 0.25),
    "rmsnorm dx",
    1e-5,
  );
  assertClose(dw, fdGrad(L, w64), "rmsnorm dw", 1e-5);
});

test("rope: half-split rotation as HF rotate_half; backward is the transpose", () => {
  const r = lcg(3);
  const hd = 8,
    maxPos = 40,
    theta = 10000;
  const tab = ropeTables(maxPos, hd, theta);
  for (const pos of [0, 1, 7, 39]) {
    const v = randn(r, hd);
    const out = new Float32Array(hd);
    ropeForward(out, 0, v, 0, tab, pos);
    const v64 = Float64Array.from(v);
    assertClose(out, rope64(v64, pos, theta), `rope forward pos ${pos}`, 2e-6);
    const dy = randn(r, hd);
    const dx = new Float32Array(hd);
    ropeBackward(dx, 0, dy, 0, tab, pos);
    assertClose(
      dx,
      fdGrad(() => dot(dy, rope64(v64, pos, theta)), v64),
      `rope backward pos ${pos}`,
      2e-6,
    );
  }
  // Position 0 is the identity; the rotation preserves norms.
  const v = randn(r, hd);
  const o = new Float32Array(hd);
  ropeForward(o, 0, v, 0, tab, 0);
  assert.deepEqual(Array.from(o), Array.from(v));
  ropeForward(o, 0, v, 0, tab, 33);
  assert.ok(Math.abs(Math.hypot(...o) - Math.hypot(...v)) < 1e-5);
});

test("causal softmax: masked rows sum to 1, backward matches finite differences", () => {
  const r = lcg(4);
  const S = 5,
    R = 2 * S; // two heads stacked: row r is query position r % S
  const scores = randn(r, R * S, 2);
  const att = Float32Array.from(scores);
  const largest = causalSoftmaxForward(att, R, S);
  const s64 = Float64Array.from(scores);
  // The returned monitor is the largest unmasked score (keys up to the query position).
  let want = -Infinity;
  for (let row = 0; row < R; row++)
    for (let j = 0; j <= row % S; j++) want = Math.max(want, s64[row * S + j]!);
  assert.equal(largest, want);
  const ref = (): Float64Array => {
    const out = new Float64Array(R * S);
    for (let row = 0; row < R; row++) {
      const n = (row % S) + 1;
      const xs = Array.from(s64.subarray(row * S, row * S + n));
      const m = Math.max(...xs);
      const z = xs.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let j = 0; j < n; j++) out[row * S + j] = Math.exp(xs[j]! - m) / z;
    }
    return out;
  };
  assertClose(att, ref(), "softmax forward", 1e-6);
  for (let row = 0; row < R; row++) for (let j = (row % S) + 1; j < S; j++) assert.equal(att[row * S + j], 0);
  const dy = randn(r, R * S);
  const d = Float32Array.from(dy);
  causalSoftmaxBackward(d, att, R, S);
  assertClose(
    d,
    fdGrad(() => dot(dy, ref()), s64),
    "softmax backward",
    1e-5,
  );
});

test("swiglu: silu(gate) * up forward and backward", () => {
  const r = lcg(5);
  const rows = 3,
    I = 5;
  const gu = randn(r, rows * 2 * I, 3);
  const h = new Float32Array(rows * I);
  const sig = new Float32Array(rows * I);
  swigluForward(h, sig, gu, rows, I);
  const g64 = Float64Array.from(gu);
  const ref = (): Float64Array => {
    const out = new Float64Array(rows * I);
    for (let q = 0; q < rows; q++) {
      for (let i = 0; i < I; i++) {
        const g = g64[q * 2 * I + i]!;
        out[q * I + i] = (g / (1 + Math.exp(-g))) * g64[q * 2 * I + I + i]!;
      }
    }
    return out;
  };
  assertClose(h, ref(), "swiglu forward", 1e-6);
  const dh = randn(r, rows * I);
  const dgu = new Float32Array(rows * 2 * I);
  swigluBackward(dgu, dh, gu, sig, rows, I);
  assertClose(
    dgu,
    fdGrad(() => dot(dh, ref()), g64),
    "swiglu backward",
    1e-5,
  );
});

test("cross-entropy: mean over counted targets; ignore index and mask; gradient", () => {
  const r = lcg(6);
  const T = 6,
    V = 7;
  const logits = randn(r, T * V, 2);
  const targets = Int32Array.from([3, IGNORE_INDEX, 0, 6, 2, 5]);
  const mask = Uint8Array.from([1, 1, 1, 0, 1, 1]);
  const lse = new Float32Array(T);
  const l64 = Float64Array.from(logits);
  const ref = (): number => {
    let s = 0,
      n = 0;
    for (let t = 0; t < T; t++) {
      if (targets[t] === IGNORE_INDEX || mask[t] === 0) continue;
      const row = Array.from(l64.subarray(t * V, t * V + V));
      const m = Math.max(...row);
      s += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[targets[t]!]!;
      n++;
    }
    return s / n;
  };
  const { sum, count, maxLogit, logZSum } = crossEntropyForward(lse, logits, targets, mask, T, V);
  assert.equal(count, 4);
  // Monitors over counted rows only: the largest logit and the summed log-sum-exp.
  let wantMax = -Infinity;
  let wantLogZ = 0;
  for (let t = 0; t < T; t++) {
    if (targets[t] === IGNORE_INDEX || mask[t] === 0) continue;
    const row = Array.from(l64.subarray(t * V, t * V + V));
    const m = Math.max(...row);
    wantMax = Math.max(wantMax, m);
    wantLogZ += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
  }
  assert.equal(maxLogit, wantMax);
  assert.ok(Math.abs(logZSum - wantLogZ) < 1e-5);
  assert.ok(Math.abs(sum / count - ref()) < 1e-6);
  const d = Float32Array.from(logits);
  crossEntropyBackward(d, lse, targets, mask, T, V, 1 / count);
  assertClose(d, fdGrad(ref, l64), "cross-entropy backward", 1e-5);
  // Without a mask position 3 counts too.
  assert.equal(crossEntropyForward(lse, logits, targets, null, T, V).count, 5);
  assert.throws(() => crossEntropyForward(lse, logits, Int32Array.from([0, 0, 0, 0, 0, 7]), null, T, V), {
    code: "RANGE_INVALID",
  });
});

test("exp: within 2e-8 relative of Math.exp over the range the layers use; edge cases", () => {
  let worst = 0;
  for (let i = 0; i <= 200000; i++) {
    const x = -100 + (i / 200000) * 190; // [-100, 90]
    worst = Math.max(worst, Math.abs(exp(x) - Math.exp(x)) / Math.exp(x));
  }
  assert.ok(worst < 2e-8, `max relative error ${worst}`);
  assert.equal(exp(0), 1);
  assert.equal(exp(-Infinity), 0);
  assert.equal(exp(-200), 0); // below the least float32 subnormal
  assert.ok(exp(200) > 3.5e38); // infinite once stored as float32
  assert.ok(Number.isNaN(exp(NaN)));
});
