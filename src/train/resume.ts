/**
 * Where a training process starts: from scratch, or from a checkpoint. A resume comes
 * in four kinds, decided here and nowhere else:
 *
 *   plain resume   weights + optimizer + position from one pma checkpoint, same schedule:
 *                  continues bit-identically, by default in that checkpoint's run dir
 *   fork           the same, but with a new schedule or optimizer settings (starting at
 *                  the checkpoint's token count): a new run dir (--out)
 *   weights-only   weights from a checkpoint, a fresh AdamW; step and data position
 *                  continue from the checkpoint's state when it has one, else step 0
 *   optimizer-from weights from one folder (e.g. a merge: PMA-init) and optimizer,
 *                  step, data position and config from a pma checkpoint
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { readTrainerState } from "../formats/trainer-state.js";
import type { ModelConfig } from "../nn/config.js";
import { isMoe } from "../nn/config.js";
import type { ModelSection, TrainConfig } from "./config.js";
import { parseTrainConfig } from "./config.js";
import type { Lineage, PmaTrainState } from "./checkpoint.js";
import { PMA_STATE_FILE, readPmaState } from "./checkpoint.js";
import { historyUpTo, type HistoryEntry } from "./hf-state.js";
import { LOG_FILE, logPrefix } from "./run-log.js";
import { readModelConfig } from "./weights-io.js";

export interface StartRequest {
  /** The config overlay (parsed YAML/JSON, CLI flags already merged in). */
  config?: unknown;
  /** Names the overlay's source in errors, e.g. "run.yaml". */
  configSource?: string;
  /** Run directory; default for a plain resume: the checkpoint's run. */
  out?: string;
  /** A checkpoint folder (or a run directory: its latest pma checkpoint), or a merge. */
  resume?: string;
  /** The pma checkpoint whose optimizer, step, data position and config continue. */
  optimizerFrom?: string;
  /** Start AdamW fresh (moments zero, bias correction from step 1). */
  weightsOnly?: boolean;
}

export interface StartPlan {
  config: TrainConfig;
  runDir: string;
  /** Continuing in the run directory that holds the state checkpoint. */
  inPlace: boolean;
  step: number;
  tokens: number;
  /** Folder to load weights from (null: initialise from the seed). */
  weightsFrom: string | null;
  /** Checkpoint whose pma state continues (null: a fresh start or weights alone). */
  stateFrom: { dir: string; state: PmaTrainState } | null;
  freshOptimizer: boolean;
  fork: boolean;
  history: HistoryEntry[];
  historyPending: PmaTrainState["history_pending"];
  logPrefix: string;
  lineage: Lineage[];
}

const EMPTY_PENDING = { steps: 0, loss_sum: 0, first_step: 1 };

/** A checkpoint folder as given, or the latest `checkpoint-N` with a pma state inside a run folder. */
export function resolveCheckpointDir(path: string): string {
  const abs = resolve(path);
  if (!existsSync(abs))
    throw new PmaError("IO", `${abs}: no such checkpoint or run directory`, { file: abs });
  if (existsSync(join(abs, "config.json"))) return abs;
  let best: { step: number; dir: string } | null = null;
  for (const e of readdirSync(abs, { withFileTypes: true })) {
    const m = /^checkpoint-(\d+)$/.exec(e.name);
    if (!e.isDirectory() || m === null || !existsSync(join(abs, e.name, PMA_STATE_FILE))) continue;
    const step = Number(m[1]);
    if (best === null || step > best.step) best = { step, dir: join(abs, e.name) };
  }
  if (best === null)
    throw new PmaError(
      "IO",
      `${abs}: neither a checkpoint (no config.json) nor a run with pma checkpoints (checkpoint-N/${PMA_STATE_FILE})`,
      { file: abs },
    );
  return best.dir;
}

export function isInside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/** The model section describing an existing model (a merge or foreign checkpoint being trained on). */
function modelSectionOf(c: ModelConfig): ModelSection {
  return {
    preset: isMoe(c) ? "moe" : "dense",
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    tie_word_embeddings: c.tie_word_embeddings,
    initializer_range: c.initializer_range,
    num_local_experts: c.num_local_experts,
    num_experts_per_tok: c.num_experts_per_tok,
    router_aux_loss_coef: c.router_aux_loss_coef,
  };
}

/** Refuses a change of any field of `section` between the checkpoint's config and the new one. */
function requireSame(where: string, section: "model" | "data", before: object, after: object): void {
  const a = before as Record<string, unknown>;
  const b = after as Record<string, unknown>;
  for (const k of Object.keys(a)) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) {
      throw new PmaError(
        "CONFIG_INVALID",
        `${where}: ${section}.${k} cannot change when resuming (the checkpoint has ${JSON.stringify(a[k])}, the config says ${JSON.stringify(b[k])}); ` +
          `${section === "model" ? "a different model needs a fresh run" : "exact batches need the same data settings"}`,
      );
    }
  }
}

/** Architecture fields that must agree between weights and the training state they join. */
const ARCH_FIELDS: (keyof ModelConfig)[] = [
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "rms_norm_eps",
  "rope_theta",
  "tie_word_embeddings",
  "num_local_experts",
  "num_experts_per_tok",
];

export function requireSameArchitecture(
  weightsDir: string,
  weights: ModelConfig,
  expected: ModelConfig,
  expectedFrom: string,
): void {
  for (const k of ARCH_FIELDS) {
    if (weights[k] !== expected[k]) {
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `${join(weightsDir, "config.json")}: ${k} is ${JSON.stringify(weights[k])} but ${expectedFrom} has ${JSON.stringify(expected[k])}; the weights must come from the same architecture`,
        { file: weightsDir },
      );
    }
  }
}

export async function planStart(req: StartRequest): Promise<StartPlan> {
  const where = req.configSource ?? "config";
  if (req.resume === undefined) {
    if (req.optimizerFrom !== undefined || req.weightsOnly === true)
      throw new PmaError("USAGE", "--optimizer-from and --weights-only need --resume DIR");
    if (req.out === undefined) throw new PmaError("USAGE", "a new run needs an output directory (--out DIR)");
    return {
      config: parseTrainConfig(req.config, where),
      runDir: resolve(req.out),
      inPlace: false,
      step: 0,
      tokens: 0,
      weightsFrom: null,
      stateFrom: null,
      freshOptimizer: true,
      fork: false,
      history: [],
      historyPending: EMPTY_PENDING,
      logPrefix: "",
      lineage: [],
    };
  }
  const weightsDir = resolveCheckpointDir(req.resume);
  const ownState = await readPmaState(weightsDir);
  const stateDir =
    req.optimizerFrom !== undefined
      ? resolveCheckpointDir(req.optimizerFrom)
      : ownState !== null
        ? weightsDir
        : null;
  const weightsOnly = req.weightsOnly === true;

  if (stateDir === null) {
    if (!weightsOnly) {
      throw new PmaError(
        "USAGE",
        `${weightsDir} has no ${PMA_STATE_FILE} (a merge or a foreign checkpoint): pass --optimizer-from CKPT to continue a pma checkpoint's ` +
          "optimizer, step and data position with these weights, or --weights-only to train them from step 0 with a fresh optimizer",
      );
    }
    if (req.out === undefined)
      throw new PmaError("USAGE", "training from a folder's weights alone writes a new run: give --out DIR");
    const weightsConfig = await readModelConfig(weightsDir);
    const base = parseTrainConfig({}, where);
    const config = parseTrainConfig(req.config, where, {
      base: { ...base, model: modelSectionOf(weightsConfig) },
    });
    return {
      config,
      runDir: resolve(req.out),
      inPlace: false,
      step: 0,
      tokens: 0,
      weightsFrom: weightsDir,
      stateFrom: null,
      freshOptimizer: true,
      fork: true,
      history: [],
      historyPending: EMPTY_PENDING,
      logPrefix: "",
      lineage: [{ weights: weightsDir, state: null, step: 0, tokens: 0, fresh_optimizer: true }],
    };
  }

  const state = stateDir === weightsDir ? ownState : await readPmaState(stateDir);
  if (state === null)
    throw new PmaError("USAGE", `--optimizer-from ${stateDir}: not a pma checkpoint (no ${PMA_STATE_FILE})`);
  const config = parseTrainConfig(req.config, where, { base: state.config, forkTokens: state.tokens });
  requireSame(where, "model", state.config.model, config.model);
  requireSame(where, "data", state.config.data, config.data);
  if (weightsDir !== stateDir)
    requireSameArchitecture(weightsDir, await readModelConfig(weightsDir), state.model_config, stateDir);
  const changed =
    JSON.stringify(config.schedule) !== JSON.stringify(state.config.schedule) ||
    JSON.stringify(config.optimizer) !== JSON.stringify(state.config.optimizer);
  const fork = changed || weightsOnly || weightsDir !== stateDir;
  const stateRun = dirname(stateDir);
  let runDir: string;
  if (req.out !== undefined) runDir = resolve(req.out);
  else if (fork) {
    throw new PmaError(
      "USAGE",
      `this resume is a fork (${describeFork(changed, weightsOnly, weightsDir !== stateDir)}): write it to a new run with --out DIR`,
    );
  } else runDir = stateRun;
  const inPlace = runDir === stateRun;
  if (inPlace && fork) {
    throw new PmaError(
      "USAGE",
      `a fork cannot write into ${stateRun}, the run it forks from (its checkpoints would mix two trajectories); choose another --out`,
    );
  }
  const trainerState = await readTrainerState(stateDir);
  const step = state.global_step;
  const lineage = [...state.lineage];
  if (fork)
    lineage.push({
      weights: weightsDir,
      state: stateDir,
      step,
      tokens: state.tokens,
      fresh_optimizer: weightsOnly,
    });
  return {
    config,
    runDir,
    inPlace,
    step,
    tokens: state.tokens,
    weightsFrom: weightsDir,
    stateFrom: { dir: stateDir, state },
    freshOptimizer: weightsOnly,
    fork,
    history: trainerState === null ? [] : historyUpTo(trainerState.raw, step),
    historyPending: state.history_pending,
    logPrefix: logPrefix(join(stateRun, LOG_FILE), step),
    lineage,
  };
}

function describeFork(changed: boolean, weightsOnly: boolean, otherWeights: boolean): string {
  const why: string[] = [];
  if (changed) why.push("new schedule or optimizer settings");
  if (weightsOnly) why.push("fresh optimizer");
  if (otherWeights) why.push("weights from another folder");
  return why.join(", ");
}
