import type { MatmulBackend } from "../kernels/matmul.js";

/**
 * y[T, out] = x[T, in] @ W^T, with W stored [out, in] like torch.nn.Linear (no bias:
 * Llama and Mixtral have none). Row offsets let MoE experts work on slices of a
 * gathered buffer without views.
 */
export function linearForward(
  backend: MatmulBackend,
  y: Float32Array,
  x: Float32Array,
  w: Float32Array,
  T: number,
  inF: number,
  outF: number,
  xOff = 0,
  yOff = 0,
): void {
  if (T === 0) return;
  backend.gemm({
    transA: false,
    transB: true,
    M: T,
    N: outF,
    K: inF,
    alpha: 1,
    A: x,
    offA: xOff,
    lda: inF,
    B: w,
    ldb: inF,
    beta: 0,
    C: y,
    offC: yOff,
    ldc: outF,
  });
}

/**
 * dW[out, in] += dy^T @ x (accumulates: gradient accumulation over micro-batches and
 * tied weights), and dx = dy @ W (overwritten, or added when `accumulateDx`, which
 * folds a residual connection into the same GEMM). dx may be null when the input is
 * not differentiable (nothing upstream needs it).
 */
export function linearBackward(
  backend: MatmulBackend,
  dx: Float32Array | null,
  dw: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  T: number,
  inF: number,
  outF: number,
  accumulateDx = false,
  xOff = 0,
  dyOff = 0,
  dxOff = 0,
): void {
  if (T === 0) return;
  backend.gemm({
    transA: true,
    transB: false,
    M: outF,
    N: inF,
    K: T,
    alpha: 1,
    A: dy,
    offA: dyOff,
    lda: outF,
    B: x,
    offB: xOff,
    ldb: inF,
    beta: 1,
    C: dw,
    ldc: inF,
  });
  if (dx === null) return;
  backend.gemm({
    transA: false,
    transB: false,
    M: T,
    N: inF,
    K: outF,
    alpha: 1,
    A: dy,
    offA: dyOff,
    lda: outF,
    B: w,
    ldb: inF,
    beta: accumulateDx ? 1 : 0,
    C: dx,
    offC: dxOff,
    ldc: inF,
  });
}
