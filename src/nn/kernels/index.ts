import { PmaError, isPmaError } from "../../common/errors.js";
import { BLAS_HINT, createBlasBackend } from "./blas.js";
import { createJsBackend } from "./js.js";
import type { BackendName, MatmulBackend } from "./matmul.js";
import { createWasmBackend } from "./wasm/backend.js";

export type { BackendName, BatchedGemmArgs, GemmArgs, MatmulBackend } from "./matmul.js";
export { gemmReference, createJsBackend } from "./js.js";
export { defaultThreads } from "./threads.js";
export { BLAS_HINT, createBlasBackend, type BlasBackend, type BlasOptions } from "./blas.js";
export { createWasmBackend, type WasmBackend, type WasmOptions } from "./wasm/backend.js";

const NAMES: readonly BackendName[] = ["blas", "wasm", "js"];

function parseName(v: string, from: string): BackendName {
  const n = v.trim().toLowerCase();
  if ((NAMES as readonly string[]).includes(n)) return n as BackendName;
  throw new PmaError("USAGE", `${from}=${v} is not a matmul backend: use one of ${NAMES.join(", ")}`);
}

async function create(name: BackendName): Promise<MatmulBackend> {
  switch (name) {
    case "blas":
      return createBlasBackend();
    case "wasm":
      return createWasmBackend();
    case "js":
      return createJsBackend();
  }
}

/**
 * The matmul backend to train with: `name` if given, else PMA_BACKEND if set, else the
 * fastest that works here (blas, then wasm, then js). A backend that was asked for by
 * name and cannot start is a BACKEND_UNAVAILABLE error saying how to get it. Each call
 * makes a new backend; `dispose()` it when done.
 */
export async function getBackend(name?: BackendName): Promise<MatmulBackend> {
  const env = process.env.PMA_BACKEND;
  const forced = name ?? (env === undefined || env === "" ? undefined : parseName(env, "PMA_BACKEND"));
  if (forced !== undefined) return create(forced);
  for (const n of NAMES) {
    try {
      return await create(n);
    } catch (e) {
      if (!isPmaError(e, "BACKEND_UNAVAILABLE")) throw e;
    }
  }
  // createJsBackend cannot fail; this is for the type checker.
  return createJsBackend();
}

export interface BackendDescription {
  name: BackendName;
  threads: number;
  /** What runs the math, e.g. the OpenBLAS build and the CPU kernel it chose. */
  detail: string;
  /** How to get the faster backend, when this one is not blas. */
  hint?: string;
  /** One line for logs and reports. */
  summary: string;
}

export function describeBackend(b: MatmulBackend): BackendDescription {
  const threads = b.threads ?? 1;
  const detail =
    b.name === "blas"
      ? "config" in b && typeof b.config === "string"
        ? b.config
        : "OpenBLAS"
      : b.name === "wasm"
        ? "WebAssembly SIMD128 f32x4 kernel, shared memory"
        : "plain TypeScript reference loops";
  const hint = b.name === "blas" ? undefined : `for a faster matmul backend, ${BLAS_HINT}`;
  const summary =
    `matmul backend ${b.name} (${detail}; ${threads} thread${threads === 1 ? "" : "s"})` +
    (hint === undefined ? "" : `; ${hint}`);
  return hint === undefined
    ? { name: b.name, threads, detail, summary }
    : { name: b.name, threads, detail, hint, summary };
}
