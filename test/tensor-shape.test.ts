import assert from "node:assert/strict";
import { test } from "node:test";
import { numel } from "../src/tensor/shape.js";

test("numel: the product of the dimensions; a scalar has one element, an empty dimension none", () => {
  assert.equal(numel([]), 1);
  assert.equal(numel([7]), 7);
  assert.equal(numel([2, 3, 4]), 24);
  assert.equal(numel([4096, 0, 3]), 0);
  assert.equal(numel([151936, 8192]), 1244659712);
});
