import { MR, NR } from "./driver.js";

/** A gemm in the wasm backend's terms: byte addresses and byte strides, element leading dims. */
export interface WasmGemm {
  transA: boolean; transB: boolean; M: number; N: number; K: number; alpha: number;
  a: number; lda: number; b: number; ldb: number; beta: number; c: number; ldc: number;
  batch: number; strideA: number; strideB: number; strideC: number;
}

/**
 * Below this many multiply-adds a gemm stays on the calling thread: waking a worker
 * (futex wake + its cache misses, ~20-50 us) costs more than the work it would take over.
 */
export const PARALLEL_MIN_MACS = 1 << 18;

/**
 * Splits one gemm into at most `threads` independent parts that write disjoint parts of C.
 * Whole batch items when there are enough of them and their C blocks do not overlap;
 * otherwise rows of C (in multiples of the micro-kernel's 4) when M >= N, else columns
 * (multiples of 8), so every part but the last keeps full register tiles.
 */
export function partition(g: WasmGemm, threads: number): WasmGemm[] {
  const macs = g.M * g.N * g.K * g.batch;
  if (threads <= 1 || macs < PARALLEL_MIN_MACS) return [g];
  const cItemBytes = 4 * ((g.M - 1) * g.ldc + g.N);
  if (g.batch >= threads && g.strideC >= cItemBytes) {
    const parts: WasmGemm[] = [];
    let done = 0;
    for (let t = 0; t < threads; t++) {
      const n = Math.floor((g.batch - done) / (threads - t));
      if (n === 0) continue;
      parts.push({ ...g, batch: n, a: g.a + done * g.strideA, b: g.b + done * g.strideB, c: g.c + done * g.strideC });
      done += n;
    }
    return parts;
  }
  const byRows = g.M >= g.N ? g.M >= MR * threads : g.N < NR * threads;
  const total = byRows ? g.M : g.N;
  const unit = byRows ? MR : NR;
  const units = Math.ceil(total / unit);
  const parts: WasmGemm[] = [];
  let start = 0;
  for (let t = 0; t < threads && start < total; t++) {
    const len = Math.min(total - start, Math.ceil((units - start / unit) / (threads - t)) * unit);
    if (byRows) {
      const a = g.a + 4 * (g.transA ? start : start * g.lda);
      parts.push({ ...g, M: len, a, c: g.c + 4 * start * g.ldc });
    } else {
      const b = g.b + 4 * (g.transB ? start * g.ldb : start);
      parts.push({ ...g, N: len, b, c: g.c + 4 * start });
    }
    start += len;
  }
  return parts;
}
