import { test } from "node:test";
import assert from "node:assert/strict";
import { RollingWindow } from "../src/trajectory/robust.js";

/** Reference: sort a copy, take the middle (mean of the two middles for even sizes). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

test("rolling median and MAD equal a sort-based reference, with ties and evictions", () => {
  let seed = 7;
  const next = () => (seed = (Math.imul(seed, 48271) >>> 0) % 2147483647) / 2147483647;
  for (const capacity of [1, 2, 3, 4, 5, 10, 11, 50]) {
    const w = new RollingWindow(capacity);
    const history: number[] = [];
    for (let i = 0; i < 400; i++) {
      const x = Math.floor(next() * 20) / 4; // coarse values: many ties
      w.push(x);
      history.push(x);
      const win = history.slice(-capacity);
      const m = median(win);
      assert.equal(w.size, win.length);
      assert.equal(w.median(), m, `capacity ${capacity} step ${i}`);
      assert.equal(w.mad(), median(win.map((v) => Math.abs(v - m))), `capacity ${capacity} step ${i}`);
    }
  }
});

test("an empty window has no median; clear empties it", () => {
  const w = new RollingWindow(3);
  assert.ok(Number.isNaN(w.median()) && Number.isNaN(w.mad()));
  w.push(1);
  w.push(5);
  assert.equal(w.median(), 3);
  assert.equal(w.mad(), 2);
  w.clear();
  assert.equal(w.size, 0);
  assert.throws(() => new RollingWindow(0), RangeError);
});
