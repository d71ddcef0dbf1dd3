import assert from "node:assert/strict";
import { test } from "node:test";
import { MergeKernels } from "../src/merge/kernels.js";
import { bf16ToNumber, encodeBf16 } from "../src/tensor/bf16.js";
import { f16ToNumber } from "../src/tensor/f16.js";
import { rng } from "./helpers/fixtures.js";

// The SIMD kernels must agree with the scalar conversions (themselves tested against an
// IEEE reference) on every 16-bit pattern, including NaN, Inf and subnormals.

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

function allPatterns(): Uint8Array {
  const u16 = new Uint16Array(65536 + 3); // + a tail that is not a multiple of 8
  for (let i = 0; i < u16.length; i++) u16[i] = i & 0xffff;
  return new Uint8Array(u16.buffer);
}

for (const [dtype, toNumber] of [["BF16", bf16ToNumber], ["F16", f16ToNumber]] as const) {
  for (const precision of ["f32", "f64"] as const) {
    test(`${dtype} -> ${precision} accumulation decodes every bit pattern exactly`, () => {
      const k = new MergeKernels();
      const src = allPatterns();
      const n = src.length / 2;
      k.reserve(n);
      k.zero(n, precision);
      k.srcBytes(src.length).set(src);
      k.accumulate(dtype, precision, n, 1);
      const acc = k.emit(precision, precision === "f32" ? "F32" : "F64", n);
      const values = precision === "f32" ? new Float32Array(acc.slice().buffer) : new Float64Array(acc.slice().buffer);
      // The accumulator starts at +0, and +0 + -0 = +0 in IEEE arithmetic.
      for (let i = 0; i < n; i++) assert.ok(same(values[i]!, 0 + toNumber(i & 0xffff)), `pattern ${i}`);
      const nonfinite = [...Array(n).keys()].filter((i) => !Number.isFinite(toNumber(i & 0xffff))).length;
      assert.equal(k.countNonfinite(precision, n), nonfinite);
    });
  }
}

test("f32 -> bf16 rounding of the kernel equals encodeBf16 on ties, NaN, overflow and random values", () => {
  const r = rng(3);
  const bits = new Uint32Array(200_003);
  for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(r() * 2 ** 32);
  // Exact ties (low half 0x8000) with even and odd kept halves, and overflow edges.
  const special = [0x3f808000, 0x3f818000, 0x7f7f8000, 0x7f7fffff, 0xff7f8000, 0x7f800001, 0xffc00001, 0x00008000, 0x00018000];
  bits.set(special, 0);
  const k = new MergeKernels();
  const n = bits.length;
  k.reserve(n);
  k.zero(n, "f32");
  const srcBytes = new Uint8Array(bits.buffer);
  k.srcBytes(srcBytes.length).set(srcBytes);
  k.accumulate("F32", "f32", n, 1);
  const got = new Uint16Array(k.emit("f32", "BF16", n).slice().buffer);
  const expected = new Uint16Array(n);
  encodeBf16(new Float32Array(bits.buffer), expected);
  for (let i = 0; i < n; i++) {
    const nan = Number.isNaN(bf16ToNumber(expected[i]!));
    if (nan) assert.ok(Number.isNaN(bf16ToNumber(got[i]!)) && (got[i]! & 0x8000) === (expected[i]! & 0x8000), `NaN at ${i}`);
    else assert.equal(got[i], expected[i], `bits 0x${bits[i]!.toString(16)}`);
  }
});
