/**
 * bfloat16: the top 16 bits of a float32 (1 sign, 8 exponent, 7 mantissa bits).
 * Widening is exact; narrowing rounds to nearest, ties to even, as torch does, so a
 * merge written here matches one written by `tensor.to(torch.bfloat16)`.
 */
import { requireLength } from "./check.js";
import { f64ToF32BitsOdd, numberToF32BitsOdd, ODD_CHUNK } from "./round-to-odd.js";

/** Nearest-even rounding of float32 bits to bf16 bits; NaN stays a (quiet) NaN. */
export function bf16FromF32Bits(u: number): number {
  // Keep sign and top payload bits and force the quiet bit: plain truncation of a
  // NaN whose payload sits only in the low 16 bits would produce infinity.
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x0040;
  // A carry out of the mantissa bumps the exponent, which is the correct rounding,
  // including past the largest finite value into infinity.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const oneF32 = new Float32Array(1);
const oneU32 = new Uint32Array(oneF32.buffer);

/** The value of a bf16 bit pattern (exact). */
export function bf16ToNumber(bits: number): number {
  oneU32[0] = (bits & 0xffff) << 16;
  return oneF32[0]!;
}

/** The bf16 bit pattern nearest to x, rounded once from x itself (no double rounding). */
export function numberToBf16(x: number): number {
  return bf16FromF32Bits(numberToF32BitsOdd(x));
}

const chunkF32 = new Float32Array(ODD_CHUNK);
const chunkU32 = new Uint32Array(chunkF32.buffer);

/** Widens bf16 bit patterns to floats; dst must have src.length elements. */
export function decodeBf16(src: Uint16Array, dst: Float32Array | Float64Array): void {
  const n = src.length;
  requireLength(dst.length, n, "decodeBf16");
  if (dst instanceof Float32Array) {
    // Writing bits, not numbers, keeps NaN payloads intact.
    const out = new Uint32Array(dst.buffer, dst.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = src[i]! << 16;
    return;
  }
  for (let start = 0; start < n; start += ODD_CHUNK) {
    const m = Math.min(ODD_CHUNK, n - start);
    for (let i = 0; i < m; i++) chunkU32[i] = src[start + i]! << 16;
    dst.set(chunkF32.subarray(0, m), start);
  }
}

/** Narrows floats to bf16 bit patterns (nearest, ties to even); dst must have src.length elements. */
export function encodeBf16(src: Float32Array | Float64Array, dst: Uint16Array): void {
  const n = src.length;
  requireLength(dst.length, n, "encodeBf16");
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = bf16FromF32Bits(bits[i]!);
    return;
  }
  for (let start = 0; start < n; start += ODD_CHUNK) {
    const m = Math.min(ODD_CHUNK, n - start);
    const bits = f64ToF32BitsOdd(src, start, m);
    for (let i = 0; i < m; i++) dst[start + i] = bf16FromF32Bits(bits[i]!);
  }
}
