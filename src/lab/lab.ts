/**
 * `pma lab`: the paper's experiments at laptop scale, end to end. Each experiment is one
 * module (one question of the paper); they run concurrently and share the training runs
 * they need, which train once each in child processes (two at a time) while the parent
 * merges and scores. Each experiment's result is cached under the hash of the profile:
 * a rerun with the same settings recomputes nothing, a changed setting recomputes what
 * depends on it (runs, merges and scores are content-addressed in the lab folder), and
 * `fresh` recomputes everything.
 */
import { PmaError } from "../common/errors.js";
import { Evaluator } from "../eval/evaluate.js";
import { describeBackend } from "../nn/kernels/index.js";
import { anneal } from "./anneal.js";
import { continuedTraining } from "./continued-training.js";
import { LabContext, scoringBackend } from "./context.js";
import { fineTune } from "./fine-tune.js";
import { intervalCount } from "./interval-count.js";
import { loadavg } from "node:os";
import { modelConfigFor } from "../train/config.js";
import { paramLayout } from "../nn/params.js";
import { cpuSeconds } from "./cpu.js";
import { childCpu, Slots } from "./jobs.js";
import { mechanism } from "./mechanism.js";
import { methods } from "./methods.js";
import { labProfile, tokensPerStep, type LabProfile, type ProfileName } from "./profile.js";
import { SILENT_PROGRESS, type LabProgress } from "./progress.js";
import { EXPERIMENT_IDS, type ExperimentId, type ExperimentResult } from "./result.js";
import { LabRuns } from "./runs.js";
import { profileForKey, withSeeds } from "./seeds.js";
import { spike } from "./spike.js";
import { stableMerge } from "./stable-merge.js";
import { hashOf, LAB_VERSION, LabStore } from "./store.js";

export const EXPERIMENTS: Record<
  ExperimentId,
  (ctx: LabContext) => Promise<Omit<ExperimentResult, "seconds">>
> = {
  "stable-merge": stableMerge,
  anneal,
  methods,
  "interval-count": intervalCount,
  "continued-training": continuedTraining,
  "fine-tune": fineTune,
  spike,
  mechanism,
};

export interface LabOptions {
  /** The lab's working folder (runs, merges, scores, results). */
  dir: string;
  profile?: ProfileName | LabProfile;
  /** Default: all eight. */
  experiments?: readonly ExperimentId[];
  /** Recompute everything, ignoring what is cached in `dir`. */
  fresh?: boolean;
  progress?: LabProgress;
  signal?: AbortSignal;
  /** Tokenizer / token cache (default $PMA_CACHE_DIR or ~/.cache/pma). */
  cacheDir?: string;
  /** Seeds of the seeded experiments (seeds.ts), instead of the profile's count. */
  seeds?: number;
}

export interface LabResult {
  profile: LabProfile;
  dir: string;
  /** In the order of EXPERIMENT_IDS; `cached` when read from an earlier run. */
  experiments: (ExperimentResult & { cached: boolean })[];
  /** Experiments that stopped with an error (the others still ran). */
  failed: { id: ExperimentId; error: string }[];
  /** Wall time of this call. */
  seconds: number;
  /** Every training run the experiments used, with how long it took when it was trained. */
  runs: { name: string; seconds: number; cpuSeconds: number }[];
  backend: string;
  tokensPerStep: number;
  models: ModelSummary[];
  /** Tokens each kind of run trains on. */
  tokenCounts: Record<string, number>;
  /** CPU time of this call: the parent and every worker it started. */
  cpuSeconds: number;
  parentCpuSeconds: number;
  /** os.loadavg() when the call started: other work on the machine slows the wall time. */
  loadAverage: number[];
}

export interface ModelSummary {
  name: "dense" | "MoE";
  description: string;
  parameters: number;
  nonEmbedding: number;
}

export function modelSummaries(p: LabProfile): ModelSummary[] {
  const out: ModelSummary[] = [];
  for (const preset of ["dense", "moe"] as const) {
    const size = preset === "dense" ? p.dense : p.moe;
    const cfg = modelConfigFor(
      {
        preset,
        num_key_value_heads: size.num_attention_heads,
        head_dim: size.hidden_size / size.num_attention_heads,
        max_position_embeddings: p.data.seq_len,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        tie_word_embeddings: true,
        initializer_range: 0.02,
        num_local_experts: 0,
        num_experts_per_tok: 2,
        router_aux_loss_coef: 0.01,
        ...size,
      },
      p.data.vocab_size,
      0,
    );
    const layout = paramLayout(cfg);
    const last = layout[layout.length - 1]!;
    const parameters = last.offset + last.size;
    const arch = `d_model ${size.hidden_size}, ${size.num_hidden_layers} layers, ${size.num_attention_heads} heads, vocab ${p.data.vocab_size}, tied embeddings, sequence ${p.data.seq_len}`;
    out.push({
      name: preset === "dense" ? "dense" : "MoE",
      description:
        preset === "dense"
          ? `Llama-style (${arch}, SwiGLU ${size.intermediate_size})`
          : `Mixtral-style (${arch}, ${p.moe.num_local_experts} SwiGLU experts of ${size.intermediate_size}, top-2)`,
      parameters,
      nonEmbedding: parameters - p.data.vocab_size * size.hidden_size,
    });
  }
  return out;
}

export function tokenCounts(p: LabProfile): Record<string, number> {
  const tps = tokensPerStep(p);
  return {
    "dense pre-training": p.denseSteps * tps,
    "MoE pre-training": p.moeSteps * tps,
    "annealed fork": (p.denseSteps - p.anneal.forkStep) * tps,
    "spike fork and each restart (induced control)": p.spike.steps * tps,
    "each spontaneous-spike run (seeds x run and restart)": p.spontaneous.steps * tps,
    "each continued-training run (WordNet)": p.ct.steps * tps,
    "each fine-tuning run (positions)": p.sft.steps * p.sft.batch * p.sft.seq,
  };
}

export function experimentKey(profile: LabProfile, id: ExperimentId): string {
  return hashOf({ v: LAB_VERSION, id, ...profileForKey(profile, id) });
}

export async function runLab(opts: LabOptions): Promise<LabResult> {
  const t0 = performance.now();
  const cpu0 = cpuSeconds();
  const child0 = childCpu.seconds;
  const loadAverage = loadavg();
  const base = typeof opts.profile === "object" ? opts.profile : labProfile(opts.profile ?? "quick");
  const profile = opts.seeds === undefined ? base : withSeeds(base, opts.seeds);
  const ids = opts.experiments ?? EXPERIMENT_IDS;
  for (const id of ids)
    if (!EXPERIMENT_IDS.includes(id))
      throw new PmaError("USAGE", `unknown experiment "${id}" (experiments: ${EXPERIMENT_IDS.join(", ")})`);
  const store = new LabStore(opts.dir, opts.fresh ?? false);
  const progress = opts.progress ?? SILENT_PROGRESS;
  const slots = new Slots(2);
  const runs = new LabRuns(store, slots, progress, opts.signal, opts.cacheDir);
  const backend = await scoringBackend();
  const evaluator = new Evaluator({
    backend,
    ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
  });
  const ctx = new LabContext(
    profile,
    store,
    slots,
    runs,
    progress,
    evaluator,
    backend,
    opts.cacheDir,
    opts.signal,
  );
  try {
    const chosen = EXPERIMENT_IDS.filter((id) => ids.includes(id));
    // allSettled: one failing experiment must not pull the backend from under the others.
    const settled = await Promise.allSettled(
      chosen.map(async (id) => {
        const key = experimentKey(profile, id);
        const hit = store.readResult<ExperimentResult>(id, key);
        if (hit !== undefined) {
          progress.finished(id, hit.seconds, true);
          return { ...hit, cached: true };
        }
        const s0 = performance.now();
        const r = await EXPERIMENTS[id](ctx);
        const result: ExperimentResult = { ...r, seconds: (performance.now() - s0) / 1000 };
        await store.writeResult(id, key, result);
        progress.finished(id, result.seconds, false);
        return { ...result, cached: false };
      }),
    );
    const results = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const failed = settled.flatMap((s, i) =>
      s.status === "rejected"
        ? [{ id: chosen[i]!, error: s.reason instanceof Error ? s.reason.message : String(s.reason) }]
        : [],
    );
    return {
      profile,
      dir: store.dir,
      experiments: results,
      failed,
      seconds: (performance.now() - t0) / 1000,
      runs: await runs.trained(),
      backend: `${describeBackend(backend).name} backend, one matmul thread per process, two training processes at a time`,
      tokensPerStep: tokensPerStep(profile),
      models: modelSummaries(profile),
      tokenCounts: tokenCounts(profile),
      cpuSeconds: cpuSeconds() - cpu0 + childCpu.seconds - child0,
      parentCpuSeconds: cpuSeconds() - cpu0,
      loadAverage,
    };
  } finally {
    await ctx.close();
    evaluator.close();
    backend.dispose();
  }
}
