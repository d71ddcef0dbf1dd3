import { exp } from "./exp.js";

/**
 * SwiGLU activation on stacked [gate | up] rows: h[r, i] = silu(gu[r, i]) * gu[r, I + i],
 * silu(g) = g * sigmoid(g). The sigmoid is kept in `sig` [rows, I] for the backward:
 * one more activation in memory, one exp less per element there (the exp is most of
 * this layer's time).
 */
export function swigluForward(
  h: Float32Array,
  sig: Float32Array,
  gu: Float32Array,
  rows: number,
  I: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * 2 * I;
    const oh = r * I;
    for (let i = 0; i < I; i++) {
      const g = gu[o + i]!;
      const s = 1 / (1 + exp(-g));
      sig[oh + i] = s;
      h[oh + i] = g * s * gu[o + I + i]!;
    }
  }
}

/** dgu = [dh * u * silu'(g) | dh * silu(g)], silu'(g) = s * (1 + g * (1 - s)). */
export function swigluBackward(
  dgu: Float32Array,
  dh: Float32Array,
  gu: Float32Array,
  sig: Float32Array,
  rows: number,
  I: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * 2 * I;
    const oh = r * I;
    for (let i = 0; i < I; i++) {
      const g = gu[o + i]!;
      const u = gu[o + I + i]!;
      const s = sig[oh + i]!;
      const d = dh[oh + i]!;
      dgu[o + i] = d * u * s * (1 + g * (1 - s));
      dgu[o + I + i] = d * g * s;
    }
  }
}
