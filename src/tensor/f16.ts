/**
 * IEEE 754 binary16 (1 sign, 5 exponent, 10 mantissa bits; largest finite 65504).
 * Widening is exact; narrowing rounds to nearest, ties to even, like torch and numpy.
 * Node 20 has neither Float16Array nor Math.f16round, hence the bit work here. The bulk
 * loops mirror bf16.ts rather than sharing a loop that takes the kernel as a function:
 * one call site per kernel keeps it inlined, which is most of the speed.
 */
import { requireLength } from "./check.js";
import { f64ToF32BitsOdd, numberToF32BitsOdd, ODD_CHUNK } from "./round-to-odd.js";

/** Nearest-even rounding of float32 bits to f16 bits; NaN stays a (quiet) NaN. */
export function f16FromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x47800000) {
    // |x| >= 65536 overflows; NaN keeps its top payload bits and gets the quiet bit.
    return sign | (a > 0x7f800000 ? 0x7e00 | ((a >>> 13) & 0x03ff) : 0x7c00);
  }
  if (a >= 0x38800000) {
    // Normal in f16 (|x| >= 2^-14): rebias the exponent (127 -> 15) and round off 13
    // mantissa bits; a carry into the exponent is the correct rounding, up to infinity
    // for 65520 <= |x| < 65536.
    return sign | ((a - 0x38000000 + 0x0fff + ((a >>> 13) & 1)) >>> 13);
  }
  // Subnormal in f16: the result is |x| / 2^-24 rounded to an integer. With
  // |x| = m * 2^(e - 150), that is m >> (126 - e). Below 2^-25 everything rounds to 0,
  // and so do all float32 subnormals.
  const e = a >>> 23;
  if (e < 102) return sign;
  const m = (a & 0x007fffff) | 0x00800000;
  const shift = 126 - e;
  const q = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  // q + 1 may reach 0x400, the smallest normal, whose encoding is exactly that.
  return sign | (rest > half || (rest === half && (q & 1) === 1) ? q + 1 : q);
}

/** float32 bits of every f16 pattern: widening is one table lookup per element. */
const F16_TO_F32_BITS = buildWideningTable();

function buildWideningTable(): Uint32Array {
  const table = new Uint32Array(65536);
  const f = new Float32Array(1);
  const fBits = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x03ff;
    let bits: number;
    if (e === 31) bits = 0x7f800000 | (m << 13);
    else if (e !== 0) bits = ((e + 112) << 23) | (m << 13);
    else {
      // f16 subnormals are normal in float32; let the FPU normalise m * 2^-24.
      f[0] = m * 2 ** -24;
      bits = fBits[0]!;
    }
    table[h] = (sign | bits) >>> 0;
  }
  return table;
}

const oneF32 = new Float32Array(1);
const oneU32 = new Uint32Array(oneF32.buffer);

/** The value of an f16 bit pattern (exact). */
export function f16ToNumber(bits: number): number {
  oneU32[0] = F16_TO_F32_BITS[bits & 0xffff]!;
  return oneF32[0]!;
}

/** The f16 bit pattern nearest to x, rounded once from x itself (no double rounding). */
export function numberToF16(x: number): number {
  return f16FromF32Bits(numberToF32BitsOdd(x));
}

const chunkF32 = new Float32Array(ODD_CHUNK);
const chunkU32 = new Uint32Array(chunkF32.buffer);

/** Widens f16 bit patterns to floats; dst must have src.length elements. */
export function decodeF16(src: Uint16Array, dst: Float32Array | Float64Array): void {
  const n = src.length;
  requireLength(dst.length, n, "decodeF16");
  if (dst instanceof Float32Array) {
    // Writing bits, not numbers, keeps NaN payloads intact.
    const out = new Uint32Array(dst.buffer, dst.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = F16_TO_F32_BITS[src[i]!]!;
    return;
  }
  for (let start = 0; start < n; start += ODD_CHUNK) {
    const m = Math.min(ODD_CHUNK, n - start);
    for (let i = 0; i < m; i++) chunkU32[i] = F16_TO_F32_BITS[src[start + i]!]!;
    dst.set(chunkF32.subarray(0, m), start);
  }
}

/** Narrows floats to f16 bit patterns (nearest, ties to even); dst must have src.length elements. */
export function encodeF16(src: Float32Array | Float64Array, dst: Uint16Array): void {
  const n = src.length;
  requireLength(dst.length, n, "encodeF16");
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = f16FromF32Bits(bits[i]!);
    return;
  }
  for (let start = 0; start < n; start += ODD_CHUNK) {
    const m = Math.min(ODD_CHUNK, n - start);
    const bits = f64ToF32BitsOdd(src, start, m);
    for (let i = 0; i < m; i++) dst[start + i] = f16FromF32Bits(bits[i]!);
  }
}
