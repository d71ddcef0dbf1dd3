/**
 * Rotary position embeddings as Hugging Face Llama: the head vector is split in halves
 * (rotate_half), and element i pairs with i + d/2 at angle pos * theta^(-2i/d).
 *
 * Tables follow HF's float32 arithmetic (inv_freq, the angle product and cos/sin are
 * all float32 there), so our rotations match transformers' to an ulp rather than
 * drifting by ~1e-5 at long positions.
 */
export interface RopeTables {
  /** [maxPos, headDim / 2] row-major. */
  cos: Float32Array;
  sin: Float32Array;
  half: number;
  maxPos: number;
}

export function ropeTables(maxPos: number, headDim: number, theta: number): RopeTables {
  const half = headDim / 2;
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  const f = Math.fround;
  for (let i = 0; i < half; i++) {
    const invFreq = f(1 / f(Math.pow(theta, f((2 * i) / headDim))));
    for (let p = 0; p < maxPos; p++) {
      const angle = f(p * invFreq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin, half, maxPos };
}

/**
 * dst[dOff..+d] = rotate(src[sOff..+d]) by `sign` * the angle of `pos`; dst and src may
 * alias. The rotation is orthogonal, so its backward is the rotation by the negative
 * angle: one loop serves both. Negating sin is exact in floating point, so sign -1 gives
 * bit-for-bit the results of a separately written transpose.
 */
export function ropeRotate(
  dst: Float32Array,
  dOff: number,
  src: Float32Array,
  sOff: number,
  tab: RopeTables,
  pos: number,
  sign: 1 | -1,
): void {
  const half = tab.half;
  const c = tab.cos;
  const s = tab.sin;
  const base = pos * half;
  for (let i = 0; i < half; i++) {
    const a = src[sOff + i]!;
    const b = src[sOff + half + i]!;
    const ci = c[base + i]!;
    const si = sign * s[base + i]!;
    dst[dOff + i] = a * ci - b * si;
    dst[dOff + half + i] = b * ci + a * si;
  }
}

/** dst[dOff..+d] = rotate(src[sOff..+d], pos). dst and src may alias. */
export function ropeForward(
  dst: Float32Array,
  dOff: number,
  src: Float32Array,
  sOff: number,
  tab: RopeTables,
  pos: number,
): void {
  ropeRotate(dst, dOff, src, sOff, tab, pos, 1);
}

/** The transpose (= inverse) rotation, which is the backward of ropeForward. */
export function ropeBackward(
  dst: Float32Array,
  dOff: number,
  src: Float32Array,
  sOff: number,
  tab: RopeTables,
  pos: number,
): void {
  ropeRotate(dst, dOff, src, sOff, tab, pos, -1);
}
