/**
 * A small Gaussian process for Bayesian optimisation of an expensive function on [0,1]^d
 * (Liu et al. 2024 choose merge weights this way): Matern 5/2 kernel on standardised
 * outputs, the length scale picked from a fixed ladder by the log marginal likelihood,
 * and expected improvement for minimisation. Everything is deterministic, so a rerun of
 * a search proposes the same points (and finds them in the evaluation cache).
 *
 * No maintained JavaScript library does this: the GP packages on npm are unmaintained
 * or regression-only, so this is written out, and tested on functions with known optima.
 */
import { PmaError } from "../common/errors.js";

/** Length scales tried, in units of the [0,1] box; a search over a smooth 1-D parameter may start higher. */
export const LENGTH_SCALES: readonly number[] = [0.05, 0.1, 0.2, 0.35, 0.6, 1.0];
/** Observation noise (relative to the standardised variance): held-out loss is deterministic, but windows are finite. */
const NOISE = 1e-4;

function matern52(a: readonly number[], b: readonly number[], ell: number): number {
  let d2 = 0;
  for (let i = 0; i < a.length; i++) d2 += (a[i]! - b[i]!) ** 2;
  const r = Math.sqrt(5 * d2) / ell;
  return (1 + r + (r * r) / 3) * Math.exp(-r);
}

/** Lower Cholesky factor of a symmetric positive definite matrix (row-major n x n). */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= l[i * n + k]! * l[j * n + k]!;
      if (i === j) {
        if (!(s > 0))
          throw new PmaError(
            "INTERNAL",
            `Gaussian process: the kernel matrix is not positive definite (pivot ${s} at ${i})`,
          );
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j]!;
    }
  }
  return l;
}

/** Solves L x = b (forward) for lower triangular L. */
function forward(l: Float64Array, n: number, b: Float64Array): Float64Array {
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * n + k]! * x[k]!;
    x[i] = s / l[i * n + i]!;
  }
  return x;
}

/** Solves L' x = b (backward). */
function backward(l: Float64Array, n: number, b: Float64Array): Float64Array {
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k * n + i]! * x[k]!;
    x[i] = s / l[i * n + i]!;
  }
  return x;
}

export interface GpPrediction {
  mean: number;
  sd: number;
}

export class GaussianProcess {
  private constructor(
    private readonly xs: readonly (readonly number[])[],
    private readonly l: Float64Array,
    private readonly alpha: Float64Array,
    private readonly yMean: number,
    private readonly yScale: number,
    readonly lengthScale: number,
  ) {}

  /** Fits to points in [0,1]^d and their values, choosing the length scale by marginal likelihood. */
  static fit(
    xs: readonly (readonly number[])[],
    ys: readonly number[],
    lengthScales: readonly number[] = LENGTH_SCALES,
  ): GaussianProcess {
    const n = xs.length;
    if (n === 0 || n !== ys.length)
      throw new PmaError("INTERNAL", `Gaussian process: ${n} points and ${ys.length} values`);
    const yMean = ys.reduce((a, b) => a + b, 0) / n;
    const sd = Math.sqrt(ys.reduce((a, b) => a + (b - yMean) ** 2, 0) / n);
    const yScale = sd > 0 ? sd : 1;
    const y = Float64Array.from(ys, (v) => (v - yMean) / yScale);
    let best: { lml: number; ell: number; l: Float64Array; alpha: Float64Array } | null = null;
    for (const ell of lengthScales) {
      const k = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) k[i * n + j] = matern52(xs[i]!, xs[j]!, ell) + (i === j ? NOISE : 0);
      let l: Float64Array;
      try {
        l = cholesky(k, n);
      } catch {
        continue;
      }
      const alpha = backward(l, n, forward(l, n, y));
      let lml = 0;
      for (let i = 0; i < n; i++) lml -= 0.5 * y[i]! * alpha[i]! + Math.log(l[i * n + i]!);
      if (best === null || lml > best.lml) best = { lml, ell, l, alpha };
    }
    if (best === null)
      throw new PmaError(
        "INTERNAL",
        "Gaussian process: no length scale gives a positive definite kernel matrix (duplicate points?)",
      );
    return new GaussianProcess(
      xs.map((x) => [...x]),
      best.l,
      best.alpha,
      yMean,
      yScale,
      best.ell,
    );
  }

  predict(x: readonly number[]): GpPrediction {
    const n = this.xs.length;
    const ks = Float64Array.from(this.xs, (xi) => matern52(xi, x, this.lengthScale));
    let mean = 0;
    for (let i = 0; i < n; i++) mean += ks[i]! * this.alpha[i]!;
    const v = forward(this.l, n, ks);
    let vv = 0;
    for (let i = 0; i < n; i++) vv += v[i]! * v[i]!;
    const variance = Math.max(0, 1 - vv);
    return { mean: this.yMean + mean * this.yScale, sd: Math.sqrt(variance) * this.yScale };
  }
}

/** Standard normal density and distribution function (erfc by Numerical Recipes' Chebyshev fit, |error| < 1.2e-7). */
function phi(z: number): number {
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
}
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** Expected improvement below `best` (minimisation). */
export function expectedImprovement(p: GpPrediction, best: number): number {
  if (p.sd <= 1e-12) return Math.max(0, best - p.mean);
  const z = (best - p.mean) / p.sd;
  return (best - p.mean) * normalCdf(z) + p.sd * phi(z);
}

/**
 * The index of the candidate with the largest expected improvement among those not yet
 * evaluated (`done`), or -1 when all are done. Ties go to the lower index, so the order
 * of `candidates` decides them deterministically.
 */
export function proposeNext(
  gp: GaussianProcess,
  candidates: readonly (readonly number[])[],
  done: ReadonlySet<number>,
  best: number,
): number {
  let pick = -1;
  let top = -Infinity;
  for (let i = 0; i < candidates.length; i++) {
    if (done.has(i)) continue;
    const ei = expectedImprovement(gp.predict(candidates[i]!), best);
    if (ei > top) {
      top = ei;
      pick = i;
    }
  }
  return pick;
}

/**
 * Minimises `f` over a finite set of points in [0,1]^d with at most `budget` evaluations:
 * the `initial` indices first (a space-filling start), then expected improvement. Returns
 * every evaluation in order. `f` may be asynchronous (a held-out evaluation).
 */
export async function minimizeOverSet(
  points: readonly (readonly number[])[],
  f: (index: number) => Promise<number>,
  budget: number,
  initial: readonly number[],
  lengthScales: readonly number[] = LENGTH_SCALES,
): Promise<{ index: number; value: number }[]> {
  const out: { index: number; value: number }[] = [];
  const done = new Set<number>();
  const evaluate = async (i: number) => {
    done.add(i);
    out.push({ index: i, value: await f(i) });
  };
  for (const i of initial) {
    if (out.length >= budget || done.has(i) || i < 0 || i >= points.length) continue;
    await evaluate(i);
  }
  while (out.length < Math.min(budget, points.length)) {
    const finite = out.filter((o) => Number.isFinite(o.value));
    let next: number;
    if (finite.length < 2) {
      next = points.findIndex((_, i) => !done.has(i));
    } else {
      const gp = GaussianProcess.fit(
        finite.map((o) => points[o.index]!),
        finite.map((o) => o.value),
        lengthScales,
      );
      next = proposeNext(gp, points, done, Math.min(...finite.map((o) => o.value)));
    }
    if (next < 0) break;
    await evaluate(next);
  }
  return out;
}

/** Indices of a deterministic space-filling subset: greedy farthest-point from the first point. */
export function spaceFilling(points: readonly (readonly number[])[], count: number, start = 0): number[] {
  if (points.length === 0) return [];
  const chosen = [Math.min(start, points.length - 1)];
  const dist = points.map((p) => sq(p, points[chosen[0]!]!));
  while (chosen.length < Math.min(count, points.length)) {
    let far = -1;
    for (let i = 0; i < points.length; i++) if (far < 0 || dist[i]! > dist[far]!) far = i;
    if (dist[far]! === 0) break;
    chosen.push(far);
    for (let i = 0; i < points.length; i++) dist[i] = Math.min(dist[i]!, sq(points[i]!, points[far]!));
  }
  return chosen;
}

function sq(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}
