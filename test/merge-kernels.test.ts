import assert from "node:assert/strict";
import { test } from "node:test";
import { MergeKernels } from "../src/merge/kernels.js";
import { bf16ToNumber, encodeBf16, numberToBf16 } from "../src/tensor/bf16.js";
import { f16FromF32Bits, f16ToNumber, numberToF16 } from "../src/tensor/f16.js";
import { rng } from "./helpers/fixtures.js";

// The SIMD kernels must agree with the scalar conversions (themselves tested against an
// IEEE reference) on every 16-bit pattern, including NaN, Inf and subnormals.

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

function allPatterns(): Uint8Array {
  const u16 = new Uint16Array(65536 + 3); // + a tail that is not a multiple of 8
  for (let i = 0; i < u16.length; i++) u16[i] = i & 0xffff;
  return new Uint8Array(u16.buffer);
}

for (const [dtype, toNumber] of [
  ["BF16", bf16ToNumber],
  ["F16", f16ToNumber],
] as const) {
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
      const values =
        precision === "f32"
          ? new Float32Array(acc.bytes.slice().buffer)
          : new Float64Array(acc.bytes.slice().buffer);
      // The accumulator starts at -0, the identity of addition, so -0 stays -0.
      for (let i = 0; i < n; i++) assert.ok(same(values[i]!, toNumber(i & 0xffff)), `pattern ${i}`);
      const nonfinite = [...Array(n).keys()].filter((i) => !Number.isFinite(toNumber(i & 0xffff))).length;
      assert.equal(k.countNonfinite(precision, n), nonfinite);
      assert.equal(acc.nonfinite, nonfinite);
    });
  }
}

test("f32 -> bf16 rounding of the kernel equals encodeBf16 on ties, NaN, overflow and random values", () => {
  const r = rng(3);
  const bits = new Uint32Array(200_003);
  for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(r() * 2 ** 32);
  // Exact ties (low half 0x8000) with even and odd kept halves, and overflow edges.
  const special = [
    0x3f808000, 0x3f818000, 0x7f7f8000, 0x7f7fffff, 0xff7f8000, 0x7f800001, 0xffc00001, 0x00008000,
    0x00018000,
  ];
  bits.set(special, 0);
  const k = new MergeKernels();
  const n = bits.length;
  k.reserve(n);
  k.zero(n, "f32");
  const srcBytes = new Uint8Array(bits.buffer);
  k.srcBytes(srcBytes.length).set(srcBytes);
  k.accumulate("F32", "f32", n, 1);
  const emitted = k.emit("f32", "BF16", n);
  const got = new Uint16Array(emitted.bytes.slice().buffer);
  const expected = new Uint16Array(n);
  encodeBf16(new Float32Array(bits.buffer), expected);
  for (let i = 0; i < n; i++) {
    const nan = Number.isNaN(bf16ToNumber(expected[i]!));
    if (nan)
      assert.ok(
        Number.isNaN(bf16ToNumber(got[i]!)) && (got[i]! & 0x8000) === (expected[i]! & 0x8000),
        `NaN at ${i}`,
      );
    else assert.equal(got[i], expected[i], `bits 0x${bits[i]!.toString(16)}`);
  }
  assert.equal(emitted.nonfinite, [...expected].filter((b) => (b & 0x7f80) === 0x7f80).length);
});

/** Float32 bit patterns: random, plus ties, overflow edges, subnormals and NaN for both 16-bit targets. */
function f32Patterns(): Uint32Array {
  const r = rng(5);
  const bits = new Uint32Array(300_005);
  for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(r() * 2 ** 32);
  // f16 has its normals from 2^-14 (0x38800000) to 65504 and rounds to Inf from 65520 (0x477ff000).
  for (let i = 0; i < 100_000; i++)
    bits[i] = (0x33000000 + Math.floor(r() * (0x47900000 - 0x33000000))) | (r() < 0.5 ? 0x80000000 : 0);
  const special = [
    0x38800000, 0x387fffff, 0x38000000, 0x33000000, 0x33000001, 0x32ffffff, 0x477fe000, 0x477ff000,
    0x477fefff, 0x47800000, 0x3f801000, 0x3f803000, 0x3f800fff, 0x7f800000, 0xff800000, 0x7f800001,
    0xffc00001, 0x00000001, 0x80000000, 0x00000000, 0x3f808000, 0x7f7f8000, 0x7f7fffff,
  ];
  bits.set(special, 100_000);
  return bits;
}

test("f32 -> f16 rounding of the kernel equals f16FromF32Bits on ties, subnormals, overflow, NaN and random values", () => {
  const bits = f32Patterns();
  const n = bits.length;
  const k = new MergeKernels();
  k.reserve(n);
  k.zero(n, "f32");
  k.srcBytes(n * 4).set(new Uint8Array(bits.buffer));
  k.accumulate("F32", "f32", n, 1);
  const emitted = k.emit("f32", "F16", n);
  const got = new Uint16Array(emitted.bytes.slice().buffer);
  let special = 0;
  for (let i = 0; i < n; i++) {
    const want = f16FromF32Bits(bits[i]!);
    assert.equal(
      got[i],
      want,
      `bits 0x${bits[i]!.toString(16)}: 0x${got[i]!.toString(16)} vs 0x${want.toString(16)}`,
    );
    if ((want & 0x7c00) === 0x7c00) special++;
  }
  assert.equal(emitted.nonfinite, special);
});

/** float64 values whose rounding to a 16-bit float is hard: near ties, beyond ties by one f64 ulp, tiny and huge. */
function f64Hard(): Float64Array {
  const r = rng(11);
  const out: number[] = [];
  for (let i = 0; i < 40_000; i++) {
    // A random f32-representable value, then nudged by a few f64 ulps or by exactly half an f16/bf16 step.
    const e = Math.floor(r() * 80) - 40;
    const base = (1 + Math.floor(r() * 2 ** 23) / 2 ** 23) * 2 ** e * (r() < 0.5 ? -1 : 1);
    const step = Math.abs(base) * 2 ** -52;
    out.push(base, base + step, base - step);
    // Exact midpoints between neighbouring bf16 (8-bit) and f16 (11-bit) values, and one
    // f64 ulp to either side: double rounding through a nearest-even f32 fails on these.
    for (const bits of [8, 11]) {
      const q =
        Math.floor(Math.abs(base) * 2 ** (bits - 1 - Math.floor(Math.log2(Math.abs(base))))) /
        2 ** (bits - 1 - Math.floor(Math.log2(Math.abs(base))));
      const mid = (q + 2 ** (Math.floor(Math.log2(q)) - bits)) * Math.sign(base);
      const ulp = Math.abs(mid) * 2 ** -52;
      out.push(mid, mid + ulp, mid - ulp, mid + 2 ** -20 * ulp * 2 ** 20 * 4096);
    }
  }
  out.push(
    1 + 2 ** -8 + 2 ** -40,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    1 + 2 ** -11 + 2 ** -45,
    65504,
    65519.99,
    65520,
    65536,
    1e300,
    -1e300,
  );
  out.push(
    2 ** -25,
    2 ** -25 + 2 ** -60,
    2 ** -24 * 1.5,
    2 ** -133,
    2 ** -134,
    2 ** -134 + 2 ** -170,
    2 ** -150,
    1e-320,
    -0,
    0,
  );
  out.push(
    3.3895313892515355e38,
    3.4028234663852886e38,
    3.402823567797337e38,
    3.5e38,
    Infinity,
    -Infinity,
    NaN,
  );
  for (let i = 0; i < 50_003; i++) out.push((r() * 2 - 1) * 2 ** (Math.floor(r() * 300) - 150));
  return Float64Array.from(out);
}

for (const [dtype, reference, specialMask] of [
  ["BF16", numberToBf16, 0x7f80],
  ["F16", numberToF16, 0x7c00],
] as const) {
  test(`f64 -> ${dtype} rounds once from the f64 value (as ${reference.name}) and counts Inf/NaN outputs`, () => {
    const values = f64Hard();
    const n = values.length;
    const k = new MergeKernels();
    k.reserve(n);
    k.zero(n, "f64");
    k.srcBytes(n * 8).set(new Uint8Array(values.buffer));
    k.accumulate("F64", "f64", n, 1);
    const emitted = k.emit("f64", dtype, n);
    const got = new Uint16Array(emitted.bytes.slice().buffer);
    let special = 0;
    for (let i = 0; i < n; i++) {
      const want = reference(values[i]!);
      if ((want & specialMask) === specialMask) special++;
      if (Number.isNaN(values[i]!)) assert.equal(got[i]! & specialMask, specialMask, "NaN stays NaN");
      else assert.equal(got[i], want, `${values[i]}: 0x${got[i]!.toString(16)} vs 0x${want.toString(16)}`);
    }
    assert.equal(emitted.nonfinite, special);
  });
}

test("f64 -> f32 is IEEE demotion and counts Inf/NaN outputs", () => {
  const values = f64Hard();
  const n = values.length;
  const k = new MergeKernels();
  k.reserve(n);
  k.zero(n, "f64");
  k.srcBytes(n * 8).set(new Uint8Array(values.buffer));
  k.accumulate("F64", "f64", n, 1);
  const emitted = k.emit("f64", "F32", n);
  const got = new Float32Array(emitted.bytes.slice().buffer);
  for (let i = 0; i < n; i++) assert.ok(same(got[i]!, Math.fround(values[i]!)), `${values[i]}`);
  assert.equal(emitted.nonfinite, [...values].filter((v) => !Number.isFinite(Math.fround(v))).length);
});
