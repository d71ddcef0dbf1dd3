import type { GemmKernels } from "./module.js";

/**
 * One thread's share of a gemm, in the form both the main thread and a worker run it:
 * addresses are byte offsets into the shared memory, strides are in bytes too, leading
 * dimensions in elements. Stored as 17 float64 slots so it crosses threads through a
 * SharedArrayBuffer with no message passing.
 */
export const JOB_SLOTS = 17;
export type Job = Float64Array;

export function writeJob(out: Float64Array, at: number, v: {
  transA: boolean; transB: boolean; M: number; N: number; K: number; alpha: number;
  a: number; lda: number; b: number; ldb: number; beta: number; c: number; ldc: number;
  batch: number; strideA: number; strideB: number; strideC: number;
}): void {
  out[at] = v.transA ? 1 : 0;
  out[at + 1] = v.transB ? 1 : 0;
  out[at + 2] = v.M;
  out[at + 3] = v.N;
  out[at + 4] = v.K;
  out[at + 5] = v.alpha;
  out[at + 6] = v.a;
  out[at + 7] = v.lda;
  out[at + 8] = v.b;
  out[at + 9] = v.ldb;
  out[at + 10] = v.beta;
  out[at + 11] = v.c;
  out[at + 12] = v.ldc;
  out[at + 13] = v.batch;
  out[at + 14] = v.strideA;
  out[at + 15] = v.strideB;
  out[at + 16] = v.strideC;
}

/** Register tile of the micro-kernel (gemm.wat) and cache blocking of the packed panels. */
export const MR = 4;
export const NR = 8;
/** kc x 8 B panel (8 KiB) stays in L1 while the micro-kernel sweeps the A block. */
export const KC = 256;
/** mc x kc packed A block (96 KiB) stays in L2. */
export const MC = 96;
/** kc x nc packed B block (2 MiB) stays in L3. */
export const NC = 2048;

/** Per-thread packing buffers (byte addresses in the shared memory). */
export interface Scratch {
  a: number;
  b: number;
  tile: number;
}

export const SCRATCH_BYTES = { a: MC * KC * 4, b: KC * NC * 4, tile: MR * NR * 4 };

/** Runs a job (K >= 1 and alpha != 0: the caller handles the scale-only case). */
export function runJob(k: GemmKernels, s: Scratch, j: Float64Array, at = 0): void {
  const tA = j[at]!, tB = j[at + 1]!, M = j[at + 2]!, N = j[at + 3]!, K = j[at + 4]!, alpha = j[at + 5]!;
  const lda = j[at + 7]!, ldb = j[at + 9]!, beta = j[at + 10]!, ldc = j[at + 12]!, batch = j[at + 13]!;
  let a = j[at + 6]!, b = j[at + 8]!, c = j[at + 11]!;
  for (let n = 0; n < batch; n++) {
    gemm(k, s, tA, tB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    a += j[at + 14]!;
    b += j[at + 15]!;
    c += j[at + 16]!;
  }
}

function gemm(k: GemmKernels, s: Scratch, tA: number, tB: number, M: number, N: number, K: number,
  alpha: number, a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number): void {
  if (M === 0 || N === 0) return;
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      k.pack_b(tB, b + 4 * (tB ? jc * ldb + pc : pc * ldb + jc), ldb, kc, nc, s.b);
      // Later K blocks add onto what the first one wrote.
      const be = pc === 0 ? beta : 1;
      for (let ic = 0; ic < M; ic += MC) {
        const mc = Math.min(MC, M - ic);
        k.pack_a(tA, a + 4 * (tA ? pc * lda + ic : ic * lda + pc), lda, mc, kc, s.a);
        k.macro(mc, nc, kc, s.a, s.b, c + 4 * (ic * ldc + jc), ldc, alpha, be, s.tile);
      }
    }
  }
}
