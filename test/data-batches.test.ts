import assert from "node:assert/strict";
import { test } from "node:test";
import { hash32, uniform53, WindowSampler } from "../src/data/batches.js";

/** A stream whose value at i is i mod 65521, so a window's position can be read off its tokens. */
function stream(n: number): Uint16Array {
  return Uint16Array.from({ length: n }, (_, i) => i % 65521);
}

test("a batch is a pure function of (seed, step): same inputs, same batch, in any call order", () => {
  const s = stream(50_000);
  const a = new WindowSampler(s, 16, 7);
  const b = new WindowSampler(s, 16, 7);
  const tok = (w: WindowSampler, step: number, micro: number) => {
    const t = new Int32Array(4 * 16);
    w.fill(step, micro, t, new Int32Array(4 * 16));
    return t;
  };
  const later = tok(a, 1234, 1);
  // b draws other steps first: no hidden state may change what step 1234 sees.
  tok(b, 0, 0);
  tok(b, 99, 3);
  assert.deepEqual(tok(b, 1234, 1), later);
  assert.notDeepEqual(tok(a, 1235, 1), later);
  assert.notDeepEqual(tok(new WindowSampler(s, 16, 8), 1234, 1), later);
});

test("rows are contiguous windows with targets shifted by one; micro-batches split one step's rows", () => {
  const s = stream(10_000);
  const w = new WindowSampler(s, 8, 3);
  const R = 3;
  for (let micro = 0; micro < 2; micro++) {
    const tokens = new Int32Array(R * 8);
    const targets = new Int32Array(R * 8);
    w.fill(5, micro, tokens, targets);
    for (let r = 0; r < R; r++) {
      const o = w.offset(5, micro * R + r);
      assert.ok(o >= 0 && o + 8 < s.length);
      for (let t = 0; t < 8; t++) {
        assert.equal(tokens[r * 8 + t], s[o + t]);
        assert.equal(targets[r * 8 + t], s[o + t + 1]);
      }
    }
  }
});

test("window starts are spread uniformly over the stream (chi-square over 20 bins)", () => {
  const w = new WindowSampler(stream(100_001), 1, 11);
  const bins = new Array<number>(20).fill(0);
  const n = 40_000;
  for (let i = 0; i < n; i++) bins[Math.floor((w.offset(Math.floor(i / 8), i % 8) / w.starts) * 20)]!++;
  const expected = n / 20;
  const chi2 = bins.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
  // 19 degrees of freedom: P(chi2 > 43.8) = 0.001.
  assert.ok(chi2 < 43.8, `chi-square ${chi2.toFixed(1)} over bins ${bins.join(",")}`);
});

test("the counter hash has no collisions over nearby inputs and mixes every argument", () => {
  const seen = new Set<number>();
  for (let step = 0; step < 300; step++) for (let i = 0; i < 300; i++) seen.add(hash32(0, step, i));
  // 90,000 draws of 32 bits: expected collisions ~0.9; allow a few, not structure.
  assert.ok(seen.size > 90_000 - 5, `${90_000 - seen.size} collisions`);
  // Flipping one input bit flips about half the output bits.
  let flips = 0;
  const trials = 2000;
  for (let k = 0; k < trials; k++) {
    const x = hash32(k, 17, 3);
    const y = hash32(k, 17 ^ (1 << (k % 20)), 3);
    flips += popcount(x ^ y);
  }
  const mean = flips / trials;
  assert.ok(Math.abs(mean - 16) < 0.5, `mean bit flips ${mean}`);
  const u = uniform53(1, 2, 3);
  assert.ok(u >= 0 && u < 1);
});

function popcount(x: number): number {
  let c = 0;
  for (let v = x >>> 0; v !== 0; v &= v - 1) c++;
  return c;
}

test("a stream too short for one window is refused with advice", () => {
  assert.throws(
    () => new WindowSampler(stream(10), 16, 0),
    /too few for windows of 16 \+ 1 tokens; use a shorter data.seq_len/,
  );
});
