import { availableParallelism } from "node:os";
import { PmaError } from "../../common/errors.js";

/**
 * Threads a backend splits one gemm over: PMA_THREADS when set, else one per core the
 * process may use. (The OpenBLAS backend also honours OPENBLAS_NUM_THREADS, which wins.)
 */
export function defaultThreads(): number {
  const env = process.env.PMA_THREADS;
  if (env === undefined || env === "") return Math.max(1, availableParallelism());
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1 || n > 256) {
    throw new PmaError("USAGE", `PMA_THREADS=${env} is not a thread count: use an integer from 1 to 256`);
  }
  return n;
}
