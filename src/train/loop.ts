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
import { isPmaError, PmaError } from "../common/errors.js";
import { acquireLock } from "../common/lock.js";
import { AdamW } from "../nn/adamw.js";
import type { ModelConfig } from "../nn/config.js";
import { describeBackend, getBackend, type MatmulBackend } from "../nn/kernels/index.js";
import { createModel, type Model } from "../nn/model.js";
import { lrAt } from "../nn/schedule.js";
import { WindowSampler, SAMPLER_VERSION } from "../data/batches.js";
import { loadTrainingState, writeCheckpoint, type PmaTrainStateInput } from "./checkpoint.js";
import type { TrainConfig } from "./config.js";
import { adamwOptions, maxSteps, modelConfigFor, scheduleSpec, stepsEvery, tokensPerStep, trainConfigToYaml } from "./config.js";
import { prepareRunData, type RunData } from "../data/run-data.js";
import { HeldoutEvaluator } from "./heldout.js";
import { epochOf, trainerStateJson, type HistoryEntry } from "./hf-state.js";
import { isInside, planStart, requireSameArchitecture, type StartPlan, type StartRequest } from "./resume.js";
import { pruneCheckpoints, removeLeftoverDeletions } from "./prune.js";
import { LOG_FILE, RunLog, type EvalRecord, type StepRecord } from "./run-log.js";
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
  | { type: "start"; runDir: string; config: TrainConfig; model: ModelConfig; parameters: number; step: number; tokens: number; maxSteps: number; maxTokens: number; backend: string; plan: StartPlan }
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
  const backend = opts.backend ?? (await getBackend(plan.config.training.backend === "auto" ? undefined : plan.config.training.backend));
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
      throw new PmaError("EXISTS", `${dir} is not empty; choose another --out, resume a run in it with --resume ${dir}, or pass --force to replace it`, { file: dir });
    }
    for (const from of [plan.weightsFrom, plan.stateFrom?.dir]) {
      if (from != null && isInside(from, dir)) throw new PmaError("USAGE", `--force would delete ${from}, which this run starts from; choose another --out`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true });
}

async function loadStart(plan: StartPlan, model: Model, optimizer: AdamW, modelConfig: ModelConfig): Promise<void> {
  const params = model.params;
  if (plan.stateFrom !== null) {
    await loadTrainingState(plan.stateFrom.dir, plan.stateFrom.state, params, plan.freshOptimizer ? null : optimizer);
  }
  if (plan.weightsFrom !== null && plan.weightsFrom !== plan.stateFrom?.dir) {
    requireSameArchitecture(plan.weightsFrom, await readModelConfig(plan.weightsFrom), modelConfig, "this run's model");
    params.load((await readWeights(plan.weightsFrom)).tensors);
  }
}

function checkSameData(plan: StartPlan, data: RunData, modelConfig: ModelConfig): void {
  const s = plan.stateFrom?.state;
  if (s === undefined) return;
  const where = plan.stateFrom!.dir;
  if (s.tokenizer_sha256 !== data.tokenizerSha256 || s.data.train_sha256 !== data.trainSha256 || s.data.sampler !== SAMPLER_VERSION) {
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${where}: the tokenizer, training tokens or batch sampler differ from those this checkpoint was trained on (another corpus or pma version?); ` +
        "resuming would not see the same batches",
      { file: where },
    );
  }
  if (JSON.stringify(s.model_config) !== JSON.stringify(modelConfig)) {
    throw new PmaError("CHECKPOINT_MISMATCH", `${where}: its model config differs from the one this config resolves to`, { file: where });
  }
}

/**
 * One trainer per run directory: two would interleave log.jsonl and replace each
 * other's checkpoints. The lock sits beside the directory, which --force may delete.
 */
async function runPlan(plan: StartPlan, data: RunData, backend: MatmulBackend, opts: TrainOptions): Promise<TrainResult> {
  const parent = dirname(plan.runDir);
  await mkdir(parent, { recursive: true });
  const lock = await acquireLock(join(parent, `.${basename(plan.runDir)}.pma-lock`), `training into ${plan.runDir}`);
  try {
    return await runLockedPlan(plan, data, backend, opts);
  } finally {
    await lock.release();
  }
}

async function runLockedPlan(plan: StartPlan, data: RunData, backend: MatmulBackend, opts: TrainOptions): Promise<TrainResult> {
  const config = plan.config;
  const emit = opts.onEvent ?? (() => undefined);
  const modelConfig = modelConfigFor(config.model, data.prepared.tokenizer.vocabSize, data.eosId);
  checkSameData(plan, data, modelConfig);
  const recorded = plan.stateFrom?.state.backend;
  if (recorded !== undefined && recorded !== backend.name) {
    emit({ type: "note", message: `the checkpoint was trained with the ${recorded} backend and this run uses ${backend.name}: the continuation will not be bit-identical` });
  }
  await prepareRunDir(plan, opts.force ?? false);
  for (const path of await removeLeftoverDeletions(plan.runDir)) emit({ type: "note", message: `removed ${path}, a checkpoint whose deletion an earlier run did not finish` });

  const { seq_len: S, micro_batch: B, grad_accum: accum } = config.data;
  const model = createModel(modelConfig, backend, { batch: B, seq: S }, { seed: config.training.seed });
  const optimizer = new AdamW(model.params, adamwOptions(config.optimizer));
  await loadStart(plan, model, optimizer, modelConfig);
  const sampler = new WindowSampler(data.train, S, config.data.seed);
  const evaluator =
    config.eval.every_tokens > 0
      ? new HeldoutEvaluator(createModel(modelConfig, backend, { batch: config.eval.batch, seq: S }, { params: model.params, forwardOnly: true }), data.split("validation"), config.eval.max_tokens)
      : null;

  const schedule = scheduleSpec(config.schedule);
  const tps = tokensPerStep(config);
  const lastStep = maxSteps(config);
  const evalEvery = stepsEvery(config, config.eval.every_tokens);
  const saveEvery = stepsEvery(config, config.checkpointing.every_tokens);
  const historyEvery = config.log.history_every_steps;
  const history: HistoryEntry[] = [...plan.history];
  const pending = { ...plan.historyPending };
  let step = plan.step;
  let tokens = plan.tokens;

  await writeFileAtomic(join(plan.runDir, "config.yaml"), trainConfigToYaml(config));
  const log = RunLog.create(join(plan.runDir, LOG_FILE), plan.logPrefix);
  emit({
    type: "start", runDir: plan.runDir, config, model: modelConfig, parameters: model.params.numel, step, tokens, maxSteps: lastStep,
    maxTokens: config.training.max_tokens, backend: describeBackend(backend).summary, plan,
  });
  if (step >= lastStep) emit({ type: "note", message: `step ${step} already reaches training.max_tokens (${config.training.max_tokens} tokens = ${lastStep} steps): nothing to train` });

  const toks = new Int32Array(B * S);
  const tgts = new Int32Array(B * S);
  const grad = model.params.grad;
  const checkpoints: string[] = [];
  let lastLoss = NaN;
  let lastValLoss: number | null = null;
  let trainSeconds = 0;
  let savedStep = -1;
  let interrupted = false;
  // A function, not a property read: the signal changes between reads.
  const aborted = (): boolean => opts.signal?.aborted === true;

  // Called by save() only once the new checkpoint is in place: the newest one is what a resume needs.
  const retention = { keepLast: config.checkpointing.keep_last, keepEveryTokens: config.checkpointing.keep_every_tokens, tokensPerStep: tps };
  const protect = startCheckpointSteps(plan);
  const prune = async (): Promise<void> => {
    try {
      await pruneCheckpoints(plan.runDir, step, retention, protect, (p) => {
        const ckptTokens = p.step * tps;
        log.write({ type: "prune", step, tokens, checkpoint: basename(p.path), checkpoint_step: p.step, checkpoint_tokens: ckptTokens });
        emit({ type: "prune", path: p.path, step: p.step, tokens: ckptTokens });
      });
    } catch (e) {
      // Deleting is housekeeping: the checkpoint is safe, so training goes on, and the
      // next checkpoint's pass retries what is still there.
      if (!isPmaError(e)) throw e;
      emit({ type: "note", message: `could not delete an old checkpoint: ${e.message}` });
    }
  };

  const save = async (): Promise<void> => {
    const state: PmaTrainStateInput = {
      global_step: step,
      tokens,
      optimizerStep: optimizer.steps,
      data: { corpus: config.data.corpus, sampler: SAMPLER_VERSION, seed: config.data.seed, next_step: step, train_tokens: data.train.length, train_sha256: data.trainSha256 },
      history_pending: { ...pending },
      config,
      model_config: modelConfig,
      tokenizer_sha256: data.tokenizerSha256,
      backend: backend.name,
      lineage: plan.lineage,
    };
    const trainerState = trainerStateJson({
      step, tokens, maxSteps: lastStep, epochTokens: data.train.length, maxTokens: config.training.max_tokens, history,
      loggingSteps: historyEvery, evalSteps: evalEvery, saveSteps: saveEvery, trainBatchSize: B, totalFlos: 6 * model.params.numel * tokens,
    });
    const path = await writeCheckpoint({ runDir: plan.runDir, params: model.params, optimizer, state, trainerState, tokenizerJson: data.tokenizerJson });
    checkpoints.push(path);
    savedStep = step;
    emit({ type: "checkpoint", path, step, tokens });
    await prune();
  };

  try {
    while (step < lastStep) {
      // Yield to the event loop once per step: signal handlers (Ctrl-C) and the progress
      // bar's timers only run between tasks, never inside this synchronous loop.
      await new Promise<void>((r) => setImmediate(r));
      if (aborted()) {
        interrupted = true;
        break;
      }
      const t0 = performance.now();
      model.zeroGrad();
      let lossSum = 0;
      let ceSum = 0;
      for (let a = 0; a < accum; a++) {
        sampler.fill(step, a, toks, tgts);
        lossSum += model.forward(toks, tgts);
        ceSum += model.lastLoss.ce;
        model.backward();
      }
      // backward() adds each micro-batch's mean-loss gradient: average them, as one big batch would.
      if (accum > 1) {
        const inv = 1 / accum;
        for (let i = 0; i < grad.length; i++) grad[i] = grad[i]! * inv;
      }
      const loss = lossSum / accum;
      const nextTokens = tokens + tps;
      // The LR of a step is the schedule at the token count the step reaches (schedule.ts).
      const lr = lrAt(schedule, nextTokens);
      // A non-finite loss or gradient stops the run before the parameters change (AdamW
      // refuses the update); the step is logged with nulls so the log shows where.
      let gradNorm = NaN;
      try {
        if (Number.isFinite(loss)) gradNorm = optimizer.step(lr);
      } catch (e) {
        if (!isPmaError(e, "NONFINITE")) throw e;
      }
      if (!Number.isFinite(gradNorm)) {
        const norm = Number.isFinite(loss) ? optimizer.gradNorm() : NaN;
        log.write({ type: "step", step: step + 1, tokens: nextTokens, loss, lr, grad_norm: norm, seconds: (performance.now() - t0) / 1000 });
        const last = checkpoints.at(-1) ?? plan.stateFrom?.dir ?? null;
        throw new PmaError(
          "NONFINITE",
          `training diverged at step ${step + 1} (${Number.isFinite(loss) ? `gradient norm is ${norm}` : `loss is ${loss}`}); parameters were not updated` +
            (last !== null ? `. Restart from ${last} with a lower learning rate, or from a merge of earlier checkpoints (PMA-init)` : ""),
        );
      }
      step++;
      tokens = nextTokens;
      const seconds = (performance.now() - t0) / 1000;
      trainSeconds += seconds;
      lastLoss = loss;
      const record: StepRecord = { type: "step", step, tokens, loss, lr, grad_norm: gradNorm, seconds };
      if (model.lastLoss.aux !== 0) record.ce = ceSum / accum;
      log.write(record);
      pending.steps++;
      pending.loss_sum += loss;
      if (step % historyEvery === 0 || step === lastStep) {
        history.push({ epoch: epochOf(tokens, data.train.length), grad_norm: gradNorm, learning_rate: lr, loss: pending.loss_sum / pending.steps, num_input_tokens_seen: tokens, step });
        pending.steps = 0;
        pending.loss_sum = 0;
        pending.first_step = step + 1;
      }
      emit({ type: "step", record, maxTokens: config.training.max_tokens });

      // A scheduled evaluation runs even when stopping: a resumed run starts after this
      // step and would never make it up, leaving a hole in the log.
      const stopping = aborted();
      if (evaluator !== null && (step % evalEvery === 0 || step === lastStep)) {
        const e0 = performance.now();
        const r = evaluator.run();
        const evalRecord: EvalRecord = { type: "eval", step, tokens, val_loss: r.loss, val_tokens: r.tokens, seconds: (performance.now() - e0) / 1000 };
        log.write(evalRecord);
        history.push({ epoch: epochOf(tokens, data.train.length), eval_loss: r.loss, eval_runtime: evalRecord.seconds, num_input_tokens_seen: tokens, step });
        lastValLoss = r.loss;
        emit({ type: "eval", record: evalRecord });
      }
      if ((saveEvery > 0 && step % saveEvery === 0) || step === lastStep || stopping) await save();
      if (stopping) {
        interrupted = true;
        break;
      }
    }
    if (interrupted && savedStep !== step && step > plan.step) await save();
  } finally {
    log.close();
  }
  return {
    runDir: plan.runDir,
    step,
    tokens,
    checkpoints,
    interrupted,
    lastLoss,
    lastValLoss,
    trainSeconds,
    tokensPerSecond: trainSeconds > 0 ? ((step - plan.step) * tps) / trainSeconds : 0,
    config,
  };
}

/**
 * Steps of the checkpoints of this run directory the run started from (a resume in
 * place): a user who pointed --resume at one expects it to still be there afterwards,
 * so this process never deletes it; a later start, no longer starting from it, may.
 */
function startCheckpointSteps(plan: StartPlan): Set<number> {
  const steps = new Set<number>();
  for (const dir of [plan.stateFrom?.dir, plan.weightsFrom]) {
    const m = dir == null || dirname(dir) !== plan.runDir ? null : /^checkpoint-(\d+)$/.exec(basename(dir));
    if (m != null) steps.add(Number(m[1]));
  }
  return steps;
}
