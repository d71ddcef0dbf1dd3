/**
 * One training call on a locked run directory, in named steps: `trainStep` takes one
 * optimizer step, `evaluate` scores the held-out windows when scheduled, `save` writes a
 * checkpoint and prunes old ones, `run` repeats them until the token budget is spent or
 * the caller aborts. loop.ts builds the parts (model, optimizer, data, log) and starts it.
 */
import { basename, dirname } from "node:path";
import { isPmaError, PmaError } from "../common/errors.js";
import { SAMPLER_VERSION, type WindowSampler } from "../data/batches.js";
import type { RunData } from "../data/run-data.js";
import type { AdamW } from "../nn/adamw.js";
import type { ModelConfig } from "../nn/config.js";
import type { MatmulBackend } from "../nn/kernels/index.js";
import type { LogitStats, Model } from "../nn/model.js";
import { lrAt } from "../nn/schedule.js";
import { writeCheckpoint, type PmaTrainStateInput } from "./checkpoint.js";
import type { TrainConfig } from "./config.js";
import { maxSteps, scheduleSpec, stepsEvery, tokensPerStep } from "./config.js";
import type { HeldoutEvaluator } from "./heldout.js";
import { epochOf, trainerStateJson, type HistoryEntry } from "./hf-state.js";
import type { TrainEvent, TrainResult } from "./loop.js";
import { pruneCheckpoints } from "./prune.js";
import type { StartPlan } from "./resume.js";
import type { EvalRecord, RunLog, StepRecord } from "./run-log.js";

/** What a session trains with, built and loaded by loop.ts. */
export interface SessionParts {
  plan: StartPlan;
  data: RunData;
  backend: MatmulBackend;
  modelConfig: ModelConfig;
  model: Model;
  optimizer: AdamW;
  sampler: WindowSampler;
  evaluator: HeldoutEvaluator | null;
  log: RunLog;
  emit: (e: TrainEvent) => void;
  signal: AbortSignal | undefined;
}

export class TrainingSession {
  private readonly config: TrainConfig;
  private readonly schedule;
  private readonly tps: number;
  private readonly lastStep: number;
  private readonly evalEvery: number;
  private readonly saveEvery: number;
  private readonly historyEvery: number;
  private readonly history: HistoryEntry[];
  private readonly pending: StartPlan["historyPending"];
  /** Steps of checkpoints this run started from, which it never deletes. */
  private readonly protect: Set<number>;
  private readonly toks: Int32Array;
  private readonly tgts: Int32Array;
  private readonly checkpoints: string[] = [];
  private step: number;
  private tokens: number;
  private lastLoss = NaN;
  private lastValLoss: number | null = null;
  private trainSeconds = 0;
  private savedStep = -1;
  private interrupted = false;

  constructor(private readonly p: SessionParts) {
    const config = p.plan.config;
    this.config = config;
    this.schedule = scheduleSpec(config.schedule);
    this.tps = tokensPerStep(config);
    this.lastStep = maxSteps(config);
    this.evalEvery = stepsEvery(config, config.eval.every_tokens);
    this.saveEvery = stepsEvery(config, config.checkpointing.every_tokens);
    this.historyEvery = config.log.history_every_steps;
    this.history = [...p.plan.history];
    this.pending = { ...p.plan.historyPending };
    this.protect = startCheckpointSteps(p.plan);
    this.step = p.plan.step;
    this.tokens = p.plan.tokens;
    const { seq_len: S, micro_batch: B } = config.data;
    this.toks = new Int32Array(B * S);
    this.tgts = new Int32Array(B * S);
  }

  /** A function, not a property read: the signal changes between reads. */
  private aborted(): boolean {
    return this.p.signal?.aborted === true;
  }

  /** Steps until the token budget is spent or the signal aborts; then the result. */
  async run(): Promise<TrainResult> {
    try {
      while (this.step < this.lastStep) {
        // Yield to the event loop once per step: signal handlers (Ctrl-C) and the progress
        // bar's timers only run between tasks, never inside this synchronous loop.
        await new Promise<void>((r) => setImmediate(r));
        if (this.aborted()) {
          this.interrupted = true;
          break;
        }
        this.trainStep();
        // A scheduled evaluation runs even when stopping: a resumed run starts after this
        // step and would never make it up, leaving a hole in the log.
        const stopping = this.aborted();
        if (this.p.evaluator !== null && this.due(this.evalEvery)) this.evaluate(this.p.evaluator);
        if (this.due(this.saveEvery) || stopping) await this.save();
        if (stopping) {
          this.interrupted = true;
          break;
        }
      }
      if (this.interrupted && this.savedStep !== this.step && this.step > this.p.plan.step) await this.save();
    } finally {
      this.p.log.close();
    }
    return this.result();
  }

  /** Whether a task every `every` steps (0: never) falls on this step; the last step always does. */
  private due(every: number): boolean {
    return (every > 0 && this.step % every === 0) || this.step === this.lastStep;
  }

  /** Forward and backward over the step's micro-batches; the gradient averaged over them. */
  private accumulateGradients(): { loss: number; ce: number; logits: LogitStats } {
    const { model, sampler } = this.p;
    const accum = this.config.data.grad_accum;
    model.zeroGrad();
    let lossSum = 0;
    let ceSum = 0;
    // The step's logit monitors: the largest logits of any micro-batch, the mean log Z.
    const logits: LogitStats = { attnLogitMax: -Infinity, outputLogitMax: -Infinity, outputLogZ: 0 };
    for (let a = 0; a < accum; a++) {
      sampler.fill(this.step, a, this.toks, this.tgts);
      lossSum += model.forward(this.toks, this.tgts);
      ceSum += model.lastLoss.ce;
      const m = model.lastLogitStats;
      logits.attnLogitMax = Math.max(logits.attnLogitMax, m.attnLogitMax);
      logits.outputLogitMax = Math.max(logits.outputLogitMax, m.outputLogitMax);
      logits.outputLogZ += m.outputLogZ / accum;
      model.backward();
    }
    // backward() adds each micro-batch's mean-loss gradient: average them, as one big batch would.
    if (accum > 1) {
      const grad = model.params.grad;
      const inv = 1 / accum;
      for (let i = 0; i < grad.length; i++) grad[i] = grad[i]! * inv;
    }
    return { loss: lossSum / accum, ce: ceSum / accum, logits };
  }

  /**
   * The AdamW update at the step's learning rate. A non-finite loss or gradient stops
   * the run before the parameters change (AdamW refuses the update); the step is logged
   * with nulls so the log shows where.
   */
  private update(loss: number, lr: number, nextTokens: number, t0: number): number {
    let gradNorm = NaN;
    try {
      if (Number.isFinite(loss)) gradNorm = this.p.optimizer.step(lr);
    } catch (e) {
      if (!isPmaError(e, "NONFINITE")) throw e;
    }
    if (Number.isFinite(gradNorm)) return gradNorm;
    const norm = Number.isFinite(loss) ? this.p.optimizer.gradNorm() : NaN;
    this.p.log.write({
      type: "step",
      step: this.step + 1,
      tokens: nextTokens,
      loss,
      lr,
      grad_norm: norm,
      seconds: (performance.now() - t0) / 1000,
    });
    const last = this.checkpoints.at(-1) ?? this.p.plan.stateFrom?.dir ?? null;
    throw new PmaError(
      "NONFINITE",
      `training diverged at step ${this.step + 1} (${Number.isFinite(loss) ? `gradient norm is ${norm}` : `loss is ${loss}`}); parameters were not updated` +
        (last !== null
          ? `. Restart from ${last} with a lower learning rate, or from a merge of earlier checkpoints (PMA-init)`
          : ""),
    );
  }

  /** One optimizer step: gradients, update, then the step's log line, history and event. */
  private trainStep(): void {
    const t0 = performance.now();
    const { loss, ce, logits } = this.accumulateGradients();
    const nextTokens = this.tokens + this.tps;
    // The LR of a step is the schedule at the token count the step reaches (schedule.ts).
    const lr = lrAt(this.schedule, nextTokens);
    const gradNorm = this.update(loss, lr, nextTokens, t0);
    this.step++;
    this.tokens = nextTokens;
    const seconds = (performance.now() - t0) / 1000;
    this.trainSeconds += seconds;
    this.lastLoss = loss;
    const record: StepRecord = {
      type: "step",
      step: this.step,
      tokens: this.tokens,
      loss,
      lr,
      grad_norm: gradNorm,
      seconds,
    };
    if (this.p.model.lastLoss.aux !== 0) record.ce = ce;
    record.attn_logit_max = logits.attnLogitMax;
    record.output_logit_max = logits.outputLogitMax;
    record.output_log_z = logits.outputLogZ;
    this.p.log.write(record);
    this.addToHistory(loss, lr, gradNorm);
    this.p.emit({ type: "step", record, maxTokens: this.config.training.max_tokens });
  }

  /** trainer_state.json's log_history: the mean loss of every `history_every_steps` steps. */
  private addToHistory(loss: number, lr: number, gradNorm: number): void {
    const pending = this.pending;
    pending.steps++;
    pending.loss_sum += loss;
    if (this.step % this.historyEvery === 0 || this.step === this.lastStep) {
      const { step, tokens } = this;
      this.history.push({
        epoch: epochOf(tokens, this.p.data.train.length),
        grad_norm: gradNorm,
        learning_rate: lr,
        loss: pending.loss_sum / pending.steps,
        num_input_tokens_seen: tokens,
        step,
      });
      pending.steps = 0;
      pending.loss_sum = 0;
      pending.first_step = step + 1;
    }
  }

  /** Held-out loss of the current parameters, logged and added to the history. */
  private evaluate(evaluator: HeldoutEvaluator): void {
    const { step, tokens } = this;
    const e0 = performance.now();
    const r = evaluator.run();
    const evalRecord: EvalRecord = {
      type: "eval",
      step,
      tokens,
      val_loss: r.loss,
      val_tokens: r.tokens,
      seconds: (performance.now() - e0) / 1000,
    };
    this.p.log.write(evalRecord);
    this.history.push({
      epoch: epochOf(tokens, this.p.data.train.length),
      eval_loss: r.loss,
      eval_runtime: evalRecord.seconds,
      num_input_tokens_seen: tokens,
      step,
    });
    this.lastValLoss = r.loss;
    this.p.emit({ type: "eval", record: evalRecord });
  }

  /** Writes a checkpoint of this step, then prunes: the newest checkpoint is what a resume needs. */
  private async save(): Promise<void> {
    const { plan, data, backend, modelConfig, model, optimizer } = this.p;
    const { config, step, tokens } = this;
    const state: PmaTrainStateInput = {
      global_step: step,
      tokens,
      optimizerStep: optimizer.steps,
      data: {
        corpus: config.data.corpus,
        sampler: SAMPLER_VERSION,
        seed: config.data.seed,
        next_step: step,
        train_tokens: data.train.length,
        train_sha256: data.trainSha256,
      },
      history_pending: { ...this.pending },
      config,
      model_config: modelConfig,
      tokenizer_sha256: data.tokenizerSha256,
      backend: backend.name,
      lineage: plan.lineage,
    };
    const trainerState = trainerStateJson({
      step,
      tokens,
      maxSteps: this.lastStep,
      epochTokens: data.train.length,
      maxTokens: config.training.max_tokens,
      history: this.history,
      loggingSteps: this.historyEvery,
      evalSteps: this.evalEvery,
      saveSteps: this.saveEvery,
      trainBatchSize: config.data.micro_batch,
      totalFlos: 6 * model.params.numel * tokens,
    });
    const path = await writeCheckpoint({
      runDir: plan.runDir,
      params: model.params,
      optimizer,
      state,
      trainerState,
      tokenizerJson: data.tokenizerJson,
    });
    this.checkpoints.push(path);
    this.savedStep = step;
    this.p.emit({ type: "checkpoint", path, step, tokens });
    await this.prune();
  }

  /** Deletes the checkpoints checkpointing.keep_last / keep_every_tokens no longer keep. */
  private async prune(): Promise<void> {
    const { step, tokens, tps } = this;
    const c = this.config.checkpointing;
    const retention = { keepLast: c.keep_last, keepEveryTokens: c.keep_every_tokens, tokensPerStep: tps };
    try {
      await pruneCheckpoints(this.p.plan.runDir, step, retention, this.protect, (p) => {
        const ckptTokens = p.step * tps;
        this.p.log.write({
          type: "prune",
          step,
          tokens,
          checkpoint: basename(p.path),
          checkpoint_step: p.step,
          checkpoint_tokens: ckptTokens,
        });
        this.p.emit({ type: "prune", path: p.path, step: p.step, tokens: ckptTokens });
      });
    } catch (e) {
      // Deleting is housekeeping: the checkpoint is safe, so training goes on, and the
      // next checkpoint's pass retries what is still there.
      if (!isPmaError(e)) throw e;
      this.p.emit({ type: "note", message: `could not delete an old checkpoint: ${e.message}` });
    }
  }

  private result(): TrainResult {
    const { step, tokens, trainSeconds } = this;
    return {
      runDir: this.p.plan.runDir,
      step,
      tokens,
      checkpoints: this.checkpoints,
      interrupted: this.interrupted,
      lastLoss: this.lastLoss,
      lastValLoss: this.lastValLoss,
      trainSeconds,
      tokensPerSecond: trainSeconds > 0 ? ((step - this.p.plan.step) * this.tps) / trainSeconds : 0,
      config: this.config,
    };
  }
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
