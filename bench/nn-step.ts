/**
 * One training step of the nn engine (forward + backward + AdamW) per matmul backend,
 * with the time split into matmul (every GEMM goes through the backend, so wrapping it
 * measures all of it) and everything else (elementwise layers, softmax, cross-entropy,
 * permutes, optimizer). Baseline measured in the same run: the plain-TypeScript `js`
 * backend on the same model and data.
 *
 *   node dist/bench/nn-step.js [dense|moe] [batch] [seq] [steps] [backends...]
 *   defaults: dense 1 256 2 js wasm blas
 */
import { AdamW } from "../src/nn/adamw.js";
import { DEFAULT_DENSE_CONFIG, DEFAULT_MOE_CONFIG } from "../src/nn/config.js";
import type { BackendName, BatchedGemmArgs, GemmArgs, MatmulBackend } from "../src/nn/kernels/index.js";
import { describeBackend, getBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";

const preset = process.argv[2] ?? "dense";
const batch = Number(process.argv[3] ?? 1);
const seq = Number(process.argv[4] ?? 256);
const steps = Number(process.argv[5] ?? 2);
const names = (process.argv.length > 6 ? process.argv.slice(6) : ["js", "wasm", "blas"]) as BackendName[];
const config = {
  ...(preset === "moe" ? DEFAULT_MOE_CONFIG : DEFAULT_DENSE_CONFIG),
  max_position_embeddings: Math.max(256, seq),
};

/** Forwards to `inner`, adding wall time and FLOPs of every GEMM. */
function timed(inner: MatmulBackend): MatmulBackend & { ms: number; flops: number } {
  const t = {
    name: inner.name,
    threads: inner.threads,
    ms: 0,
    flops: 0,
    alloc: (n: number) => inner.alloc(n),
    gemm(a: GemmArgs) {
      const t0 = performance.now();
      inner.gemm(a);
      t.ms += performance.now() - t0;
      t.flops += 2 * a.M * a.N * a.K;
    },
    gemmBatched(a: BatchedGemmArgs) {
      const t0 = performance.now();
      inner.gemmBatched(a);
      t.ms += performance.now() - t0;
      t.flops += 2 * a.M * a.N * a.K * a.batch;
    },
    dispose: () => inner.dispose(),
  };
  return t;
}

interface Row {
  name: string;
  step: number;
  fwd: number;
  bwd: number;
  opt: number;
  mm: number;
  gflops: number;
  loss: number;
}

async function run(name: BackendName): Promise<Row | null> {
  let inner: MatmulBackend;
  try {
    inner = await getBackend(name);
  } catch (e) {
    console.log(`${name}: unavailable (${(e as Error).message.split("\n")[0]})`);
    return null;
  }
  console.log(describeBackend(inner).summary);
  const be = timed(inner);
  try {
    const model = createModel(config, be, { batch, seq }, { seed: 1 });
    const opt = new AdamW(model.params);
    const r = new Rng(7);
    const T = batch * seq;
    const tokens = Int32Array.from({ length: T }, () => r.int(config.vocab_size));
    const targets = Int32Array.from({ length: T }, () => r.int(config.vocab_size));
    const step = (): [number, number, number, number] => {
      model.zeroGrad();
      const t0 = performance.now();
      const loss = model.forward(tokens, targets);
      const t1 = performance.now();
      model.backward();
      const t2 = performance.now();
      opt.step(1e-3);
      return [t1 - t0, performance.now() - t2, t2 - t1, loss];
    };
    step(); // first step: page faults, JIT warm-up
    be.ms = 0;
    be.flops = 0;
    let fwd = 0,
      bwd = 0,
      o = 0,
      loss = 0;
    for (let s = 0; s < steps; s++) {
      const [f, op, b, l] = step();
      fwd += f;
      bwd += b;
      o += op;
      loss = l;
    }
    const mm = be.ms / steps;
    return {
      name,
      step: (fwd + bwd + o) / steps,
      fwd: fwd / steps,
      bwd: bwd / steps,
      opt: o / steps,
      mm,
      gflops: be.flops / steps / (mm * 1e6),
      loss,
    };
  } finally {
    be.dispose();
  }
}

const pad = (s: string | number, n: number): string => String(s).padStart(n);
console.log(
  `${preset} model d${config.hidden_size} L${config.num_hidden_layers} V${config.vocab_size}` +
    `${config.num_local_experts > 0 ? ` E${config.num_local_experts} top-${config.num_experts_per_tok}` : ""}, batch ${batch} x seq ${seq}, mean of ${steps} steps after 1 warm-up`,
);
const rows: Row[] = [];
for (const n of names) {
  const row = await run(n);
  if (row !== null) rows.push(row);
}
const base = rows.find((r) => r.name === "js");
console.log(
  `${"backend".padEnd(8)}${pad("step ms", 10)}${pad("fwd", 9)}${pad("bwd", 9)}${pad("adamw", 8)}${pad("matmul", 9)}${pad("other", 9)}${pad("other %", 9)}${pad("GFLOP/s", 9)}${pad("vs js", 8)}`,
);
for (const r of rows) {
  const other = r.fwd + r.bwd - r.mm;
  console.log(
    `${r.name.padEnd(8)}${pad(r.step.toFixed(0), 10)}${pad(r.fwd.toFixed(0), 9)}${pad(r.bwd.toFixed(0), 9)}${pad(r.opt.toFixed(0), 8)}` +
      `${pad(r.mm.toFixed(0), 9)}${pad(other.toFixed(0), 9)}${pad(((100 * (other + r.opt)) / r.step).toFixed(1), 9)}${pad(r.gflops.toFixed(1), 9)}` +
      `${pad(base === undefined ? "-" : (base.step / r.step).toFixed(1) + "x", 8)}`,
  );
}
console.log(
  "other = forward + backward time outside GEMMs (elementwise, softmax, cross-entropy, permutes); other % includes AdamW",
);
