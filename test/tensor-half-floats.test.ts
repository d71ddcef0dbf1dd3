import { test } from "node:test";
import assert from "node:assert/strict";
import { f16round } from "@petamoriken/float16";
import { bf16ToNumber, decodeBf16, encodeBf16, numberToBf16 } from "../src/tensor/bf16.js";
import { decodeF16, encodeF16, f16ToNumber, numberToF16 } from "../src/tensor/f16.js";
import { isPmaError } from "../src/common/errors.js";
import {
  BF16,
  F16,
  isNaNBits,
  nearestBits,
  randomDoubles,
  valueOf,
  type FloatFormat,
} from "./helpers/float-reference.js";

interface Impl {
  format: FloatFormat;
  toNumber(bits: number): number;
  fromNumber(x: number): number;
  decode(src: Uint16Array, dst: Float32Array | Float64Array): void;
  encode(src: Float32Array | Float64Array, dst: Uint16Array): void;
  /** Exponent range (of 2) worth sampling: subnormals to just past overflow. */
  minExp: number;
  maxExp: number;
}

const IMPLS: Impl[] = [
  {
    format: BF16,
    toNumber: bf16ToNumber,
    fromNumber: numberToBf16,
    decode: decodeBf16,
    encode: encodeBf16,
    minExp: -140,
    maxExp: 128,
  },
  {
    format: F16,
    toNumber: f16ToNumber,
    fromNumber: numberToF16,
    decode: decodeF16,
    encode: encodeF16,
    minExp: -27,
    maxExp: 16,
  },
];

const ALL_PATTERNS = Uint16Array.from({ length: 65536 }, (_, i) => i);

function assertSameBits(
  f: FloatFormat,
  actual: Uint16Array,
  expected: ArrayLike<number>,
  inputs: ArrayLike<number>,
  label: string,
): void {
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${f.name} ${label}: input ${inputs[i]} gave 0x${actual[i]!.toString(16)}, nearest-even is 0x${expected[i]!.toString(16)}`,
      );
    }
  }
}

/** Every pattern's value, every midpoint (ties), and the doubles just either side of each midpoint. */
function boundaryInputs(f: FloatFormat): Float64Array {
  const v = f.values;
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    out.push(v[i]!, -v[i]!);
    const next = i + 1 < v.length ? v[i + 1]! : v[i]! + (v[i]! - v[i - 1]!);
    const half = (v[i]! + next) / 2;
    const nudge = half === 0 ? Number.MIN_VALUE : half * 2 ** -50;
    out.push(half, -half, half + nudge, half - nudge);
  }
  return Float64Array.from(out);
}

for (const impl of IMPLS) {
  const f = impl.format;

  test(`${f.name}: every bit pattern widens to the value its fields define`, () => {
    const wide32 = new Float32Array(65536);
    const wide64 = new Float64Array(65536);
    impl.decode(ALL_PATTERNS, wide32);
    impl.decode(ALL_PATTERNS, wide64);
    for (let b = 0; b < 65536; b++) {
      const expected = valueOf(f, b);
      assert.ok(
        Object.is(impl.toNumber(b), expected),
        `${f.name} 0x${b.toString(16)}: ${impl.toNumber(b)} vs ${expected}`,
      );
      assert.ok(
        Object.is(wide32[b], expected) && Object.is(wide64[b], expected),
        `${f.name} bulk 0x${b.toString(16)}`,
      );
    }
  });

  test(`${f.name}: values, ties and near-ties round to nearest even (scalar, from f64, from f32)`, () => {
    const inputs = boundaryInputs(f);
    const expected = inputs.map((x) => nearestBits(f, x));
    const scalar = Uint16Array.from(inputs, (x) => impl.fromNumber(x));
    assertSameBits(f, scalar, expected, inputs, "scalar");
    const from64 = new Uint16Array(inputs.length);
    impl.encode(inputs, from64);
    assertSameBits(f, from64, expected, inputs, "from Float64Array");
    // The same inputs as float32 are a different set (the nudges vanish); the reference
    // is recomputed for what float32 actually holds.
    const as32 = Float32Array.from(inputs);
    const from32 = new Uint16Array(as32.length);
    impl.encode(as32, from32);
    assertSameBits(
      f,
      from32,
      Float64Array.from(as32, (x) => nearestBits(f, x)),
      as32,
      "from Float32Array",
    );
  });

  test(`${f.name}: random float64 inputs round once, directly to the nearest value`, () => {
    const inputs = randomDoubles(200_000, 7, impl.minExp, impl.maxExp);
    const expected = inputs.map((x) => nearestBits(f, x));
    const out = new Uint16Array(inputs.length);
    impl.encode(inputs, out);
    assertSameBits(f, out, expected, inputs, "random f64");
    const as32 = Float32Array.from(inputs);
    impl.encode(as32, out);
    assertSameBits(
      f,
      out,
      Float64Array.from(as32, (x) => nearestBits(f, x)),
      as32,
      "random f32",
    );
  });

  test(`${f.name}: NaN stays NaN (quiet), infinities and signed zeros are kept`, () => {
    // Signalling NaNs with a payload only in the low bits must not truncate to infinity.
    const nanBits = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000];
    const nans = new Float32Array(new Uint32Array(nanBits).buffer);
    const out = new Uint16Array(nans.length);
    impl.encode(nans, out);
    for (let i = 0; i < out.length; i++) {
      assert.ok(
        isNaNBits(f, out[i]!),
        `${f.name}: f32 bits 0x${nanBits[i]!.toString(16)} gave 0x${out[i]!.toString(16)}`,
      );
      const quietBit = 2 ** (f.mantissaBits - 1);
      assert.ok(
        Math.floor(out[i]! / quietBit) % 2 === 1,
        `${f.name}: NaN 0x${out[i]!.toString(16)} is not quiet`,
      );
      assert.equal(out[i]! >= f.signBit, nanBits[i]! >= 0x80000000, "NaN sign kept");
    }
    assert.ok(isNaNBits(f, impl.fromNumber(NaN)));
    for (const x of [Infinity, -Infinity, 0, -0]) {
      assert.equal(impl.fromNumber(x), nearestBits(f, x), `${f.name} ${x}`);
    }
  });

  test(`${f.name}: NaN payloads survive widening to float32 bit for bit`, () => {
    const nans = Uint16Array.from({ length: 2 * (f.signBit - f.infBits - 1) }, (_, i) =>
      i % 2 === 0 ? f.infBits + 1 + i / 2 : f.signBit + f.infBits + 1 + (i - 1) / 2,
    );
    const wide = new Float32Array(nans.length);
    impl.decode(nans, wide);
    const back = new Uint16Array(nans.length);
    impl.encode(wide, back);
    const quietBit = 2 ** (f.mantissaBits - 1);
    for (let i = 0; i < nans.length; i++) {
      // Narrowing may set the quiet bit, nothing else.
      const original = nans[i]!;
      const quiet = Math.floor(original / quietBit) % 2 === 1 ? original : original + quietBit;
      assert.equal(back[i], quiet, `${f.name} NaN 0x${original.toString(16)}`);
    }
  });

  test(`${f.name}: bulk calls refuse a destination of the wrong length`, () => {
    assert.throws(
      () => impl.encode(new Float32Array(4), new Uint16Array(3)),
      (e) => isPmaError(e, "INTERNAL"),
    );
    assert.throws(
      () => impl.decode(new Uint16Array(4), new Float64Array(5)),
      (e) => isPmaError(e, "INTERNAL"),
    );
  });
}

test("f64 -> bf16 does not round twice through float32", () => {
  // 1 + 2^-8 + 2^-40 is above the bf16 tie between 1 and 1 + 2^-7, but float32 rounds
  // it down onto the tie, which ties-to-even would then send to 1.
  const x = 1 + 2 ** -8 + 2 ** -40;
  assert.equal(Math.fround(x), 1 + 2 ** -8);
  assert.equal(bf16ToNumber(numberToBf16(x)), 1 + 2 ** -7);
  assert.equal(bf16ToNumber(numberToBf16(-x)), -(1 + 2 ** -7));
  const below = 1 + 2 ** -8 - 2 ** -40;
  assert.equal(bf16ToNumber(numberToBf16(below)), 1);
});

test("f64 -> f16 does not round twice through float32", () => {
  const x = 1 + 2 ** -11 + 2 ** -40;
  assert.equal(Math.fround(x), 1 + 2 ** -11);
  assert.equal(f16ToNumber(numberToF16(x)), 1 + 2 ** -10);
  // In the subnormal range too: the f16 tie between 0 and 2^-24 is 2^-25.
  assert.equal(f16ToNumber(numberToF16(2 ** -25 + 2 ** -60)), 2 ** -24);
  assert.equal(f16ToNumber(numberToF16(2 ** -25)), 0);
});

test("f16 agrees with an independent implementation (@petamoriken/float16) on random doubles", () => {
  const inputs = randomDoubles(100_000, 11, -27, 16);
  const out = new Uint16Array(inputs.length);
  encodeF16(inputs, out);
  for (let i = 0; i < inputs.length; i++) {
    const ours = f16ToNumber(out[i]!);
    const theirs = f16round(inputs[i]!);
    assert.ok(Object.is(ours, theirs), `f16(${inputs[i]}): ${ours} vs ${theirs}`);
  }
});

test("overflow boundaries are where IEEE puts them", () => {
  // bf16 max is (2 - 2^-7) * 2^127; the tie with the next step (2^127 * 2^-7 / 2) goes to infinity.
  const bf16Max = (2 - 2 ** -7) * 2 ** 127;
  const bf16Tie = bf16Max + 2 ** 119;
  assert.equal(bf16ToNumber(numberToBf16(bf16Max)), bf16Max);
  assert.equal(bf16ToNumber(numberToBf16(bf16Tie * (1 - 2 ** -52))), bf16Max);
  assert.equal(bf16ToNumber(numberToBf16(bf16Tie)), Infinity);
  assert.equal(bf16ToNumber(numberToBf16(-3.4e38)), -Infinity);
  assert.equal(bf16ToNumber(numberToBf16(1e300)), Infinity);
  assert.equal(f16ToNumber(numberToF16(65504)), 65504);
  assert.equal(f16ToNumber(numberToF16(65519.99)), 65504);
  assert.equal(f16ToNumber(numberToF16(65520)), Infinity);
  assert.equal(f16ToNumber(numberToF16(-65520)), -Infinity);
});
