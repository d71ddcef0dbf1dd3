/**
 * The one matrix-multiply interface of the training engine. Row-major, BLAS-like:
 *
 *   C[M x N] = alpha * op(A) * op(B) + beta * C
 *
 * where op(A) is A (M x K, leading dimension lda) or, with transA, A^T stored as K x M.
 * `beta = 1` accumulates into C (gradient accumulation), `beta = 0` overwrites it
 * (C's old contents are ignored, even NaN).
 *
 * Buffers passed to a backend must come from `backend.alloc` (or be subarrays of such
 * buffers): the WebAssembly backend needs them to live in its shared memory so both
 * cores can work on them without copies. `offA/offB/offC` are element offsets into the
 * arrays, so callers can address slices without creating views in hot loops.
 */
export type BackendName = "blas" | "wasm" | "js";

export interface GemmArgs {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  A: Float32Array;
  offA?: number;
  lda: number;
  B: Float32Array;
  offB?: number;
  ldb: number;
  beta: number;
  C: Float32Array;
  offC?: number;
  ldc: number;
}

/** A batch of equally shaped GEMMs, matrix b at offsets off + b * stride (attention heads). */
export interface BatchedGemmArgs extends GemmArgs {
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
}

export interface MatmulBackend {
  readonly name: BackendName;
  /** Threads one large gemm is split over (1 when it runs on the calling thread only). */
  readonly threads?: number;
  /** A zero-filled f32 buffer this backend can compute on directly. */
  alloc(length: number): Float32Array;
  /**
   * Returns a buffer from `alloc` (the array itself, not a subarray) for reuse. Optional:
   * without it buffers live as long as the backend. The array must not be used afterwards.
   */
  free?(buffer: Float32Array): void;
  gemm(args: GemmArgs): void;
  gemmBatched(args: BatchedGemmArgs): void;
  /** Releases threads / workers so the process can exit. */
  dispose(): void;
}
