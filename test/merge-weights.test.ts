import assert from "node:assert/strict";
import { test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { coefficientsFor } from "../src/merge/methods.js";
import {
  customCoefficients,
  emaCoefficients,
  smaCoefficients,
  wmaCoefficients,
} from "../src/merge/weights.js";

const close = (a: number[], b: number[], tol = 1e-15) => {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) <= tol, `coefficient ${i}: ${x} vs ${b[i]}`));
};
const sum = (a: number[]) => a.reduce((s, x) => s + x, 0);

test("SMA gives every checkpoint 1/N", () => {
  close(smaCoefficients(4), [0.25, 0.25, 0.25, 0.25]);
  assert.ok(Math.abs(sum(smaCoefficients(7)) - 1) < 1e-15);
});

test("WMA weights are i / (N(N+1)/2), oldest first", () => {
  close(wmaCoefficients(3), [1 / 6, 2 / 6, 3 / 6]);
  close(wmaCoefficients(1), [1]);
});

test("EMA coefficients equal running the paper's recursion on the checkpoints", () => {
  for (const alpha of [0.1, 0.2, 0.5, 1]) {
    for (const n of [1, 2, 3, 10]) {
      // Run Eq. 4 on basis vectors: M_avg(1) = M_1, M_avg(i) = a M_i + (1-a) M_avg(i-1).
      let avg: number[] = Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 0));
      for (let i = 1; i < n; i++) {
        avg = avg.map((v, j) => alpha * (j === i ? 1 : 0) + (1 - alpha) * v);
      }
      close(emaCoefficients(n, alpha), avg, 1e-15);
      assert.ok(Math.abs(sum(emaCoefficients(n, alpha)) - 1) < 1e-14);
    }
  }
});

test("EMA differs from the paper's a(1-a)^(N-i) only in the oldest checkpoint", () => {
  const n = 5;
  const a = 0.2;
  const paper = Array.from({ length: n }, (_, k) => a * Math.pow(1 - a, n - (k + 1)));
  const ours = emaCoefficients(n, a);
  close(ours.slice(1), paper.slice(1));
  assert.ok(Math.abs(ours[0]! - Math.pow(1 - a, n - 1)) < 1e-15);
});

test("custom weights are normalised unless asked not to be", () => {
  close(customCoefficients([1, 2, 3]), [1 / 6, 2 / 6, 3 / 6]);
  close(customCoefficients([1, 2, 3], false), [1, 2, 3]);
  assert.throws(
    () => customCoefficients([1, -1]),
    (e) => isPmaError(e, "WEIGHTS_INVALID"),
  );
  assert.throws(
    () => coefficientsFor({ method: "custom", weights: [1, 2] }, 3),
    (e) => isPmaError(e, "WEIGHTS_INVALID"),
  );
  assert.throws(
    () => emaCoefficients(3, 0),
    (e) => isPmaError(e, "WEIGHTS_INVALID"),
  );
});

test("WSM coefficients reproduce the decayed update multipliers, and linear decay is SMA", () => {
  close(coefficientsFor({ method: "wsm", decay: "linear" }, 5), smaCoefficients(5), 1e-15);
  for (const decay of ["1-sqrt", "cosine", "linear"] as const) {
    const n = 8;
    const c = coefficientsFor({ method: "wsm", decay }, n);
    assert.ok(Math.abs(sum(c) - 1) < 1e-14);
    assert.ok(c.every((x) => x >= 0));
    // Independent check: the tail sums of c must be the LR multipliers of the decay.
    const shape = (x: number) =>
      decay === "linear" ? 1 - x : decay === "1-sqrt" ? 1 - Math.sqrt(x) : 0.5 * (1 + Math.cos(Math.PI * x));
    for (let t = 1; t <= n; t++) {
      const tail = c.slice(t - 1).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(tail - shape((t - 1) / n)) < 1e-14, `${decay} tail ${t}`);
    }
  }
});
