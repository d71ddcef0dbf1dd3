import assert from "node:assert/strict";
import { test } from "node:test";
import { StatsAccumulator } from "../src/tensor/stats.js";
import { rng } from "./helpers/fixtures.js";

test("streaming stats over chunks equal a two-pass float64 computation", () => {
  const r = rng(9);
  const xs = Array.from({ length: 10_007 }, () => 3 + (r() - 0.5) * 1e-3);
  xs[17] = NaN;
  xs[18] = Infinity;
  xs[19] = -Infinity;
  const acc = new StatsAccumulator();
  for (let i = 0; i < xs.length; i += 1000) acc.add(Float64Array.from(xs.slice(i, i + 1000)));
  const s = acc.result();
  const finite = xs.filter((x) => Number.isFinite(x));
  const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
  const std = Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / finite.length);
  assert.equal(s.count, xs.length);
  assert.equal(s.finite, finite.length);
  assert.deepEqual([s.nan, s.posInf, s.negInf], [1, 1, 1]);
  assert.equal(s.min, Math.min(...finite));
  assert.equal(s.max, Math.max(...finite));
  assert.ok(Math.abs(s.mean - mean) < 1e-12);
  assert.ok(Math.abs(s.std - std) / std < 1e-9, `${s.std} vs ${std}`);
});
