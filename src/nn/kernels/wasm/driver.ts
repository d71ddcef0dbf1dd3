import type { GemmKernels } from "./module.js";

/** A gemm in the wasm backend's terms: byte addresses and byte strides, element leading dims. */
export interface WasmGemm {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  a: number;
  lda: number;
  b: number;
  ldb: number;
  beta: number;
  c: number;
  ldc: number;
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
}

/** Register tile of the micro-kernel (wasm/gemm/gemm.wat) and cache blocking of the packed panels. */
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

/** Runs every batch item of g (K >= 1 and alpha != 0: the caller handles the scale-only case). */
export function runGemm(k: GemmKernels, s: Scratch, g: WasmGemm): void {
  const tA = g.transA ? 1 : 0,
    tB = g.transB ? 1 : 0;
  for (let n = 0; n < g.batch; n++) {
    one(
      k,
      s,
      tA,
      tB,
      g.M,
      g.N,
      g.K,
      g.alpha,
      g.a + n * g.strideA,
      g.lda,
      g.b + n * g.strideB,
      g.ldb,
      g.beta,
      g.c + n * g.strideC,
      g.ldc,
    );
  }
}

/** GotoBLAS loop order: B blocks (jc, pc) packed once, A blocks (ic) packed per B block. */
function one(
  k: GemmKernels,
  s: Scratch,
  tA: number,
  tB: number,
  M: number,
  N: number,
  K: number,
  alpha: number,
  a: number,
  lda: number,
  b: number,
  ldb: number,
  beta: number,
  c: number,
  ldc: number,
): void {
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
