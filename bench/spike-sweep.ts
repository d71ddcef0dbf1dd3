/**
 * Where do lab-scale models spike by themselves? A sweep of constant-LR pre-training
 * runs over learning rate, warmup, width and depth (dense and MoE) at the quick lab
 * profile's scale, following Wortsman et al. (2023): without qk-layernorm or z-loss,
 * small Transformers show attention-logit growth and output-logit divergence as the LR
 * grows. Every run logs the logit monitors (log.jsonl: attn_logit_max,
 * output_logit_max, output_log_z); the table says for each run its best and final
 * loss, the spikes pma's detector finds in its log (transient or divergence), and the
 * monitors at the best point and at the end, so one sees which mechanism fired.
 *
 *   node dist/bench/spike-sweep.js [--steps 250] [--out pma-spike-sweep] [--jobs 2] [--only a,b]
 *
 * Runs go two at a time with one thread each (more throughput on 2 cores than one run
 * with two); a run folder already complete is reused. Writes sweep.json and sweep.md.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { labProfile, tokensPerStep, type ModelSize } from "../src/lab/profile.js";
import { readTrainingLog } from "../src/trajectory/logs.js";
import { detectSpikes } from "../src/trajectory/spikes.js";
import { readFile } from "node:fs/promises";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "250" },
    out: { type: "string", default: "pma-spike-sweep" },
    jobs: { type: "string", default: "2" },
    only: { type: "string" },
  },
});
const steps = Number(values.steps);
const out = resolve(values.out);
const jobs = Number(values.jobs);
const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const quick = labProfile("quick");
const tps = tokensPerStep(quick);

interface SweepRun {
  name: string;
  preset: "dense" | "moe";
  lr: number;
  warmupSteps: number;
  size: ModelSize;
  /**
   * AdamW settings replacing the lab's (0.9, 0.95, weight decay 0.1, clip 1.0): weight
   * decay 0 lets the output logits drift (Wortsman et al.); beta2 0.999 (PyTorch's
   * default) keeps stale second moments, the Adam instability of Molybog et al. (2023).
   */
  optimizer?: { beta2?: number; weight_decay?: number; max_grad_norm?: number };
}

const dense = quick.dense;
const moe = quick.moe;
const RUNS: SweepRun[] = [
  { name: "dense-lr3e-3", preset: "dense", lr: 3e-3, warmupSteps: 50, size: dense },
  { name: "dense-lr1e-2", preset: "dense", lr: 1e-2, warmupSteps: 50, size: dense },
  { name: "dense-lr2e-2", preset: "dense", lr: 2e-2, warmupSteps: 50, size: dense },
  { name: "dense-lr1e-2-warmup5", preset: "dense", lr: 1e-2, warmupSteps: 5, size: dense },
  {
    name: "dense-lr1e-2-L8",
    preset: "dense",
    lr: 1e-2,
    warmupSteps: 50,
    size: { ...dense, num_hidden_layers: 8 },
  },
  {
    name: "dense-lr1e-2-d256",
    preset: "dense",
    lr: 1e-2,
    warmupSteps: 50,
    size: { ...dense, hidden_size: 256, intermediate_size: 688, num_attention_heads: 8 },
  },
  { name: "dense-lr5e-2-warmup100", preset: "dense", lr: 5e-2, warmupSteps: 100, size: dense },
  {
    name: "dense-lr1e-2-wd0",
    preset: "dense",
    lr: 1e-2,
    warmupSteps: 50,
    size: dense,
    optimizer: { weight_decay: 0 },
  },
  {
    name: "dense-lr1e-2-beta2-0.999",
    preset: "dense",
    lr: 1e-2,
    warmupSteps: 50,
    size: dense,
    optimizer: { beta2: 0.999 },
  },
  {
    name: "moe-lr1e-2-beta2-0.999",
    preset: "moe",
    lr: 1e-2,
    warmupSteps: 50,
    size: moe,
    optimizer: { beta2: 0.999 },
  },
  {
    name: "moe-lr1e-2-beta2-0.999-noclip",
    preset: "moe",
    lr: 1e-2,
    warmupSteps: 50,
    size: moe,
    optimizer: { beta2: 0.999, max_grad_norm: 0 },
  },
  { name: "moe-lr5e-2-warmup100", preset: "moe", lr: 5e-2, warmupSteps: 100, size: moe },
  { name: "moe-lr3e-3", preset: "moe", lr: 3e-3, warmupSteps: 50, size: moe },
  { name: "moe-lr1e-2", preset: "moe", lr: 1e-2, warmupSteps: 50, size: moe },
  { name: "moe-lr2e-2", preset: "moe", lr: 2e-2, warmupSteps: 50, size: moe },
  { name: "moe-lr1e-2-warmup5", preset: "moe", lr: 1e-2, warmupSteps: 5, size: moe },
];

function configYaml(r: SweepRun): string {
  const model =
    r.preset === "dense"
      ? { preset: "dense", ...r.size }
      : { preset: "moe", ...r.size, num_experts_per_tok: 2 };
  const config = {
    model,
    data: { corpus: "brown", ...quick.data, seed: 0 },
    training: { max_tokens: steps * tps, seed: 0 },
    schedule: { kind: "constant", lr: r.lr, warmup_tokens: r.warmupSteps * tps },
    eval: { every_tokens: 0 },
    ...(r.optimizer === undefined ? {} : { optimizer: r.optimizer }),
    // Checkpoints every 10 steps, as the lab's runs: a spiked run is then a PMA-init input.
    checkpointing: { every_tokens: 10 * tps, dtype: "f32" },
  };
  return JSON.stringify(config, null, 2); // YAML is a superset of JSON
}

function train(r: SweepRun): Promise<void> {
  const dir = join(out, r.name);
  if (existsSync(join(dir, `checkpoint-${steps}`))) return Promise.resolve();
  mkdirSync(out, { recursive: true });
  const cfg = join(out, `${r.name}.yaml`);
  writeFileSync(cfg, configYaml(r));
  return new Promise((done) => {
    const child = spawn(process.execPath, [PMA, "train", "--config", cfg, "--out", dir, "--force"], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, PMA_THREADS: String(Math.max(1, Math.floor(2 / jobs))) },
    });
    // A diverged run exits 1 with its log written up to the non-finite step: that is a result.
    child.on("exit", () => done());
  });
}

interface Row {
  name: string;
  lr: number;
  warmupSteps: number;
  layers: number;
  width: number;
  optimizer: string;
  stepsRun: number;
  bestLoss: number;
  bestStep: number;
  finalLoss: number;
  spikes: string[];
  attnAtBest: number;
  attnMax: number;
  attnFinal: number;
  logZAtBest: number;
  logZFinal: number;
  outMaxFinal: number;
}

interface StepLine {
  step: number;
  loss: number | null;
  attn_logit_max?: number;
  output_logit_max?: number;
  output_log_z?: number;
}

async function summarise(r: SweepRun): Promise<Row> {
  const dir = join(out, r.name);
  const lines = (await readFile(join(dir, "log.jsonl"), "utf8"))
    .split("\n")
    .filter((l) => l.includes('"type":"step"'))
    .map((l) => JSON.parse(l) as StepLine);
  const finite = lines.filter((l) => l.loss !== null && Number.isFinite(l.loss));
  const best = finite.reduce((a, b) => (b.loss! < a.loss! ? b : a));
  const last = lines.at(-1)!;
  const report = detectSpikes(await readTrainingLog(dir));
  return {
    name: r.name,
    lr: r.lr,
    warmupSteps: r.warmupSteps,
    layers: r.size.num_hidden_layers,
    width: r.size.hidden_size,
    optimizer:
      r.optimizer === undefined
        ? "-"
        : Object.entries(r.optimizer)
            .map(([k, v]) => `${k} ${v}`)
            .join(", "),
    stepsRun: last.step,
    bestLoss: best.loss!,
    bestStep: best.step,
    finalLoss: last.loss ?? NaN,
    spikes: report.events.map(
      (e) =>
        `${e.kind}@${e.startStep} (peak ${Number.isFinite(e.peakLoss) ? e.peakLoss.toFixed(2) : e.peakLoss})`,
    ),
    attnAtBest: best.attn_logit_max ?? NaN,
    attnMax: Math.max(...lines.map((l) => l.attn_logit_max ?? -Infinity)),
    attnFinal: last.attn_logit_max ?? NaN,
    logZAtBest: best.output_log_z ?? NaN,
    logZFinal: last.output_log_z ?? NaN,
    outMaxFinal: last.output_logit_max ?? NaN,
  };
}

const selected =
  values.only === undefined ? RUNS : RUNS.filter((r) => values.only!.split(",").includes(r.name));
const t0 = performance.now();
const queue = [...selected];
await Promise.all(
  Array.from({ length: jobs }, async () => {
    for (let r = queue.shift(); r !== undefined; r = queue.shift()) await train(r);
  }),
);
const rows = await Promise.all(selected.map(summarise));
const f = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));
const md = [
  `Spike sweep: ${steps} steps of ${tps} tokens, quick-profile data, AdamW (0.9, 0.95, wd 0.1, clip 1.0), constant LR after warmup (AdamW changes in their column); ${((performance.now() - t0) / 60000).toFixed(1)} min.`,
  "",
  "| run | LR | warmup | L x d | AdamW | steps | best loss (step) | final loss | spikes found | attn logit max: at best / max / final | log Z: at best / final | output logit max, final |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.lr} | ${r.warmupSteps} | ${r.layers} x ${r.width} | ${r.optimizer} | ${r.stepsRun} | ${f(r.bestLoss)} (${r.bestStep}) | ${f(r.finalLoss)} | ${r.spikes.join("; ") || "none"} | ${f(r.attnAtBest, 1)} / ${f(r.attnMax, 1)} / ${f(r.attnFinal, 1)} | ${f(r.logZAtBest, 2)} / ${f(r.logZFinal, 2)} | ${f(r.outMaxFinal, 1)} |`,
  ),
].join("\n");
writeFileSync(join(out, "sweep.json"), JSON.stringify({ steps, tokensPerStep: tps, rows }, null, 2));
writeFileSync(join(out, "sweep.md"), md + "\n");
console.log(md);
