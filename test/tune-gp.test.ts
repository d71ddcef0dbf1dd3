/**
 * The Gaussian process and Bayesian optimisation of src/tune/gp.ts, on functions whose
 * optima are known in closed form, and the search of src/tune/search.ts on synthetic
 * runs whose best window is known.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  cholesky,
  expectedImprovement,
  GaussianProcess,
  minimizeOverSet,
  normalCdf,
  spaceFilling,
} from "../src/tune/gp.js";
import { enumerateWindows, searchMerges, splitBudget, best } from "../src/tune/search.js";
import type { Candidate } from "../src/tune/candidates.js";

test("Cholesky factor reproduces the matrix; the normal CDF matches known values", () => {
  const a = Float64Array.from([4, 2, 0.4, 2, 5, 1, 0.4, 1, 3]);
  const l = cholesky(a, 3);
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += l[i * 3 + k]! * l[j * 3 + k]!;
      assert.ok(Math.abs(s - a[i * 3 + j]!) < 1e-12);
    }
  // Phi(0) = 1/2, Phi(1.959964) = 0.975, Phi(-1) = 0.158655254.
  assert.ok(Math.abs(normalCdf(0) - 0.5) < 1e-7);
  assert.ok(Math.abs(normalCdf(1.959964) - 0.975) < 1e-6);
  assert.ok(Math.abs(normalCdf(-1) - 0.158655254) < 1e-6);
});

test("the GP interpolates its data, is uncertain away from it, and EI favours low means and high spread", () => {
  const xs = [[0], [0.25], [0.5], [1]];
  const ys = [1, 0.2, 0.5, 2];
  const gp = GaussianProcess.fit(xs, ys);
  for (let i = 0; i < xs.length; i++) {
    const p = gp.predict(xs[i]!);
    assert.ok(Math.abs(p.mean - ys[i]!) < 0.02, `mean at ${xs[i]}: ${p.mean} vs ${ys[i]}`);
  }
  assert.ok(gp.predict([0.75]).sd > gp.predict([0.25]).sd * 5);
  assert.ok(
    expectedImprovement({ mean: 0.1, sd: 0.1 }, 0.2) > expectedImprovement({ mean: 0.3, sd: 0.1 }, 0.2),
  );
  assert.ok(
    expectedImprovement({ mean: 0.3, sd: 0.5 }, 0.2) > expectedImprovement({ mean: 0.3, sd: 0.1 }, 0.2),
  );
});

test("Bayesian optimisation finds the minimum of a 1-D function with a known optimum in a few evaluations", async () => {
  // f(x) = (x - 0.37)^2 + 0.02 cos(20 x): on the grid of 201 points, the minimum is where a float64 scan says.
  const f = (x: number) => (x - 0.37) ** 2 + 0.02 * Math.cos(20 * x);
  const grid = Array.from({ length: 201 }, (_, i) => [i / 200]);
  const truth = grid.reduce((b, p, i) => (f(p[0]!) < f(grid[b]![0]!) ? i : b), 0);
  const trace = await minimizeOverSet(grid, async (i) => f(grid[i]![0]!), 15, spaceFilling(grid, 3));
  const found = trace.reduce((b, t) => (t.value < b.value ? t : b));
  assert.equal(
    found.index,
    truth,
    `found x=${grid[found.index]} (f=${found.value}), optimum x=${grid[truth]} (f=${f(grid[truth]![0]!)})`,
  );
  assert.equal(new Set(trace.map((t) => t.index)).size, trace.length, "no point is evaluated twice");
});

test("Bayesian optimisation reaches the best 0.5% of Branin's 1,681 grid points in 30 evaluations, far ahead of random search", async () => {
  // Branin on [-5,10] x [0,15], rescaled to the unit square; global minimum 0.397887 (three places).
  const branin = (u: number, v: number) => {
    const x = -5 + 15 * u;
    const y = 15 * v;
    return (
      (y - (5.1 / (4 * Math.PI ** 2)) * x * x + (5 / Math.PI) * x - 6) ** 2 +
      10 * (1 - 1 / (8 * Math.PI)) * Math.cos(x) +
      10
    );
  };
  const grid: number[][] = [];
  for (let i = 0; i <= 40; i++) for (let j = 0; j <= 40; j++) grid.push([i / 40, j / 40]);
  const values = grid.map((p) => branin(p[0]!, p[1]!));
  assert.ok(Math.min(...values) > 0.397887 - 1e-6);
  const trace = await minimizeOverSet(grid, async (i) => values[i]!, 30, spaceFilling(grid, 6));
  const found = Math.min(...trace.map((t) => t.value));
  const better = values.filter((v) => v < found).length;
  assert.ok(better <= 0.005 * grid.length, `best after 30: ${found}; ${better} grid points are lower`);
  // Random search with the same budget (20 seeded repetitions): its median best is several times worse.
  let seed = 1;
  const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const randomBests = Array.from({ length: 20 }, () =>
    Math.min(...Array.from({ length: 30 }, () => values[Math.floor(rand() * values.length)]!)),
  ).sort((a, b) => a - b);
  assert.ok(found < randomBests[10]! / 2, `BO ${found} vs random-search median ${randomBests[10]}`);
});

/**
 * A synthetic run of n checkpoints whose held-out loss, as a function of the merge, is
 * known: a bowl in log(span) and log(N) with its minimum at one window, plus a method
 * term that makes WMA a little better there, and EMA best at alpha 0.35.
 */
function syntheticObjective(bestStride: number, bestCount: number) {
  const calls: Candidate[] = [];
  const f = async (c: Candidate) => {
    calls.push(c);
    if (c.count === 1) return 3.0;
    const span = (c.count - 1) * c.stride;
    const bowl =
      Math.log(span / ((bestCount - 1) * bestStride)) ** 2 +
      0.5 * Math.log((c.count - 1) / (bestCount - 1)) ** 2;
    const method =
      c.method === "wma"
        ? -0.01
        : c.method === "ema"
          ? -0.008 + 2 * ((c.alpha ?? 0) - 0.35) ** 2
          : c.method === "sma"
            ? 0
            : 0.02;
    return 2.5 + 0.1 * bowl + method;
  };
  return { f, calls };
}

test("the search finds the known best window of synthetic runs, by grid when it fits and by BO when not", async () => {
  for (const [n, stride, count, budget] of [
    [12, 2, 4, 30], // 29 windows: BO over windows (21 evaluations)
    [8, 1, 5, 40], // 16 windows: the whole grid
    [40, 3, 6, 30], // 205 windows: BO with 21 evaluations
  ] as const) {
    const { f, calls } = syntheticObjective(stride, count);
    const steps = await searchMerges({ checkpoints: n }, f, budget);
    assert.equal(steps.length, budget);
    assert.equal(calls.length, budget);
    const windows = steps.filter((s) => s.phase === "window");
    const bestWindow = best(windows)!.candidate;
    assert.deepEqual(
      [bestWindow.stride, bestWindow.count],
      [stride, count],
      `n=${n}: best window found stride ${bestWindow.stride} count ${bestWindow.count}`,
    );
    const all = enumerateWindows({ checkpoints: n });
    if (all.length <= splitBudget(budget, all.length, 3)[0]) assert.equal(windows.length, all.length);
    // The methods are compared on that window; WMA wins there by construction.
    const b = best(steps)!;
    assert.ok(
      b.candidate.method === "wma" || b.candidate.method === "ema",
      `best method ${b.candidate.method}`,
    );
    const ema = steps.filter((s) => s.phase === "ema");
    if (ema.length >= 4)
      assert.ok(
        Math.abs((best(ema)!.candidate.alpha ?? 0) - 0.35) <= 0.03,
        `EMA alpha found ${best(ema)!.candidate.alpha}`,
      );
    // Deterministic: the same scores give the same path.
    const again = await searchMerges({ checkpoints: n }, syntheticObjective(stride, count).f, budget);
    assert.deepEqual(
      again.map((s) => s.candidate),
      steps.map((s) => s.candidate),
    );
  }
});

test("bad budgets and runs too short to merge are usage errors", async () => {
  const { f } = syntheticObjective(1, 2);
  await assert.rejects(searchMerges({ checkpoints: 5 }, f, 0), /budget must be a positive number/);
  await assert.rejects(searchMerges({ checkpoints: 1 }, f, 10), /at least 2 checkpoints/);
});
