/**
 * The Hugging Face Trainer's `trainer_state.json`, written with each checkpoint so tools
 * built for Trainer runs (and pma's own run discovery, which orders checkpoints by
 * `num_input_tokens_seen`) read pma runs as they are. Keys as transformers writes them,
 * except `best_global_step` (new in 4.5x): TrainerState.load_from_json passes every key
 * to the dataclass, so older versions would refuse a file that has it.
 */

/** One `log_history` entry: training entries carry loss/grad_norm/learning_rate, eval entries eval_loss. */
export type HistoryEntry = Record<string, number>;

export interface TrainerStateInput {
  step: number;
  tokens: number;
  maxSteps: number;
  /** Tokens of one pass over the training split (epochs are tokens / this). */
  epochTokens: number;
  maxTokens: number;
  history: readonly HistoryEntry[];
  loggingSteps: number;
  evalSteps: number;
  saveSteps: number;
  /** Sequences per micro-batch (transformers' per-device batch size). */
  trainBatchSize: number;
  /** FLOPs so far (6 * parameters * tokens, the Kaplan estimate transformers also uses). */
  totalFlos: number;
}

export function trainerStateJson(s: TrainerStateInput): Record<string, unknown> {
  return {
    best_metric: null,
    best_model_checkpoint: null,
    epoch: epochOf(s.tokens, s.epochTokens),
    eval_steps: s.evalSteps,
    global_step: s.step,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: s.history,
    logging_steps: s.loggingSteps,
    max_steps: s.maxSteps,
    num_input_tokens_seen: s.tokens,
    num_train_epochs: Math.max(1, Math.ceil(s.maxTokens / s.epochTokens)),
    save_steps: s.saveSteps,
    stateful_callbacks: {},
    total_flos: s.totalFlos,
    train_batch_size: s.trainBatchSize,
    trial_name: null,
    trial_params: null,
  };
}

export function epochOf(tokens: number, epochTokens: number): number {
  return Math.round((tokens / epochTokens) * 1e6) / 1e6;
}

/** The `log_history` array of a parsed trainer_state.json, entries after `step` dropped. */
export function historyUpTo(raw: Record<string, unknown>, step: number): HistoryEntry[] {
  const h = raw["log_history"];
  if (!Array.isArray(h)) return [];
  return h.filter(
    (e): e is HistoryEntry =>
      typeof e === "object" &&
      e !== null &&
      typeof (e as HistoryEntry)["step"] === "number" &&
      (e as HistoryEntry)["step"]! <= step,
  );
}
