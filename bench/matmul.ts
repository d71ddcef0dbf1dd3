/**
 * GFLOP/s of each matmul backend on the training engine's shapes (npm run bench:matmul).
 *
 * T = 4096 tokens through a linear layer W[out, in], as src/nn/layers/linear.ts calls it:
 *   fwd  y  = x  W^T  (NT: M=T,   N=out, K=in)
 *   dx   dx = dy W    (NN: M=T,   N=in,  K=out)
 *   dW   dW = dy^T x  (TN: M=out, N=in,  K=T, beta=1)
 * plus the two batched attention products (16 heads, seq 256, head_dim 64).
 * Every backend runs in this process on the same inputs; each number is the median of
 * --reps timed calls after one warm-up. Ratios are between medians of this run.
 *
 *   node dist/bench/matmul.js [--reps 5] [--threads N] [--js] [--quick] [--json]
 *
 * --js adds the plain TypeScript backend (one call per shape: it runs at ~1 GFLOP/s, so
 * the full list takes many minutes; use it with --quick).
 */
import { availableParallelism } from "node:os";
import {
  createBlasBackend,
  createJsBackend,
  createWasmBackend,
  type BatchedGemmArgs,
  type MatmulBackend,
} from "../src/nn/kernels/index.js";

interface Shape {
  name: string;
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  beta: number;
  batch: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}
const reps = Number(arg("--reps") ?? 5);
const threads = Number(arg("--threads") ?? availableParallelism());
const withJs = process.argv.includes("--js");
const quick = process.argv.includes("--quick");
const json = process.argv.includes("--json");

const T = 4096;
const LAYERS: [number, number][] = quick
  ? [
      [256, 688],
      [1024, 1024],
    ]
  : [
      [256, 256],
      [256, 688],
      [688, 256],
      [256, 1024],
      [1024, 1024],
      [1024, 4096],
      [4096, 1024],
      [256, 4096],
    ];
const shapes: Shape[] = [];
for (const [inF, outF] of LAYERS) {
  const tag = `${inF}->${outF}`;
  shapes.push({ name: `fwd ${tag}`, transA: false, transB: true, M: T, N: outF, K: inF, beta: 0, batch: 1 });
  shapes.push({ name: `dx  ${tag}`, transA: false, transB: false, M: T, N: inF, K: outF, beta: 0, batch: 1 });
  shapes.push({ name: `dW  ${tag}`, transA: true, transB: false, M: outF, N: inF, K: T, beta: 1, batch: 1 });
}
shapes.push({
  name: "att QK^T 16x256x256x64",
  transA: false,
  transB: true,
  M: 256,
  N: 256,
  K: 64,
  beta: 0,
  batch: 16,
});
shapes.push({
  name: "att PV   16x256x64x256",
  transA: false,
  transB: false,
  M: 256,
  N: 64,
  K: 256,
  beta: 0,
  batch: 16,
});

function flops(s: Shape): number {
  return 2 * s.M * s.N * s.K * s.batch;
}

function fill(a: Float32Array, seed: number): void {
  let x = seed;
  for (let i = 0; i < a.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = x / 2 ** 32 - 0.5;
  }
}

interface Column {
  name: string;
  backend: MatmulBackend;
  /** Runs before each timed call: OpenBLAS's thread count is process-wide, so the blas
   * columns set theirs again every time. */
  before?: () => void;
}

const columns: Column[] = [];
let blasNote = "";
try {
  const setThreads = (n: number) => (): void => void createBlasBackend({ threads: n });
  columns.push({ name: "blas-1t", backend: createBlasBackend({ threads: 1 }), before: setThreads(1) });
  columns.push({
    name: `blas-${threads}t`,
    backend: createBlasBackend({ threads }),
    before: setThreads(threads),
  });
} catch (e) {
  blasNote = `blas not measured: ${e instanceof Error ? e.message : String(e)}`;
}
columns.push({ name: "wasm-1t", backend: await createWasmBackend({ threads: 1 }) });
columns.push({ name: `wasm-${threads}t`, backend: await createWasmBackend({ threads }) });
if (withJs) columns.push({ name: "js", backend: createJsBackend() });

/** Operands for one shape in one backend's memory, and a function that multiplies them. */
function prepare(b: MatmulBackend, s: Shape): { call: () => void; release: () => void } {
  const rowsA = s.transA ? s.K : s.M,
    colsA = s.transA ? s.M : s.K;
  const rowsB = s.transB ? s.N : s.K,
    colsB = s.transB ? s.K : s.N;
  const A = b.alloc(rowsA * colsA * s.batch);
  const B = b.alloc(rowsB * colsB * s.batch);
  const C = b.alloc(s.M * s.N * s.batch);
  fill(A, 1);
  fill(B, 2);
  const g: BatchedGemmArgs = {
    transA: s.transA,
    transB: s.transB,
    M: s.M,
    N: s.N,
    K: s.K,
    alpha: 1,
    A,
    lda: colsA,
    B,
    ldb: colsB,
    beta: s.beta,
    C,
    ldc: s.N,
    batch: s.batch,
    strideA: rowsA * colsA,
    strideB: rowsB * colsB,
    strideC: s.M * s.N,
  };
  return {
    call: () => (s.batch === 1 ? b.gemm(g) : b.gemmBatched(g)),
    release: () => {
      for (const buf of [A, B, C]) b.free?.(buf);
    },
  };
}

function time(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

/**
 * The backends take turns, one call each per round, so that a burst of load from other
 * processes hits all of them alike and the ratios stay fair. js gets one call per shape.
 */
const results = new Map<string, number[]>(columns.map((c) => [c.name, []]));
for (const s of shapes) {
  const runs = columns.map((c) => ({ c, ...prepare(c.backend, s), times: [] as number[] }));
  for (const r of runs) {
    r.c.before?.();
    r.call(); // warm-up: page faults, JIT, worker wake-up
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const r of runs) {
      if (r.c.name === "js" && rep > 0) continue;
      r.c.before?.();
      r.times.push(time(r.call));
    }
  }
  for (const r of runs) {
    r.release();
    const t = r.times.sort((x, y) => x - y);
    results.get(r.c.name)!.push(flops(s) / (t[Math.floor(t.length / 2)]! * 1e6));
  }
}
for (const c of columns) c.backend.dispose();

function ratio(a: string | undefined, b: string | undefined, i: number): string {
  const x = a === undefined ? undefined : results.get(a)?.[i];
  const y = b === undefined ? undefined : results.get(b)?.[i];
  return x === undefined || y === undefined ? "-" : (x / y).toFixed(2);
}

const names = columns.map((c) => c.name);
if (json) {
  console.log(
    JSON.stringify({
      threads,
      reps,
      shapes: shapes.map((s, i) => ({
        ...s,
        gflops: Object.fromEntries(names.map((n) => [n, results.get(n)![i]])),
      })),
    }),
  );
} else {
  const blasN = names.find((n) => n.startsWith("blas-") && n !== "blas-1t");
  const wasmN = `wasm-${threads}t`;
  const ratioCols: [string, string | undefined, string | undefined][] = [
    [`blas/wasm ${threads}t`, blasN, wasmN],
    [`wasm ${threads}t/1t`, wasmN, "wasm-1t"],
    [`wasm/js`, wasmN, withJs ? "js" : undefined],
    [`blas/js`, blasN, withJs ? "js" : undefined],
  ];
  const w = 28;
  console.log(`GFLOP/s, median of ${reps} (js: 1 call); T=${T}; ${threads} threads`);
  console.log(
    "shape".padEnd(w) +
      names.map((n) => n.padStart(10)).join("") +
      ratioCols.map(([n]) => n.padStart(15)).join(""),
  );
  shapes.forEach((s, i) => {
    const tr = `${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}`;
    const cells = names.map((n) => results.get(n)![i]!.toFixed(1).padStart(10)).join("");
    const rs = ratioCols.map(([, a, b]) => ratio(a, b, i).padStart(15)).join("");
    console.log(`${s.name} ${tr}`.padEnd(w) + cells + rs);
  });
  const geo = (n: string): number =>
    Math.exp(results.get(n)!.reduce((acc, v) => acc + Math.log(v), 0) / shapes.length);
  console.log("geometric mean".padEnd(w) + names.map((n) => geo(n).toFixed(1).padStart(10)).join(""));
  if (blasNote !== "") console.log(blasNote);
}
