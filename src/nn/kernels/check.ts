import { PmaError } from "../../common/errors.js";
import type { BatchedGemmArgs, GemmArgs } from "./matmul.js";

/**
 * Argument checks shared by the compiled backends. The native and WebAssembly kernels
 * address raw memory, so a wrong leading dimension or an array that is too short must be
 * caught here, with a message that names the argument, before it becomes a crash or a
 * silent write into a neighbouring buffer.
 */

/** Elements from the first to one past the last element of a rows x cols matrix. */
export function matrixExtent(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

/** Extents of A, B and C over all batch items, in elements, from each offset. */
export interface GemmExtents {
  a: number;
  b: number;
  c: number;
}

export function gemmExtents(g: GemmArgs, batch = 1, strideA = 0, strideB = 0, strideC = 0): GemmExtents {
  const last = Math.max(batch - 1, 0);
  const empty = batch === 0 || g.M === 0 || g.N === 0;
  const noK = empty || g.K === 0;
  return {
    a: noK ? 0 : last * strideA + (g.transA ? matrixExtent(g.K, g.M, g.lda) : matrixExtent(g.M, g.K, g.lda)),
    b: noK ? 0 : last * strideB + (g.transB ? matrixExtent(g.N, g.K, g.ldb) : matrixExtent(g.K, g.N, g.ldb)),
    c: empty ? 0 : last * strideC + matrixExtent(g.M, g.N, g.ldc),
  };
}

function bad(what: string): never {
  throw new PmaError("RANGE_INVALID", `gemm: ${what}`);
}

function count(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > 0x7fffffff)
    bad(`${name}=${v} must be an integer in [0, 2^31)`);
}

/** Throws RANGE_INVALID unless every matrix the call touches lies inside its array. */
export function checkGemm(g: GemmArgs, batch = 1, strideA = 0, strideB = 0, strideC = 0): void {
  const { M, N, K, lda, ldb, ldc } = g;
  for (const [name, v] of [
    ["M", M],
    ["N", N],
    ["K", K],
    ["lda", lda],
    ["ldb", ldb],
    ["ldc", ldc],
    ["batch", batch],
    ["strideA", strideA],
    ["strideB", strideB],
    ["strideC", strideC],
    ["offA", g.offA ?? 0],
    ["offB", g.offB ?? 0],
    ["offC", g.offC ?? 0],
  ] as const) {
    count(name, v);
  }
  if (!Number.isFinite(g.alpha) || !Number.isFinite(g.beta))
    bad(`alpha=${g.alpha} and beta=${g.beta} must be finite`);
  const aCols = g.transA ? M : K;
  const bCols = g.transB ? K : N;
  if (lda < Math.max(1, aCols)) bad(`lda=${lda} is smaller than the ${aCols} columns of the stored A`);
  if (ldb < Math.max(1, bCols)) bad(`ldb=${ldb} is smaller than the ${bCols} columns of the stored B`);
  if (ldc < Math.max(1, N)) bad(`ldc=${ldc} is smaller than N=${N}`);
  const e = gemmExtents(g, batch, strideA, strideB, strideC);
  const fits = (name: string, arr: Float32Array, off: number, ext: number): void => {
    if (ext > 0 && off + ext > arr.length) {
      bad(
        `${name} needs elements [${off}, ${off + ext}) but has ${arr.length} (M=${M} N=${N} K=${K}, batch=${batch})`,
      );
    }
  };
  fits("A", g.A, g.offA ?? 0, e.a);
  fits("B", g.B, g.offB ?? 0, e.b);
  fits("C", g.C, g.offC ?? 0, e.c);
}

export function checkBatched(g: BatchedGemmArgs): void {
  checkGemm(g, g.batch, g.strideA, g.strideB, g.strideC);
}

/**
 * C = beta * C for calls with no product to add (K = 0 or alpha = 0), where BLAS
 * implementations disagree on whether NaN in C survives beta = 0. Here it never does.
 * Returns false when there is a product to compute.
 */
export function scaleOnly(g: GemmArgs, batch = 1, strideC = 0): boolean {
  if (g.K !== 0 && g.alpha !== 0) return false;
  const { M, N, C, ldc, beta } = g;
  const off = g.offC ?? 0;
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < M; i++) {
      const row = off + b * strideC + i * ldc;
      if (beta === 0) C.fill(0, row, row + N);
      else if (beta !== 1) for (let j = row; j < row + N; j++) C[j] = beta * C[j]!;
    }
  }
  return true;
}
