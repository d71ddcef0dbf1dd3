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
  createBlasBackend, createJsBackend, createWasmBackend, type BatchedGemmArgs, type MatmulBackend,
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
  ? [[256, 688], [1024, 1024]]
  : [[256, 256], [256, 688], [688, 256], [256, 1024], [1024, 1024], [1024, 4096], [4096, 1024], [256, 4096]];
const shapes: Shape[] = [];
for (const [inF, outF] of LAYERS) {
  const tag = `${inF}->${outF}`;
  shapes.push({ name: `fwd ${tag}`, transA: false, transB: true, M: T, N: outF, K: inF, beta: 0, batch: 1 });
  shapes.push({ name: `dx  ${tag}`, transA: false, transB: false, M: T, N: inF, K: outF, beta: 0, batch: 1 });
  shapes.push({ name: `dW  ${tag}`, transA: true, transB: false, M: outF, N: inF, K: T, beta: 1, batch: 1 });
}
shapes.push({ name: "att QK^T 16x256x256x64", transA: false, transB: true, M: 256, N: 256, K: 64, beta: 0, batch: 16 });
shapes.push({ name: "att PV   16x256x64x256", transA: false, transB: false, M: 256, N: 64, K: 256, beta: 0, batch: 16 });

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

/** Median GFLOP/s of `reps` calls (js: one call, it is slow and steady). */
function measure(b: MatmulBackend, s: Shape, n: number): number {
  const rowsA = s.transA ? s.K : s.M, colsA = s.transA ? s.M : s.K;
  const rowsB = s.transB ? s.N : s.K, colsB = s.transB ? s.K : s.N;
  const A = b.alloc(rowsA * colsA * s.batch);
  const B = b.alloc(rowsB * colsB * s.batch);
  const C = b.alloc(s.M * s.N * s.batch);
  fill(A, 1);
  fill(B, 2);
  const g: BatchedGemmArgs = {
    transA: s.transA, transB: s.transB, M: s.M, N: s.N, K: s.K, alpha: 1, A, lda: colsA, B, ldb: colsB,
    beta: s.beta, C, ldc: s.N, batch: s.batch, strideA: rowsA * colsA, strideB: rowsB * colsB, strideC: s.M * s.N,
  };
  const call = (): void => (s.batch === 1 ? b.gemm(g) : b.gemmBatched(g));
  call();
  const times: number[] = [];
  for (let r = 0; r < n; r++) {
    const t0 = performance.now();
    call();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  for (const buf of [A, B, C]) b.free?.(buf);
  return flops(s) / (times[Math.floor(times.length / 2)]! * 1e6);
}

interface Column {
  name: string;
  make: () => Promise<MatmulBackend> | MatmulBackend;
  reps: number;
}
const columns: Column[] = [];
let blasNote = "";
try {
  createBlasBackend({ threads: 1 }).dispose();
  columns.push({ name: "blas-1t", make: () => createBlasBackend({ threads: 1 }), reps });
  columns.push({ name: `blas-${threads}t`, make: () => createBlasBackend({ threads }), reps });
} catch (e) {
  blasNote = `blas not measured: ${e instanceof Error ? e.message : String(e)}`;
}
columns.push({ name: "wasm-1t", make: () => createWasmBackend({ threads: 1 }), reps });
columns.push({ name: `wasm-${threads}t`, make: () => createWasmBackend({ threads }), reps });
if (withJs) columns.push({ name: "js", make: () => createJsBackend(), reps: 1 });

const results = new Map<string, number[]>();
for (const col of columns) {
  const b = await col.make();
  results.set(col.name, shapes.map((s) => measure(b, s, col.reps)));
  b.dispose();
}

function ratio(a: string | undefined, b: string | undefined, i: number): string {
  const x = a === undefined ? undefined : results.get(a)?.[i];
  const y = b === undefined ? undefined : results.get(b)?.[i];
  return x === undefined || y === undefined ? "-" : (x / y).toFixed(2);
}

const names = columns.map((c) => c.name);
if (json) {
  console.log(JSON.stringify({ threads, reps, shapes: shapes.map((s, i) => ({ ...s, gflops: Object.fromEntries(names.map((n) => [n, results.get(n)![i]])) })) }));
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
  console.log("shape".padEnd(w) + names.map((n) => n.padStart(10)).join("") + ratioCols.map(([n]) => n.padStart(15)).join(""));
  shapes.forEach((s, i) => {
    const tr = `${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}`;
    const cells = names.map((n) => results.get(n)![i]!.toFixed(1).padStart(10)).join("");
    const rs = ratioCols.map(([, a, b]) => ratio(a, b, i).padStart(15)).join("");
    console.log(`${s.name} ${tr}`.padEnd(w) + cells + rs);
  });
  const geo = (n: string): number => Math.exp(results.get(n)!.reduce((acc, v) => acc + Math.log(v), 0) / shapes.length);
  console.log("geometric mean".padEnd(w) + names.map((n) => geo(n).toFixed(1).padStart(10)).join(""));
  if (blasNote !== "") console.log(blasNote);
}
