/**
 * Tokens/s of one full training step (forward, backward, AdamW with gradient clipping,
 * the work `pma train` does per optimizer step) of the default dense and MoE models at
 * batch 16 x seq 256 (4096 tokens per step), for each matmul backend, against the same
 * models in plain PyTorch (bench/torch_step.py) measured in the same run.
 *
 * Engines run one after another, never concurrently. Each reports the median over the
 * timed steps after warm-up, of wall time and of process CPU time (all threads, so a
 * busy machine shows up as wall time above CPU time / threads). Targets, dense model:
 * blas at least as fast as PyTorch CPU, wasm at least 40% of PyTorch.
 *
 * PyTorch runs in three threading variants (the compute threads, the same with
 * OMP_WAIT_POLICY=PASSIVE, and one thread) and the ratios are against the fastest, so a
 * PyTorch slowed by OpenMP spin-waiting on a shared machine does not flatter pma.
 *
 * PyTorch is optional and never a test dependency: the comparison runs when
 * `/usr/bin/python3 -c "import torch"` works (Debian: apt-get install python3-torch).
 *
 *   node dist/bench/train-vs-torch.js [--js] [--no-torch] [--steps N] [--warmup N] [--model dense|moe|both]
 *   defaults: blas and wasm, 5 timed steps after 1 warm-up, both models
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { AdamW } from "../src/nn/adamw.js";
import type { ModelConfig } from "../src/nn/config.js";
import { DEFAULT_DENSE_CONFIG, DEFAULT_MOE_CONFIG } from "../src/nn/config.js";
import type { BackendName, MatmulBackend } from "../src/nn/kernels/index.js";
import { defaultThreads, describeBackend, getBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";
import { hintOpenblasCore } from "../src/nn/kernels/openblas-core.js";

// PyTorch from Debian links the same OpenBLAS: give it the core type pma chooses from the
// CPU's flags, or on a CPU OpenBLAS does not recognise it would run old SSE3 kernels and
// the comparison would flatter pma. A value the user set is kept for both.
hintOpenblasCore();

const BATCH = 16;
const SEQ = 256;
const PYTHON = "/usr/bin/python3";

interface Args {
  js: boolean;
  torch: boolean;
  steps: number;
  warmup: number;
  models: ("dense" | "moe")[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { js: false, torch: true, steps: 5, warmup: 1, models: ["dense", "moe"] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    const next = (): string => {
      const n = argv[++i];
      if (n === undefined) throw new Error(`${v} needs a value`);
      return n;
    };
    if (v === "--js") a.js = true;
    else if (v === "--no-torch") a.torch = false;
    else if (v === "--steps") a.steps = Number(next());
    else if (v === "--warmup") a.warmup = Number(next());
    else if (v === "--model") {
      const m = next();
      if (m === "both") a.models = ["dense", "moe"];
      else if (m === "dense" || m === "moe") a.models = [m];
      else throw new Error(`--model ${m}: use dense, moe or both`);
    } else throw new Error(`unknown argument ${v}`);
  }
  if (!Number.isInteger(a.steps) || a.steps < 1) throw new Error("--steps must be a positive integer");
  if (!Number.isInteger(a.warmup) || a.warmup < 0) throw new Error("--warmup must be an integer >= 0");
  return a;
}

interface Result {
  engine: string;
  threads: number;
  stepMs: number;
  cpuMs: number;
  allMs: number[];
  loss: number;
  note?: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function configOf(model: "dense" | "moe"): ModelConfig {
  return {
    ...(model === "moe" ? DEFAULT_MOE_CONFIG : DEFAULT_DENSE_CONFIG),
    max_position_embeddings: Math.max(SEQ, DEFAULT_DENSE_CONFIG.max_position_embeddings),
  };
}

async function runPma(
  name: BackendName,
  config: ModelConfig,
  args: Args,
  oneThread = false,
): Promise<Result | string> {
  let be: MatmulBackend;
  const saved = process.env.PMA_THREADS;
  try {
    // Backends read PMA_THREADS when they are created.
    if (oneThread) process.env.PMA_THREADS = "1";
    be = await getBackend(name);
  } catch (e) {
    return `${name}: unavailable (${(e as Error).message.split("\n")[0]})`;
  } finally {
    if (saved === undefined) delete process.env.PMA_THREADS;
    else process.env.PMA_THREADS = saved;
  }
  try {
    const model = createModel(config, be, { batch: BATCH, seq: SEQ }, { seed: 1 });
    const opt = new AdamW(model.params);
    const r = new Rng(7);
    const T = model.T;
    const tokens = Int32Array.from({ length: T }, () => r.int(config.vocab_size));
    const targets = Int32Array.from({ length: T }, () => r.int(config.vocab_size));
    const step = (): number => {
      model.zeroGrad();
      const loss = model.forward(tokens, targets);
      model.backward();
      opt.step(1e-3);
      return loss;
    };
    for (let s = 0; s < args.warmup; s++) step();
    const wall: number[] = [];
    const cpu: number[] = [];
    let loss = NaN;
    for (let s = 0; s < args.steps; s++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      loss = step();
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    return {
      engine: `pma ${name}${oneThread ? " 1 thread" : ""}`,
      threads: be.threads ?? 1,
      stepMs: median(wall),
      cpuMs: median(cpu),
      allMs: wall,
      loss,
      note: describeBackend(be).detail,
    };
  } finally {
    be.dispose();
  }
}

function torchAvailable(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
  if (r.status !== 0) return `${PYTHON} -c "import torch" failed (Debian: apt-get install python3-torch)`;
  return null;
}

/**
 * A PyTorch run's threading. Debian's torch runs its own ops on OpenMP threads that
 * spin-wait between parallel regions; on a machine shared with other jobs that spinning
 * competes with the work (seen here: 2 threads 3x slower than 1 thread), so the
 * reference is the fastest of these variants, and every variant is reported.
 */
interface TorchVariant {
  engine: string;
  threads: number;
  env: Record<string, string>;
}

function torchVariants(threads: number): TorchVariant[] {
  const v: TorchVariant[] = [
    { engine: "torch", threads, env: {} },
    { engine: "torch passive", threads, env: { OMP_WAIT_POLICY: "PASSIVE" } },
  ];
  if (threads > 1) v.push({ engine: "torch 1 thread", threads: 1, env: {} });
  return v;
}

function runTorch(config: ModelConfig, args: Args, variant: TorchVariant): Result | string {
  const { threads } = variant;
  const script = fileURLToPath(new URL("../../bench/torch_step.py", import.meta.url));
  if (!existsSync(script)) return `torch: ${script} not found`;
  const input = JSON.stringify({
    ...config,
    batch: BATCH,
    seq: SEQ,
    steps: args.steps,
    warmup: args.warmup,
    threads,
  });
  const r = spawnSync(PYTHON, [script, input], {
    encoding: "utf8",
    maxBuffer: 1 << 24,
    env: { ...process.env, ...variant.env },
  });
  if (r.status !== 0)
    return `${variant.engine}: failed (exit ${String(r.status)}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`;
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  const o = JSON.parse(line) as {
    torch: string;
    threads: number;
    attention: string;
    step_ms: number;
    cpu_ms: number;
    step_ms_all: number[];
    loss: number;
  };
  const env = Object.entries(variant.env)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  return {
    engine: variant.engine,
    threads: o.threads,
    stepMs: o.step_ms,
    cpuMs: o.cpu_ms,
    allMs: o.step_ms_all,
    loss: o.loss,
    note: `torch ${o.torch}${env === "" ? "" : `, ${env}`}, attention: ${o.attention}`,
  };
}

/** Dense-model targets: minimum ratio of tokens/s to PyTorch's. */
const TARGETS: Partial<Record<string, number>> = {
  "pma blas": 1.0,
  "pma blas 1 thread": 1.0,
  "pma wasm": 0.4,
};

const args = parseArgs(process.argv.slice(2));
const backends: BackendName[] = args.js ? ["blas", "wasm", "js"] : ["blas", "wasm"];
const threads = defaultThreads();
const fmtLoad = (l: number[]): string => l.map((x) => x.toFixed(2)).join(", ");
const loadStart = loadavg();
const tokensPerStep = BATCH * SEQ;
console.log(
  `${cpus()[0]?.model ?? "cpu"}; ${availableParallelism()} CPUs usable; ${threads} compute threads per engine`,
);
console.log(`load average at start (1, 5, 15 min): ${fmtLoad(loadStart)}`);
console.log(
  `batch ${BATCH} x seq ${SEQ} = ${tokensPerStep} tokens per step; median of ${args.steps} steps after ${args.warmup} warm-up; engines run one after another`,
);
const torchWhy = args.torch ? torchAvailable() : "--no-torch";
if (torchWhy !== null) console.log(`PyTorch comparison skipped: ${torchWhy}`);

interface Section {
  model: "dense" | "moe";
  config: ModelConfig;
  rows: Result[];
}
const sections: Section[] = [];
for (const model of args.models) {
  const config = configOf(model);
  const rows: Result[] = [];
  console.log(
    `\n${model}: d${config.hidden_size} L${config.num_hidden_layers} H${config.num_attention_heads} I${config.intermediate_size} V${config.vocab_size}` +
      `${config.num_local_experts > 0 ? ` E${config.num_local_experts} top-${config.num_experts_per_tok}` : ""}, tied embeddings ${String(config.tie_word_embeddings)}`,
  );
  // blas again on one thread when it would use more: the per-CPU-second comparison with
  // PyTorch's one-thread variant, without threading overhead on either side.
  const runs: [BackendName, boolean][] = backends.map((b) => [b, false]);
  if (threads > 1) runs.splice(1, 0, ["blas", true]);
  for (const [name, one] of runs) {
    const r = await runPma(name, config, args, one);
    if (typeof r === "string") console.log(`  ${r}`);
    else {
      rows.push(r);
      console.log(
        `  ${r.engine}: ${r.stepMs.toFixed(0)} ms/step (steps ${r.allMs.map((x) => x.toFixed(0)).join(", ")}), loss ${r.loss.toFixed(3)}; ${r.note ?? ""}`,
      );
    }
  }
  for (const variant of torchWhy === null ? torchVariants(threads) : []) {
    const r = runTorch(config, args, variant);
    if (typeof r === "string") console.log(`  ${r}`);
    else {
      rows.push(r);
      console.log(
        `  ${r.engine}: ${r.stepMs.toFixed(0)} ms/step (steps ${r.allMs.map((x) => x.toFixed(0)).join(", ")}), loss ${r.loss.toFixed(3)}; ${r.note ?? ""}`,
      );
    }
  }
  sections.push({ model, config, rows });
}

const pad = (s: string, n: number): string => s.padStart(n);
const W = 19;
console.log(
  `\n${"model".padEnd(7)}${"engine".padEnd(W)}${pad("thr", 4)}${pad("ms/step", 9)}${pad("tokens/s", 10)}${pad("vs torch", 10)}` +
    `${pad("cpu ms", 9)}${pad("tok/cpu-s", 11)}${pad("vs torch", 10)}  target`,
);
const verdicts: string[] = [];
const refs: string[] = [];
for (const s of sections) {
  // References: the fastest PyTorch variant by wall time, and the most CPU-efficient one.
  const torchRows = s.rows.filter((r) => r.engine.startsWith("torch"));
  const best = (key: (r: Result) => number): Result | undefined =>
    torchRows.reduce<Result | undefined>((b, r) => (b === undefined || key(r) < key(b) ? r : b), undefined);
  const torch = best((r) => r.stepMs);
  const torchCpu = best((r) => r.cpuMs);
  if (torch !== undefined && torchCpu !== undefined)
    refs.push(`${s.model}: wall reference "${torch.engine}", CPU reference "${torchCpu.engine}"`);
  for (const r of s.rows) {
    const tps = (tokensPerStep / r.stepMs) * 1000;
    const tpc = (tokensPerStep / r.cpuMs) * 1000;
    const ratio = torch === undefined ? undefined : torch.stepMs / r.stepMs;
    const cpuRatio = torchCpu === undefined ? undefined : torchCpu.cpuMs / r.cpuMs;
    const target = s.model === "dense" ? TARGETS[r.engine] : undefined;
    let verdict = "";
    if (target !== undefined && ratio !== undefined && cpuRatio !== undefined) {
      verdict = `>= ${target.toFixed(2)}x: ${ratio >= target ? "met" : "NOT met"} (wall), ${cpuRatio >= target ? "met" : "NOT met"} (cpu)`;
      verdicts.push(`${s.model} ${r.engine} ${verdict}`);
    }
    console.log(
      `${s.model.padEnd(7)}${r.engine.padEnd(W)}${pad(String(r.threads), 4)}${pad(r.stepMs.toFixed(0), 9)}${pad(tps.toFixed(0), 10)}` +
        `${pad(ratio === undefined ? "-" : ratio.toFixed(2) + "x", 10)}${pad(r.cpuMs.toFixed(0), 9)}${pad(tpc.toFixed(0), 11)}` +
        `${pad(cpuRatio === undefined ? "-" : cpuRatio.toFixed(2) + "x", 10)}  ${verdict}`,
    );
  }
}
for (const r of refs) console.log(r);
const loadEnd = loadavg();
console.log(`\nload average at end (1, 5, 15 min): ${fmtLoad(loadEnd)}`);
const busy = Math.max(loadStart[0]!, loadEnd[0]!) > availableParallelism() * 0.5;
if (busy)
  console.log(
    `the machine was busy (1-min load above half of ${availableParallelism()} CPUs): wall-time figures understate every engine; compare the per-CPU-second columns too`,
  );
console.log(
  "cpu ms = process CPU time (all threads) per step; tok/cpu-s = tokens per CPU-second; ratios are the reference PyTorch time / engine time (above 1: faster than PyTorch); the reference is the fastest PyTorch variant (by wall time, and by CPU time for the CPU ratio)",
);
if (verdicts.length === 0 && torchWhy === null)
  console.log("no dense-model target could be judged (a backend or PyTorch did not run)");
