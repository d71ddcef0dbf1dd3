import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { PmaError } from "../../common/errors.js";
import { checkBatched, checkGemm, scaleOnly } from "./check.js";
import type { BatchedGemmArgs, GemmArgs, MatmulBackend } from "./matmul.js";
import { hintOpenblasCore } from "./openblas-core.js";
import { defaultThreads } from "./threads.js";

/** The C addon in native/ (built by `npm run build:native`), as seen from JavaScript. */
interface BlasAddon {
  sgemm(
    ta: boolean,
    tb: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    offA: number,
    lda: number,
    B: Float32Array,
    offB: number,
    ldb: number,
    beta: number,
    C: Float32Array,
    offC: number,
    ldc: number,
  ): void;
  sgemmBatched(
    ta: boolean,
    tb: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    offA: number,
    lda: number,
    B: Float32Array,
    offB: number,
    ldb: number,
    beta: number,
    C: Float32Array,
    offC: number,
    ldc: number,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
  ): void;
  setThreads(n: number): void;
  info(): { threads: number; core: string; config: string };
}

/** Where `npm run build:native` puts the addon (repository root, seen from dist/src/nn/kernels). */
export const BLAS_ADDON_PATH = fileURLToPath(
  new URL("../../../../native/build/Release/pma_blas.node", import.meta.url),
);

export const BLAS_HINT =
  "install OpenBLAS and a C compiler (Debian/Ubuntu: apt-get install libopenblas-dev g++ make python3), " +
  "then run `npm run build:native` in the pma folder (or `npm rebuild pma` where pma is a dependency)";

export interface BlasOptions {
  /** Path of the compiled addon; tests point it elsewhere to check the failure path. */
  addonPath?: string;
  /** OpenBLAS threads; ignored when OPENBLAS_NUM_THREADS is set, which OpenBLAS reads itself. */
  threads?: number;
}

export interface BlasBackend extends MatmulBackend {
  readonly name: "blas";
  readonly threads: number;
  /** OpenBLAS's own description of its build and the CPU kernel it picked. */
  readonly config: string;
}

/** Set by the first load: the core type pma chose from the CPU's flags, or null. */
let hintedCore: string | null | undefined;

function load(path: string): BlasAddon {
  hintedCore ??= hintOpenblasCore();
  try {
    return createRequire(import.meta.url)(path) as BlasAddon;
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new PmaError("BACKEND_UNAVAILABLE", `blas backend unavailable (${why}): ${BLAS_HINT}`, {
      cause: e,
    });
  }
}

/** OpenBLAS cblas_sgemm through the N-API addon. Throws BACKEND_UNAVAILABLE when it is not built. */
export function createBlasBackend(opts: BlasOptions = {}): BlasBackend {
  const addon = load(opts.addonPath ?? BLAS_ADDON_PATH);
  if (process.env.OPENBLAS_NUM_THREADS === undefined) addon.setThreads(opts.threads ?? defaultThreads());
  const info = addon.info();
  return {
    name: "blas",
    threads: info.threads,
    config:
      `${info.config} (kernel ${info.core}` +
      (hintedCore != null ? `, OPENBLAS_CORETYPE=${hintedCore} from the CPU's flags)` : ")"),
    alloc: (n) => new Float32Array(n),
    free() {},
    gemm(g: GemmArgs) {
      checkGemm(g);
      if (scaleOnly(g)) return;
      addon.sgemm(
        g.transA,
        g.transB,
        g.M,
        g.N,
        g.K,
        g.alpha,
        g.A,
        g.offA ?? 0,
        g.lda,
        g.B,
        g.offB ?? 0,
        g.ldb,
        g.beta,
        g.C,
        g.offC ?? 0,
        g.ldc,
      );
    },
    gemmBatched(g: BatchedGemmArgs) {
      checkBatched(g);
      if (scaleOnly(g, g.batch, g.strideC)) return;
      addon.sgemmBatched(
        g.transA,
        g.transB,
        g.M,
        g.N,
        g.K,
        g.alpha,
        g.A,
        g.offA ?? 0,
        g.lda,
        g.B,
        g.offB ?? 0,
        g.ldb,
        g.beta,
        g.C,
        g.offC ?? 0,
        g.ldc,
        g.batch,
        g.strideA,
        g.strideB,
        g.strideC,
      );
    },
    dispose() {},
  };
}
