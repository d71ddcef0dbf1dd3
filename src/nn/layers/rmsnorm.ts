/**
 * RMSNorm as Hugging Face Llama: y = x * rsqrt(mean(x^2) + eps) * w, row by row over
 * T rows of width H. The reciprocal RMS per row is kept in `rstd` for the backward.
 * Sums run in double (JS numbers); storage is f32.
 */
export function rmsnormForward(
  y: Float32Array,
  rstd: Float32Array,
  x: Float32Array,
  w: Float32Array,
  T: number,
  H: number,
  eps: number,
): void {
  for (let t = 0; t < T; t++) {
    const o = t * H;
    let ss = 0;
    for (let i = 0; i < H; i++) {
      const v = x[o + i]!;
      ss += v * v;
    }
    const r = 1 / Math.sqrt(ss / H + eps);
    rstd[t] = r;
    for (let i = 0; i < H; i++) y[o + i] = x[o + i]! * r * w[i]!;
  }
}

/**
 * dx += r * (dy*w) - x * r^3 / H * sum(dy*w*x)  (added: dx is the residual stream's
 * gradient, which already holds the skip-connection term), dw += sum_t dy * x * r.
 */
export function rmsnormBackward(
  dx: Float32Array,
  dw: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rstd: Float32Array,
  T: number,
  H: number,
): void {
  // dw sums T terms per element: accumulate in double, round once into f32.
  if (dwAcc.length < H) dwAcc = new Float64Array(H);
  const acc = dwAcc;
  acc.fill(0, 0, H);
  for (let t = 0; t < T; t++) {
    const o = t * H;
    const r = rstd[t]!;
    let dot = 0;
    for (let i = 0; i < H; i++) dot += dy[o + i]! * w[i]! * x[o + i]!;
    const c = (dot * r * r * r) / H;
    for (let i = 0; i < H; i++) {
      const xi = x[o + i]!;
      const g = dy[o + i]!;
      dx[o + i]! += r * g * w[i]! - xi * c;
      acc[i]! += g * xi * r;
    }
  }
  for (let i = 0; i < H; i++) dw[i]! += acc[i]!;
}

/** Reused across calls (grown on demand) so the training step does not allocate. */
let dwAcc = new Float64Array(0);
