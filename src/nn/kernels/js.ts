import type { BatchedGemmArgs, GemmArgs, MatmulBackend } from "./matmul.js";

/**
 * Plain TypeScript reference GEMM: the obviously-correct loops the other backends are
 * tested against. Slow (a few GFLOP/s) but exact in the order it sums (k ascending).
 */
export function gemmReference(a: GemmArgs): void {
  const { transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc } = a;
  const oA = a.offA ?? 0;
  const oB = a.offB ?? 0;
  const oC = a.offC ?? 0;
  const row = new Float32Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const aik = transA ? A[oA + k * lda + i]! : A[oA + i * lda + k]!;
      if (transB) {
        for (let j = 0; j < N; j++) row[j]! += aik * B[oB + j * ldb + k]!;
      } else {
        const base = oB + k * ldb;
        for (let j = 0; j < N; j++) row[j]! += aik * B[base + j]!;
      }
    }
    const cBase = oC + i * ldc;
    for (let j = 0; j < N; j++) {
      C[cBase + j] = beta === 0 ? alpha * row[j]! : alpha * row[j]! + beta * C[cBase + j]!;
    }
  }
}

export function createJsBackend(): MatmulBackend {
  return {
    name: "js",
    alloc: (n) => new Float32Array(n),
    gemm: gemmReference,
    gemmBatched(a: BatchedGemmArgs) {
      for (let b = 0; b < a.batch; b++) {
        gemmReference({
          ...a,
          offA: (a.offA ?? 0) + b * a.strideA,
          offB: (a.offB ?? 0) + b * a.strideB,
          offC: (a.offC ?? 0) + b * a.strideC,
        });
      }
    },
    dispose() {},
  };
}
