/**
 * The training loop: fixed-length windows from the train split (a pure function of
 * (seed, step)), gradient accumulation over micro-batches, AdamW with a token-based
 * LR schedule, validation loss every M tokens, a checkpoint every K tokens, one JSONL
 * log line per step and per evaluation. Stopping early (an AbortSignal: Ctrl-C)
 * finishes the current step and writes a checkpoint, so nothing trained is lost.
 *
 * Exact resume: every quantity a step depends on is either saved (parameters,
 * AdamW moments and step, the token count) or a pure function of the step number
 * (batch, learning rate), so K steps + resume + K steps equals 2K steps bit for bit
 * on the same matmul backend.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { acquireLock } from "../common/lock.js";
import { AdamW } from "../nn/adamw.js";
import type { ModelConfig } from "../nn/config.js";
import { describeBackend, getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel, type Model } from "../nn/model.js";
import { WindowSampler, SAMPLER_VERSION } from "../data/batches.js";
import { loadTrainingState } from "./checkpoint.js";
import type { TrainConfig } from "./config.js";
import { adamwOptions, maxSteps, modelConfigFor, trainConfigToYaml } from "./config.js";
import { prepareRunData, type RunData } from "../data/run-data.js";
import { HeldoutEvaluator } from "./heldout.js";
import { isInside, planStart, requireSameArchitecture, type StartPlan, type StartRequest } from "./resume.js";
import { removeLeftoverDeletions } from "./prune.js";
import { LOG_FILE, RunLog, type EvalRecord, type StepRecord } from "./run-log.js";
import { TrainingSession } from "./session.js";
import { readModelConfig, readWeights } from "./weights-io.js";

export interface TrainOptions extends StartRequest {
  /** Replace a non-empty output directory. */
  force?: boolean;
  /** Tokenizer / token cache directory (default $PMA_CACHE_DIR or ~/.cache/pma). */
  cacheDir?: string;
  /** Matmul backend to use (default: training.backend of the config); not disposed. */
  backend?: MatmulBackend;
  /** Abort: finish the step, write a checkpoint, return with `interrupted`. */
  signal?: AbortSignal;
  onEvent?: (e: TrainEvent) => void;
}

export type TrainEvent =
  | {
      type: "start";
      runDir: string;
      config: TrainConfig;
      model: ModelConfig;
      parameters: number;
      step: number;
      tokens: number;
      maxSteps: number;
      maxTokens: number;
      backend: string;
      plan: StartPlan;
    }
  | { type: "step"; record: StepRecord; maxTokens: number }
  | { type: "eval"; record: EvalRecord }
  | { type: "checkpoint"; path: string; step: number; tokens: number }
  | { type: "prune"; path: string; step: number; tokens: number }
  | { type: "note"; message: string };

export interface TrainResult {
  runDir: string;
  step: number;
  tokens: number;
  /** Checkpoints written by this call, in order (checkpointing.keep_last may have deleted all but the last since). */
  checkpoints: string[];
  interrupted: boolean;
  /** Mean training loss of the last step (NaN when no step ran). */
  lastLoss: number;
  /** Last validation loss of this call (null when none ran). */
  lastValLoss: number | null;
  /** Wall time of the steps alone, and tokens per second over them. */
  trainSeconds: number;
  tokensPerSecond: number;
  config: TrainConfig;
}

/** Trains (or resumes, forks) a run as `opts` says; see resume.ts for the kinds of start. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const plan = await planStart(opts);
  const data = prepareRunData(plan.config.data, opts.cacheDir);
  const ownBackend = opts.backend === undefined;
  const backend =
    opts.backend ??
    (await getBackend(plan.config.training.backend === "auto" ? undefined : plan.config.training.backend));
  try {
    return await runPlan(plan, data, backend, opts);
  } finally {
    if (ownBackend) backend.dispose();
  }
}

async function prepareRunDir(plan: StartPlan, force: boolean): Promise<void> {
  const dir = plan.runDir;
  if (!plan.inPlace && existsSync(dir) && readdirSync(dir).length > 0) {
    if (!force) {
      throw new PmaError(
        "EXISTS",
        `${dir} is not empty; choose another --out, resume a run in it with --resume ${dir}, or pass --force to replace it`,
        { file: dir },
      );
    }
    for (const from of [plan.weightsFrom, plan.stateFrom?.dir]) {
      if (from != null && isInside(from, dir))
        throw new PmaError(
          "USAGE",
          `--force would delete ${from}, which this run starts from; choose another --out`,
        );
    }
    rmSync(dir, { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true });
}

async function loadStart(
  plan: StartPlan,
  model: Model,
  optimizer: AdamW,
  modelConfig: ModelConfig,
): Promise<void> {
  const params = model.params;
  if (plan.stateFrom !== null) {
    await loadTrainingState(
      plan.stateFrom.dir,
      plan.stateFrom.state,
      params,
      plan.freshOptimizer ? null : optimizer,
    );
  }
  if (plan.weightsFrom !== null && plan.weightsFrom !== plan.stateFrom?.dir) {
    requireSameArchitecture(
      plan.weightsFrom,
      await readModelConfig(plan.weightsFrom),
      modelConfig,
      "this run's model",
    );
    params.load((await readWeights(plan.weightsFrom)).tensors);
  }
}

function checkSameData(plan: StartPlan, data: RunData, modelConfig: ModelConfig): void {
  const s = plan.stateFrom?.state;
  if (s === undefined) return;
  const where = plan.stateFrom!.dir;
  if (
    s.tokenizer_sha256 !== data.tokenizerSha256 ||
    s.data.train_sha256 !== data.trainSha256 ||
    s.data.sampler !== SAMPLER_VERSION
  ) {
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${where}: the tokenizer, training tokens or batch sampler differ from those this checkpoint was trained on (another corpus or pma version?); ` +
        "resuming would not see the same batches",
      { file: where },
    );
  }
  if (JSON.stringify(s.model_config) !== JSON.stringify(modelConfig)) {
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${where}: its model config differs from the one this config resolves to`,
      { file: where },
    );
  }
}

/**
 * One trainer per run directory: two would interleave log.jsonl and replace each
 * other's checkpoints. The lock sits beside the directory, which --force may delete.
 */
async function runPlan(
  plan: StartPlan,
  data: RunData,
  backend: MatmulBackend,
  opts: TrainOptions,
): Promise<TrainResult> {
  const parent = dirname(plan.runDir);
  await mkdir(parent, { recursive: true });
  const lock = await acquireLock(
    join(parent, `.${basename(plan.runDir)}.pma-lock`),
    `training into ${plan.runDir}`,
  );
  try {
    return await runLockedPlan(plan, data, backend, opts);
  } finally {
    await lock.release();
  }
}

async function runLockedPlan(
  plan: StartPlan,
  data: RunData,
  backend: MatmulBackend,
  opts: TrainOptions,
): Promise<TrainResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const modelConfig = modelConfigFor(plan.config.model, data.prepared.tokenizer.vocabSize, data.eosId);
  await checkStart(plan, data, backend, modelConfig, opts.force ?? false, emit);
  const parts = await buildModel(plan, data, backend, modelConfig);
  const log = await openRunLog(plan, modelConfig, parts.model, backend, emit);
  return new TrainingSession({
    plan,
    data,
    backend,
    modelConfig,
    ...parts,
    log,
    emit,
    signal: opts.signal,
  }).run();
}

/** Refuses a start on other data, warns about another backend, and readies the run directory. */
async function checkStart(
  plan: StartPlan,
  data: RunData,
  backend: MatmulBackend,
  modelConfig: ModelConfig,
  force: boolean,
  emit: (e: TrainEvent) => void,
): Promise<void> {
  checkSameData(plan, data, modelConfig);
  const recorded = plan.stateFrom?.state.backend;
  if (recorded !== undefined && recorded !== backend.name) {
    emit({
      type: "note",
      message: `the checkpoint was trained with the ${recorded} backend and this run uses ${backend.name}: the continuation will not be bit-identical`,
    });
  }
  await prepareRunDir(plan, force);
  for (const path of await removeLeftoverDeletions(plan.runDir))
    emit({
      type: "note",
      message: `removed ${path}, a checkpoint whose deletion an earlier run did not finish`,
    });
}

/** The model and optimizer at the start's weights and state, the batch sampler, and the evaluator. */
async function buildModel(plan: StartPlan, data: RunData, backend: MatmulBackend, modelConfig: ModelConfig) {
  const config = plan.config;
  const { seq_len: S, micro_batch: B } = config.data;
  const model = createModel(modelConfig, backend, { batch: B, seq: S }, { seed: config.training.seed });
  const optimizer = new AdamW(model.params, adamwOptions(config.optimizer));
  await loadStart(plan, model, optimizer, modelConfig);
  const sampler = new WindowSampler(data.train, S, config.data.seed);
  const evaluator =
    config.eval.every_tokens > 0
      ? new HeldoutEvaluator(
          createModel(
            modelConfig,
            backend,
            { batch: config.eval.batch, seq: S },
            { params: model.params, forwardOnly: true },
          ),
          data.split("validation"),
          config.eval.max_tokens,
        )
      : null;
  return { model, optimizer, sampler, evaluator };
}

/** Writes the run's config.yaml, opens its log and announces the start. */
async function openRunLog(
  plan: StartPlan,
  modelConfig: ModelConfig,
  model: Model,
  backend: MatmulBackend,
  emit: (e: TrainEvent) => void,
): Promise<RunLog> {
  const config = plan.config;
  const lastStep = maxSteps(config);
  await writeFileAtomic(join(plan.runDir, "config.yaml"), trainConfigToYaml(config));
  const log = RunLog.create(join(plan.runDir, LOG_FILE), plan.logPrefix);
  emit({
    type: "start",
    runDir: plan.runDir,
    config,
    model: modelConfig,
    parameters: model.params.numel,
    step: plan.step,
    tokens: plan.tokens,
    maxSteps: lastStep,
    maxTokens: config.training.max_tokens,
    backend: describeBackend(backend).summary,
    plan,
  });
  if (plan.step >= lastStep)
    emit({
      type: "note",
      message: `step ${plan.step} already reaches training.max_tokens (${config.training.max_tokens} tokens = ${lastStep} steps): nothing to train`,
    });
  return log;
}
