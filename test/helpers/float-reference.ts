/**
 * A slow, obviously-correct model of a small binary float format, built from the IEEE
 * 754 definitions with float64 arithmetic only (no bit tricks shared with src/), used
 * as the reference the fast conversions are tested against.
 */
import { rng } from "./fixtures.js";

export interface FloatFormat {
  name: string;
  exponentBits: number;
  mantissaBits: number;
  /** Every non-negative finite value, indexed by its bit pattern (ascending). */
  values: Float64Array;
  /** Bit pattern of +infinity; negative patterns add signBit. */
  infBits: number;
  signBit: number;
}

export function makeFormat(name: string, exponentBits: number, mantissaBits: number): FloatFormat {
  const bias = 2 ** (exponentBits - 1) - 1;
  const maxExponentField = 2 ** exponentBits - 1;
  const values = new Float64Array(maxExponentField * 2 ** mantissaBits);
  let i = 0;
  for (let e = 0; e < maxExponentField; e++) {
    for (let m = 0; m < 2 ** mantissaBits; m++) {
      values[i++] =
        e === 0 ? m * 2 ** (1 - bias - mantissaBits) : (1 + m / 2 ** mantissaBits) * 2 ** (e - bias);
    }
  }
  return {
    name,
    exponentBits,
    mantissaBits,
    values,
    infBits: maxExponentField * 2 ** mantissaBits,
    signBit: 2 ** (exponentBits + mantissaBits),
  };
}

export const BF16 = makeFormat("bf16", 8, 7);
export const F16 = makeFormat("f16", 5, 10);

/** The value of a bit pattern: NaN for NaN patterns. */
export function valueOf(f: FloatFormat, bits: number): number {
  const sign = bits >= f.signBit ? -1 : 1;
  const magnitude = bits % f.signBit;
  if (magnitude > f.infBits) return NaN;
  if (magnitude === f.infBits) return sign * Infinity;
  return sign * f.values[magnitude]!;
}

export function isNaNBits(f: FloatFormat, bits: number): boolean {
  return bits % f.signBit > f.infBits;
}

/** The pattern nearest to x, ties to the even pattern, per IEEE 754 roundTiesToEven. Not for NaN. */
export function nearestBits(f: FloatFormat, x: number): number {
  const negative = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  const v = f.values;
  const last = v.length - 1;
  // Past the largest finite value, IEEE rounds as if the exponent range were unbounded:
  // the next value would be max + ulp(max), so the tie sits at max + ulp(max)/2 and goes
  // to the even side, which is infinity (max has an odd mantissa).
  const overflowTie = v[last]! + (v[last]! - v[last - 1]!) / 2;
  let bits: number;
  if (a >= overflowTie) bits = f.infBits;
  else if (a >= v[last]!) bits = last;
  else {
    let lo = 0;
    let hi = last;
    // invariant: v[lo] <= a < v[hi]
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (v[mid]! <= a) lo = mid;
      else hi = mid;
    }
    // The midpoint of two values of a narrow format is exact in float64.
    const half = (v[lo]! + v[hi]!) / 2;
    if (a < half) bits = lo;
    else if (a > half) bits = hi;
    else bits = lo % 2 === 0 ? lo : hi;
  }
  return negative ? bits + f.signBit : bits;
}

/** Doubles spread over every exponent a narrow format cares about, both signs. */
export function randomDoubles(count: number, seed: number, minExp: number, maxExp: number): Float64Array {
  const next = rng(seed);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const e = minExp + Math.floor(next() * (maxExp - minExp + 1));
    // Two draws give a mantissa with more bits than float32 holds, so the values
    // exercise rounding from genuinely float64 inputs.
    const mantissa = 1 + next() + next() * 2 ** -32;
    out[i] = (next() < 0.5 ? -1 : 1) * Math.min(mantissa, 2 - 2 ** -52) * 2 ** e;
  }
  return out;
}
