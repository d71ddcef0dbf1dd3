/**
 * Training and evaluation throughput of `pma train` / `pma eval` with the default config
 * (d_model 128, 4 layers, vocab 4096, 4096 tokens per step), against baselines measured
 * in the same run on the same backend:
 *   train: the bare engine (the same model and AdamW on one fixed batch, no sampler,
 *          logging or accumulation bookkeeping): the ratio is the trainer's overhead;
 *   eval:  bare forward passes of the same shape on a fixed batch: the ratio is the cost
 *          of reading weights, tokenising (cached) and windowing.
 * Each time is split into matmul (every GEMM goes through the backend) and the rest.
 *
 *   node dist/bench/train.js [steps=20] [backend=auto] [dense|moe]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Evaluator } from "../src/eval/evaluate.js";
import { AdamW } from "../src/nn/adamw.js";
import type { BackendName, BatchedGemmArgs, GemmArgs, MatmulBackend } from "../src/nn/kernels/index.js";
import { describeBackend, getBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";
import { readPmaState } from "../src/train/checkpoint.js";
import { train } from "../src/train/loop.js";

const steps = Number(process.argv[2] ?? 20);
const backendName =
  process.argv[3] === undefined || process.argv[3] === "auto" ? undefined : (process.argv[3] as BackendName);
const preset = process.argv[4] === "moe" ? "moe" : "dense";

/** Forwards to `inner`, adding the wall time of every GEMM. */
function timed(inner: MatmulBackend): MatmulBackend & { ms: number } {
  const t = {
    name: inner.name,
    threads: inner.threads,
    ms: 0,
    alloc: (n: number) => inner.alloc(n),
    gemm(a: GemmArgs) {
      const t0 = performance.now();
      inner.gemm(a);
      t.ms += performance.now() - t0;
    },
    gemmBatched(a: BatchedGemmArgs) {
      const t0 = performance.now();
      inner.gemmBatched(a);
      t.ms += performance.now() - t0;
    },
    dispose: () => inner.dispose(),
  };
  return t;
}

const inner = await getBackend(backendName);
const be = timed(inner);
console.log(describeBackend(inner).summary);
const dir = mkdtempSync(join(tmpdir(), "pma-bench-train-"));
try {
  // --- pma train: steps + 1 (the first one warms up), no evaluation, one final checkpoint.
  const stepMs: number[] = [];
  let mmAtStep = 0;
  const mmPerStep: number[] = [];
  const result = await train({
    config: {
      model: { preset },
      training: { max_tokens: (steps + 1) * 4096 },
      eval: { every_tokens: 0 },
      checkpointing: { every_tokens: 0 },
    },
    out: join(dir, "run"),
    backend: be,
    onEvent: (e) => {
      if (e.type === "step") {
        stepMs.push(e.record.seconds * 1000);
        mmPerStep.push(be.ms - mmAtStep);
      }
      if (e.type === "step" || e.type === "start") mmAtStep = be.ms;
    },
  });
  const cfg = result.config;
  const tps = cfg.data.micro_batch * cfg.data.seq_len * cfg.data.grad_accum;
  const trainMs = stepMs.slice(1).reduce((a, b) => a + b, 0) / steps;
  const trainMm = mmPerStep.slice(1).reduce((a, b) => a + b, 0) / steps;

  // --- bare engine baseline: same model shape, AdamW, grad_accum micro-batches of one fixed batch.
  const state = result.checkpoints.at(-1)!;
  const evaluator = new Evaluator({ backend: be });
  const { model_config: mc } = (await readPmaState(state))!;
  const model = createModel(mc, be, { batch: cfg.data.micro_batch, seq: cfg.data.seq_len }, { seed: 1 });
  const opt = new AdamW(model.params);
  const r = new Rng(7);
  const T = model.T;
  const tokens = Int32Array.from({ length: T }, () => r.int(mc.vocab_size));
  const targets = Int32Array.from({ length: T }, () => r.int(mc.vocab_size));
  const bareStep = (): void => {
    model.zeroGrad();
    for (let a = 0; a < cfg.data.grad_accum; a++) {
      model.forward(tokens, targets);
      model.backward();
    }
    opt.step(1e-3);
  };
  bareStep();
  let mm0 = be.ms;
  let t0 = performance.now();
  for (let s = 0; s < steps; s++) bareStep();
  const bareMs = (performance.now() - t0) / steps;
  const bareMm = (be.ms - mm0) / steps;

  // --- pma eval: the whole validation split of the final checkpoint (second call: splits cached).
  await evaluator.evaluate(state, { maxTokens: 8192 });
  mm0 = be.ms;
  const ev = await evaluator.evaluate(state);
  const evalMm = be.ms - mm0;
  const evalModel = createModel(
    mc,
    be,
    { batch: 16, seq: cfg.data.seq_len },
    { params: model.params, forwardOnly: true },
  );
  const et = Int32Array.from({ length: evalModel.T }, () => r.int(mc.vocab_size));
  const batches = Math.ceil(ev.windows / 16);
  evalModel.forward(et, et);
  mm0 = be.ms;
  t0 = performance.now();
  for (let b = 0; b < batches; b++) evalModel.forward(et, et);
  const bareEvalS = (performance.now() - t0) / 1000;
  const bareEvalMm = be.ms - mm0;
  evaluator.close();

  const pad = (s: string, n: number): string => s.padStart(n);
  console.log(
    `${preset} model, ${model.params.numel.toLocaleString("en-US")} parameters, ${tps} tokens/step (${cfg.data.micro_batch} x ${cfg.data.seq_len} x ${cfg.data.grad_accum}); mean of ${steps} steps after 1 warm-up`,
  );
  console.log(
    `${"".padEnd(22)}${pad("ms", 9)}${pad("matmul ms", 11)}${pad("other %", 9)}${pad("tokens/s", 10)}${pad("vs bare", 9)}`,
  );
  const row = (name: string, ms: number, mm: number, tokensPer: number, base: number): void => {
    console.log(
      `${name.padEnd(22)}${pad(ms.toFixed(0), 9)}${pad(mm.toFixed(0), 11)}${pad(((100 * (ms - mm)) / ms).toFixed(1), 9)}${pad(((tokensPer / ms) * 1000).toFixed(0), 10)}${pad((base / ms).toFixed(2) + "x", 9)}`,
    );
  };
  row("pma train step", trainMs, trainMm, tps, bareMs);
  row("bare engine step", bareMs, bareMm, tps, bareMs);
  row(`pma eval (${ev.tokens} tok)`, ev.seconds * 1000, evalMm, ev.tokens, bareEvalS * 1000);
  row(`bare forward x${batches}`, bareEvalS * 1000, bareEvalMm, ev.tokens, bareEvalS * 1000);
  console.log(
    "other % = time outside GEMMs (elementwise layers, softmax, cross-entropy, AdamW, batching, I/O)",
  );
} finally {
  be.dispose();
  rmSync(dir, { recursive: true, force: true });
}
