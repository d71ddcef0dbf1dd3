/**
 * A loss landscape plane through a window of checkpoints (paper Fig. 8): the plane
 * spanned by the first two principal directions of the checkpoints about their mean.
 * The mean is the SMA merge, so the merge sits at the origin and each checkpoint at
 * its projection; `explained` says how much of the window's spread the plane holds
 * (the rest is off-plane and not drawn).
 *
 * PCA of k points in n dimensions goes through the k x k Gram matrix of the centred
 * points (Jacobi eigen-decomposition), so it costs k^2 dot products, not an n x n matrix.
 */
import { PmaError } from "../common/errors.js";
import { combine, dot, norm, sub } from "./vectors.js";

export interface Plane {
  origin: Float32Array;
  /** Orthonormal directions. */
  u: Float32Array;
  v: Float32Array;
  /** Share of the total squared spread about the origin along u and v. */
  explained: [number, number];
  /** Coordinates of the input points in the plane. */
  coords: { x: number; y: number }[];
}

/** Eigenvalues (descending) and unit eigenvectors of a small symmetric matrix (cyclic Jacobi). */
export function symmetricEigen(a: number[][]): { values: number[]; vectors: number[][] } {
  const n = a.length;
  const m = a.map((r) => [...r]);
  const v: number[][] = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)),
  );
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p]![q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p]![q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (m[q]![q]! - m[p]![p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k]![p]!;
          const mkq = m[k]![q]!;
          m[k]![p] = c * mkp - s * mkq;
          m[k]![q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p]![k]!;
          const mqk = m[q]![k]!;
          m[p]![k] = c * mpk - s * mqk;
          m[q]![k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k]![p]!;
          const vkq = v[k]![q]!;
          v[k]![p] = c * vkp - s * vkq;
          v[k]![q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => m[j]![j]! - m[i]![i]!);
  return { values: order.map((i) => m[i]![i]!), vectors: order.map((i) => v.map((row) => row[i]!)) };
}

/** The PCA plane of `points` about `origin` (default: their mean). */
export function pcaPlane(points: readonly Float32Array[], origin?: Float32Array): Plane {
  const k = points.length;
  if (k < 3) throw new PmaError("USAGE", `a plane through checkpoints needs at least 3 of them, got ${k}`);
  const o =
    origin ??
    combine(
      points,
      points.map(() => 1 / k),
    );
  const centred = points.map((p) => sub(p, o));
  const gram = centred.map((a) => centred.map((b) => dot(a, b)));
  const { values, vectors } = symmetricEigen(gram);
  const total = values.reduce((s, x) => s + Math.max(0, x), 0);
  const dir = (e: number): Float32Array => {
    const d = combine(centred, vectors[e]!);
    const n = norm(d);
    if (!(n > 0))
      throw new PmaError("USAGE", "the checkpoints do not span a plane (they coincide or lie on a line)");
    for (let i = 0; i < d.length; i++) d[i] = d[i]! / n;
    return d;
  };
  const u = dir(0);
  const v = dir(1);
  return {
    origin: o,
    u,
    v,
    explained: [Math.max(0, values[0]!) / total, Math.max(0, values[1]!) / total],
    coords: centred.map((c) => ({ x: dot(c, u), y: dot(c, v) })),
  };
}

/** Coordinates of another point (e.g. theta*) in the plane, and its distance from the plane. */
export function project(plane: Plane, p: Float32Array): { x: number; y: number; offPlane: number } {
  const d = sub(p, plane.origin);
  const x = dot(d, plane.u);
  const y = dot(d, plane.v);
  return { x, y, offPlane: Math.sqrt(Math.max(0, dot(d, d) - x * x - y * y)) };
}

/** Evenly spaced grid values covering `values` with a margin. */
export function gridAxis(values: readonly number[], n: number, margin = 0.35): number[] {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = (hi - lo) * margin || 1;
  return Array.from({ length: n }, (_, i) => lo - pad + ((hi - lo + 2 * pad) * i) / (n - 1));
}
