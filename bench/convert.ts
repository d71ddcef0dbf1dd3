/**
 * Throughput of the dtype conversions a merge runs on every byte it reads and writes.
 * Baselines measured in the same run: a plain copy of the same bytes (the floor any
 * conversion pays), and @petamoriken/float16's DataView getFloat16/setFloat16, the
 * common way to do f16 in JavaScript.
 *
 *   node dist/bench/convert.js [elements]   (default 8388608)
 */
import { getFloat16, setFloat16 } from "@petamoriken/float16";
import { decodeFloats, encodeFloats } from "../src/tensor/codec.js";
import type { FloatDType } from "../src/tensor/dtype.js";

const n = Number(process.argv[2] ?? 8 * 1024 * 1024);
const REPEATS = 5;

/** Best of REPEATS, in milliseconds, after one warm-up call. */
function time(fn: () => void): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const f64 = new Float64Array(n);
for (let i = 0; i < n; i++) f64[i] = Math.sin(i) * 4;
const f32 = Float32Array.from(f64);
const half = new Uint8Array(n * 2);
const out32 = new Float32Array(n);
const out64 = new Float64Array(n);

const rows: { op: string; ms: number; baseline?: string; baseMs?: number }[] = [];
const copyMs = time(() => out32.set(f32));
rows.push({ op: "copy f32 -> f32 (memcpy floor)", ms: copyMs });

for (const dtype of ["BF16", "F16"] as FloatDType[]) {
  encodeFloats(f32, dtype, half);
  rows.push({ op: `decode ${dtype} -> f32`, ms: time(() => decodeFloats(half, dtype, out32)) });
  rows.push({ op: `decode ${dtype} -> f64`, ms: time(() => decodeFloats(half, dtype, out64)) });
  rows.push({ op: `encode f32 -> ${dtype}`, ms: time(() => encodeFloats(f32, dtype, half)) });
  rows.push({ op: `encode f64 -> ${dtype}`, ms: time(() => encodeFloats(f64, dtype, half)) });
}

// The DataView baselines are two orders of magnitude slower: time them on a slice and
// compare rates, so the bench stays short.
const m = Math.min(n, 1 << 18);
const dv = new DataView(half.buffer);
encodeFloats(f32, "F16", half);
const baselines: [string, string, () => void][] = [
  [
    "decode F16 -> f32",
    "getFloat16 loop",
    () => {
      for (let i = 0; i < m; i++) out32[i] = getFloat16(dv, 2 * i, true);
    },
  ],
  [
    "encode f32 -> F16",
    "setFloat16 loop",
    () => {
      for (let i = 0; i < m; i++) setFloat16(dv, 2 * i, f32[i]!, true);
    },
  ],
];
for (const [op, name, fn] of baselines) {
  const row = rows.find((r) => r.op === op)!;
  row.baseline = name;
  row.baseMs = (time(fn) * n) / m;
}

const fmt = (x: number, d = 1) => x.toFixed(d).padStart(8);
console.log(`elements: ${n}, best of ${REPEATS}, node ${process.version}`);
console.log(
  `${"operation".padEnd(34)} ${"ms".padStart(8)} ${"Melem/s".padStart(8)} ${"x memcpy".padStart(8)}  vs baseline`,
);
for (const r of rows) {
  const vs =
    r.baseMs === undefined
      ? ""
      : `${r.baseline} ${fmt(n / r.baseMs / 1e3, 0).trim()} Melem/s: ${(r.baseMs / r.ms).toFixed(1)}x faster`;
  console.log(`${r.op.padEnd(34)} ${fmt(r.ms)} ${fmt(n / r.ms / 1e3, 0)} ${fmt(r.ms / copyMs, 2)}  ${vs}`);
}
