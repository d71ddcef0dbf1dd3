import { MR, NR, type WasmGemm } from "./driver.js";

/**
 * How the threads share one gemm: it is cut into `count` chunks that write disjoint parts
 * of C, and each thread claims the next unclaimed chunk until none are left. Claiming
 * (rather than a fixed half each) matters on a shared machine: when another process
 * holds one core, the other thread simply takes more chunks instead of waiting.
 */
export interface Plan {
  /** 0: whole gemm, 1: batch items, 2: rows of C, 3: columns of C. */
  mode: 0 | 1 | 2 | 3;
  /** Items, rows or columns per chunk. */
  size: number;
  count: number;
}

/**
 * Below this many multiply-adds a gemm stays on the calling thread: waking a worker
 * (futex wake, cold caches, ~20-50 us) costs more than the work it would take over.
 */
export const PARALLEL_MIN_MACS = 1 << 18;
/** Chunks per thread: enough to rebalance when a core is busy, few enough that each
 * chunk's repacking of the shared operand stays a small fraction of its work. */
const CHUNKS_PER_THREAD = 4;

export function plan(g: WasmGemm, threads: number): Plan {
  const macs = g.M * g.N * g.K * g.batch;
  if (threads <= 1 || macs < PARALLEL_MIN_MACS) return { mode: 0, size: 1, count: 1 };
  const cItemBytes = 4 * ((g.M - 1) * g.ldc + g.N);
  // Batch items only when their C blocks do not overlap (strideC = 0 accumulates).
  if (g.batch >= threads && g.strideC >= cItemBytes) {
    const size = Math.max(1, Math.floor(g.batch / (threads * CHUNKS_PER_THREAD)));
    return { mode: 1, size, count: Math.ceil(g.batch / size) };
  }
  const want = threads * CHUNKS_PER_THREAD;
  // Cut the longer side of C, in whole register tiles so that only the last chunk has edges.
  if (g.M >= g.N ? g.M >= MR * threads : g.N < NR * threads) {
    const size = Math.max(MR, Math.ceil(g.M / want / MR) * MR);
    return { mode: 2, size, count: Math.ceil(g.M / size) };
  }
  const size = Math.max(NR, Math.ceil(g.N / want / NR) * NR);
  return { mode: 3, size, count: Math.ceil(g.N / size) };
}

/** The gemm of chunk `i` of plan p. */
export function chunk(g: WasmGemm, p: Plan, i: number): WasmGemm {
  const start = i * p.size;
  switch (p.mode) {
    case 0:
      return g;
    case 1: {
      const batch = Math.min(p.size, g.batch - start);
      return {
        ...g,
        batch,
        a: g.a + start * g.strideA,
        b: g.b + start * g.strideB,
        c: g.c + start * g.strideC,
      };
    }
    case 2: {
      const M = Math.min(p.size, g.M - start);
      return { ...g, M, a: g.a + 4 * (g.transA ? start : start * g.lda), c: g.c + 4 * start * g.ldc };
    }
    case 3: {
      const N = Math.min(p.size, g.N - start);
      return { ...g, N, b: g.b + 4 * (g.transB ? start * g.ldb : start), c: g.c + 4 * start };
    }
  }
}
