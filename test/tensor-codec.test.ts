import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFloats, encodeFloats, floatDTypeBytes } from "../src/tensor/codec.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { isPmaError } from "../src/common/errors.js";
import { BF16, F16, nearestBits, randomDoubles, valueOf } from "./helpers/float-reference.js";

const DTYPES: FloatDType[] = ["BF16", "F16", "F32", "F64"];

/**
 * Little-endian bytes written through DataView, the spec-level reference for how
 * safetensors lays out each dtype, with the narrow formats rounded by the reference model.
 */
function referenceBytes(values: Float64Array, dtype: FloatDType): Uint8Array {
  const size = floatDTypeBytes(dtype);
  const dv = new DataView(new ArrayBuffer(values.length * size));
  values.forEach((x, i) => {
    if (dtype === "F64") dv.setFloat64(i * 8, x, true);
    else if (dtype === "F32") dv.setFloat32(i * 4, x, true);
    else dv.setUint16(i * 2, nearestBits(dtype === "BF16" ? BF16 : F16, x), true);
  });
  return new Uint8Array(dv.buffer);
}

/** The same bytes at an odd offset of a bigger Buffer, as a pooled read could hand them over. */
function unaligned(bytes: Uint8Array): Buffer {
  const host = Buffer.alloc(bytes.length + 3);
  const view = host.subarray(3);
  view.set(bytes);
  return view;
}

function readBack(bytes: Uint8Array, dtype: FloatDType): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / floatDTypeBytes(dtype);
  return Array.from({ length: n }, (_, i) => {
    if (dtype === "F64") return dv.getFloat64(i * 8, true);
    if (dtype === "F32") return dv.getFloat32(i * 4, true);
    return valueOf(dtype === "BF16" ? BF16 : F16, dv.getUint16(i * 2, true));
  });
}

const SAMPLE = randomDoubles(5000, 3, -20, 15);

for (const dtype of DTYPES) {
  test(`${dtype}: decode reads little-endian bytes, aligned or not, into f32 and f64`, () => {
    const bytes = referenceBytes(SAMPLE, dtype);
    const expected = readBack(bytes, dtype);
    for (const input of [bytes, unaligned(bytes)]) {
      const out64 = new Float64Array(SAMPLE.length);
      decodeFloats(input, dtype, out64);
      assert.deepEqual(Array.from(out64), expected);
      const out32 = new Float32Array(SAMPLE.length);
      decodeFloats(input, dtype, out32);
      // Only F64 holds more than float32; it rounds to nearest even like any float32 store.
      assert.deepEqual(Array.from(out32), expected.map(Math.fround));
    }
  });

  test(`${dtype}: encode writes the nearest value as little-endian bytes, aligned or not`, () => {
    const expected = referenceBytes(SAMPLE, dtype);
    for (const offset of [0, 1]) {
      const host = new Uint8Array(expected.length + offset);
      const out = host.subarray(offset);
      encodeFloats(SAMPLE, dtype, out);
      assert.deepEqual(out, expected);
    }
    // From float32 the input is what float32 holds, so round that instead.
    const as32 = Float32Array.from(SAMPLE);
    const out = new Uint8Array(expected.length);
    encodeFloats(as32, dtype, out);
    assert.deepEqual(out, referenceBytes(Float64Array.from(as32), dtype));
  });

  test(`${dtype}: a buffer of the wrong size is refused before anything is written`, () => {
    const size = floatDTypeBytes(dtype);
    const out = new Float32Array(4).fill(7);
    assert.throws(
      () => decodeFloats(new Uint8Array(3 * size), dtype, out),
      (e) => isPmaError(e, "INTERNAL"),
    );
    assert.deepEqual(Array.from(out), [7, 7, 7, 7]);
    assert.throws(
      () => encodeFloats(new Float64Array(4), dtype, new Uint8Array(4 * size + 1)),
      (e) => isPmaError(e, "INTERNAL"),
    );
  });
}

test("half-width dtypes survive decode then encode bit for bit (NaNs excepted)", () => {
  for (const [dtype, format] of [
    ["BF16", BF16],
    ["F16", F16],
  ] as const) {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i).filter(
      (b) => !Number.isNaN(valueOf(format, b)),
    );
    const bytes = new Uint8Array(bits.buffer);
    for (const wide of [new Float32Array(bits.length), new Float64Array(bits.length)]) {
      decodeFloats(bytes, dtype, wide);
      const back = new Uint8Array(bytes.length);
      encodeFloats(wide, dtype, back);
      assert.deepEqual(back, bytes, `${dtype} via ${wide.constructor.name}`);
    }
  }
});

test("zero-element tensors convert to nothing", () => {
  for (const dtype of DTYPES) {
    decodeFloats(new Uint8Array(0), dtype, new Float32Array(0));
    encodeFloats(new Float64Array(0), dtype, new Uint8Array(0));
  }
});
