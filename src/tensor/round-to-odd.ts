/**
 * float64 -> float32 bit patterns, rounded to odd.
 *
 * Rounding a float64 to bf16/f16 by way of a plain (ties-to-even) float32 rounds twice,
 * and the first rounding can create a tie that the second then breaks the wrong way
 * (e.g. 1 + 2^-8 + 2^-40 rounds to 1 + 2^-8 in float32, then to 1 in bf16, although
 * the nearest bf16 is 1 + 2^-7). Rounding the intermediate to odd instead (truncate,
 * then set the last bit when anything was dropped) keeps the information "strictly
 * above the tie", so one ties-to-even rounding of the float32 bits afterwards is
 * exact, provided float32 carries at least two more bits than the target; it carries
 * 16 more than bf16 and 13 more than f16, subnormals included.
 */

/** Elements per pass; the scratch stays in L1/L2 cache between the two passes. */
export const ODD_CHUNK = 16384;

const chunkF32 = new Float32Array(ODD_CHUNK);
const chunkU32 = new Uint32Array(chunkF32.buffer);

/**
 * Rounds src[start .. start+n) (n <= ODD_CHUNK) to float32-to-odd and returns a
 * scratch view holding the bit patterns; it is overwritten by the next call.
 * NaN stays NaN; values beyond the float32 range become infinity, which is also the
 * correct result for every narrower target.
 */
export function f64ToF32BitsOdd(src: Float64Array, start: number, n: number): Uint32Array {
  for (let i = 0; i < n; i++) {
    const x = src[start + i]!;
    const y = Math.fround(x);
    chunkF32[i] = y;
    // Branch-free on purpose: whether float32 rounded up or down is a coin toss for
    // real data, and a mispredicted branch per element costs more than the arithmetic.
    // Rounded away from zero: step back to the truncation (decrementing the magnitude
    // bits moves toward zero for either sign). Inexact: set the last bit. NaN compares
    // false to everything, so it only gains a low payload bit and stays NaN.
    chunkU32[i] = (chunkU32[i]! - +(Math.abs(y) > Math.abs(x))) | +(y !== x);
  }
  return chunkU32;
}

const oneF64 = new Float64Array(1);

/** The scalar form of f64ToF32BitsOdd. */
export function numberToF32BitsOdd(x: number): number {
  oneF64[0] = x;
  return f64ToF32BitsOdd(oneF64, 0, 1)[0]!;
}
