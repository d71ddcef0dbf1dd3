// The loss plane's geometry: Jacobi eigenvalues against a matrix with known spectrum,
// and PCA of points built inside a known plane.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gridAxis, pcaPlane, project, symmetricEigen } from "../src/analysis/plane.js";
import { dot, norm } from "../src/analysis/vectors.js";

test("symmetricEigen: Q diag(l) Q' is recovered", () => {
  // An orthonormal Q from a Householder reflection of a fixed vector.
  const v = [1, 2, -1, 0.5];
  const vv = v.reduce((s, x) => s + x * x, 0);
  const q = v.map((a, i) => v.map((b, j) => (i === j ? 1 : 0) - (2 * a * b) / vv));
  const l = [5, 2, -1, 0.25];
  const a = q.map((_, i) => q.map((_, j) => l.reduce((s, lk, k) => s + q[i]![k]! * lk * q[j]![k]!, 0)));
  const { values, vectors } = symmetricEigen(a);
  assert.deepEqual(
    values.map((x) => +x.toFixed(9)),
    [5, 2, 0.25, -1],
  );
  for (const [k, vec] of vectors.entries()) {
    const av = a.map((row) => row.reduce((s, x, j) => s + x * vec[j]!, 0));
    av.forEach((x, i) => assert.ok(Math.abs(x - values[k]! * vec[i]!) < 1e-9));
  }
});

test("pcaPlane: points inside a plane are reproduced by their coordinates", () => {
  const n = 1000;
  const e1 = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const e2 = Float32Array.from({ length: n }, (_, i) => Math.cos(3 * i));
  const o = Float32Array.from({ length: n }, (_, i) => (i % 7) / 7);
  const coeffs = [
    [1, 0.2],
    [-0.5, 1],
    [0.3, -0.8],
    [-0.8, -0.4],
  ];
  const pts = coeffs.map(([a, b]) => Float32Array.from(o, (x, i) => x + a! * e1[i]! + b! * e2[i]!));
  const plane = pcaPlane(pts);
  assert.ok(Math.abs(norm(plane.u) - 1) < 1e-5 && Math.abs(norm(plane.v) - 1) < 1e-5);
  assert.ok(Math.abs(dot(plane.u, plane.v)) < 1e-4);
  assert.ok(plane.explained[0] + plane.explained[1] > 0.9999);
  // Pairwise distances in the plane equal those in parameter space.
  for (let i = 0; i < pts.length; i++) {
    for (let j = 0; j < i; j++) {
      const d = Math.sqrt(pts[i]!.reduce((s, x, e) => s + (x - pts[j]![e]!) ** 2, 0));
      const c = Math.hypot(plane.coords[i]!.x - plane.coords[j]!.x, plane.coords[i]!.y - plane.coords[j]!.y);
      assert.ok(Math.abs(d - c) < 1e-3 * d, `${d} vs ${c}`);
    }
  }
  const off = Float32Array.from(plane.origin, (x, i) => x + 2 * plane.u[i]! + (i === 0 ? 1 : 0));
  const p = project(plane, off);
  assert.ok(Math.abs(p.x - 2 - plane.u[0]!) < 1e-4);
  assert.ok(p.offPlane > 0.5 && p.offPlane <= 1 + 1e-6);
});

test("gridAxis covers the values with a margin", () => {
  const g = gridAxis([-1, 0, 3], 5, 0.25);
  assert.deepEqual(g, [-2, -0.5, 1, 2.5, 4]);
});
