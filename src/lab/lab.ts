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
import { anneal } from "./anneal.js";
import { continuedTraining } from "./continued-training.js";
import { LabContext, scoringBackend } from "./context.js";
import { fineTune } from "./fine-tune.js";
import { intervalCount } from "./interval-count.js";
import { Slots } from "./jobs.js";
import { mechanism } from "./mechanism.js";
import { methods } from "./methods.js";
import { labProfile, tokensPerStep, type LabProfile, type ProfileName } from "./profile.js";
import { SILENT_PROGRESS, type LabProgress } from "./progress.js";
import { EXPERIMENT_IDS, type ExperimentId, type ExperimentResult } from "./result.js";
import { LabRuns } from "./runs.js";
import { spike } from "./spike.js";
import { stableMerge } from "./stable-merge.js";
import { hashOf, LAB_VERSION, LabStore } from "./store.js";

export const EXPERIMENTS: Record<ExperimentId, (ctx: LabContext) => Promise<Omit<ExperimentResult, "seconds">>> = {
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
  runs: { name: string; seconds: number }[];
  backend: string;
}

export function experimentKey(profile: LabProfile, id: ExperimentId): string {
  return hashOf({ v: LAB_VERSION, id, profile });
}

export async function runLab(opts: LabOptions): Promise<LabResult> {
  const t0 = performance.now();
  const profile = typeof opts.profile === "object" ? opts.profile : labProfile(opts.profile ?? "quick");
  const ids = opts.experiments ?? EXPERIMENT_IDS;
  for (const id of ids) if (!EXPERIMENT_IDS.includes(id)) throw new PmaError("USAGE", `unknown experiment "${id}" (experiments: ${EXPERIMENT_IDS.join(", ")})`);
  const store = new LabStore(opts.dir, opts.fresh ?? false);
  const progress = opts.progress ?? SILENT_PROGRESS;
  const slots = new Slots(2);
  const runs = new LabRuns(store, slots, progress, opts.signal);
  const backend = await scoringBackend();
  const evaluator = new Evaluator({ backend, ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}) });
  const ctx = new LabContext(profile, store, slots, runs, progress, evaluator, backend, opts.cacheDir, opts.signal);
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
    const failed = settled.flatMap((s, i) => (s.status === "rejected" ? [{ id: chosen[i]!, error: s.reason instanceof Error ? s.reason.message : String(s.reason) }] : []));
    return {
      profile,
      dir: store.dir,
      experiments: results,
      failed,
      seconds: (performance.now() - t0) / 1000,
      runs: await runs.trained(),
      backend: `${backend.name} (${tokensPerStep(profile)} tokens/step)`,
    };
  } finally {
    evaluator.close();
    backend.dispose();
  }
}
