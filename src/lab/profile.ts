/**
 * Lab profiles: the scale of every experiment in one place. Everything is counted in
 * optimizer steps of the pre-training runs (tokens = steps x tokens per step), so the
 * checkpoint spacing, the merge interval V and the experiment points line up exactly.
 *
 * - micro: seconds, for tests (a 30k-parameter model; effects are not expected to show).
 * - quick: `pma lab`, sized for about 15 minutes on a quiet 2-core machine with the blas
 *   backend, at the lab notes' scale where the paper's effects are visible
 *   (d_model 128, 4 layers, 4096 tokens per step, constant 3e-3 after 50 warmup steps).
 * - standard: `pma lab --profile standard`, the quick models trained on 4x the tokens,
 *   with 3 seeds for the seeded experiments (a few hours on 2 cores: see docs/lab.md).
 * - full:  `pma lab --profile full`, wider models and ~10x the tokens (hours).
 *
 * `seeds` is how many seeds the seeded experiments (seeds.ts) train; the others use seed
 * 0. quick keeps one: its 15 minutes have no room for more runs.
 */
import { PmaError } from "../common/errors.js";

export type ProfileName = "micro" | "quick" | "standard" | "full";
export const PROFILE_NAMES: readonly ProfileName[] = ["micro", "quick", "standard", "full"];

export interface ModelSize {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
}

export interface LabProfile {
  name: ProfileName;
  /** Seeds 0..seeds-1 of the dense and MoE runs for the seeded experiments (seeds.ts); 1: seed 0 only. */
  seeds: number;
  /** Shared by every pre-training run: tokens per step = micro_batch x seq_len x grad_accum. */
  data: { vocab_size: number; seq_len: number; micro_batch: number; grad_accum: number };
  dense: ModelSize;
  /** Mixtral-style: experts of intermediate_size each, top-2. */
  moe: ModelSize & { num_local_experts: number };
  /** Peak (stable-phase) learning rate and warmup of the pre-training runs. */
  lr: number;
  warmupSteps: number;
  denseSteps: number;
  denseCheckpointEvery: number;
  moeSteps: number;
  moeCheckpointEvery: number;
  /** Held-out tokens (evenly spaced validation windows) per evaluation. */
  evalTokens: number;
  /** Items per zero-shot task (next word, word swap, word drop) of src/eval's suite. */
  zeroShotItems: number;
  /** The default merge: N checkpoints V tokens apart (V in steps here). */
  window: { count: number; intervalSteps: number };
  /** Experiment 1: compare latest and merged every `everySteps` from `fromStep` on. */
  stable: { fromStep: number; everySteps: number; moeFromStep: number };
  /** Experiment 2: fork at `forkStep`, cosine to lrMin by the end of the dense run. */
  anneal: { forkStep: number; lrMin: number; everySteps: number };
  /** Experiments 3 and 4: an early point; the late point is the end of the dense run. */
  earlyStep: number;
  /** Experiment 4: V as multiples of window.intervalSteps (at N = window.count; whole checkpoint spacings), and N at that V. */
  intervals: number[];
  counts: number[];
  /** Experiment 5: continued training on WordNet glosses. */
  ct: {
    steps: number;
    warmupSteps: number;
    schedules: { peak: number; end: number }[];
    checkpointEvery: number;
    evalTokens: number;
  };
  /** Experiment 6: answers-only fine-tuning on WordNet question-answer pairs. */
  sft: {
    steps: number;
    warmupSteps: number;
    lrs: number[];
    endFactor: number;
    batch: number;
    seq: number;
    questions: number;
  };
  /** Experiment 7, induced control: the MoE run's LR is multiplied by `factor` after `atStep`. */
  spike: { atStep: number; factor: number; steps: number };
  /**
   * Experiment 7, spontaneous: `seeds` runs of `preset` from scratch at a constant `lr`
   * (after `warmupSteps`) to `steps`, checkpoints every `checkpointEvery`; `optimizer`
   * replaces AdamW settings of the lab's (pma train's optimizer section, e.g. beta2).
   * bench/spike-sweep.ts is the sweep that chose them.
   */
  spontaneous: {
    preset: "dense" | "moe";
    lr: number;
    warmupSteps: number;
    steps: number;
    checkpointEvery: number;
    seeds: number;
    optimizer?: { beta2?: number; weight_decay?: number; max_grad_norm?: number };
  };
  /** Experiment 8: k checkpoints of the final window; gradients over hvpBatches micro-batches; a grid x grid loss plane. */
  mechanism: { k: number; hvpBatches: number; grid: number; gridTokens: number };
}

const QUICK: LabProfile = {
  name: "quick",
  seeds: 1,
  data: { vocab_size: 4096, seq_len: 128, micro_batch: 8, grad_accum: 4 },
  dense: { hidden_size: 128, intermediate_size: 344, num_hidden_layers: 4, num_attention_heads: 4 },
  moe: {
    hidden_size: 128,
    intermediate_size: 172,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_local_experts: 8,
  },
  lr: 3e-3,
  warmupSteps: 50,
  denseSteps: 360,
  denseCheckpointEvery: 10,
  moeSteps: 300,
  moeCheckpointEvery: 10,
  evalTokens: 32768,
  zeroShotItems: 100,
  // At this scale the loss still falls fast: a window of ~200k tokens (the lab notes'
  // "few hundred thousand") is where merging beats the latest checkpoint by the end.
  window: { count: 6, intervalSteps: 10 },
  stable: { fromStep: 120, everySteps: 40, moeFromStep: 80 },
  anneal: { forkStep: 200, lrMin: 3e-5, everySteps: 40 },
  earlyStep: 160,
  intervals: [1, 2, 4, 8],
  counts: [3, 6, 10, 15],
  ct: {
    steps: 40,
    warmupSteps: 4,
    schedules: [
      { peak: 3e-3, end: 3e-4 },
      { peak: 1e-3, end: 1e-4 },
    ],
    checkpointEvery: 8,
    evalTokens: 16384,
  },
  sft: { steps: 60, warmupSteps: 6, lrs: [1e-3, 3e-3], endFactor: 0.1, batch: 16, seq: 64, questions: 256 },
  spike: { atStep: 240, factor: 10, steps: 40 },
  // 3.3x the profile's LR, as long as its MoE run: the sweep's runs at 1e-2 to 5e-2
  // (docs/results/spike-sweep.md) grow their attention logits 10-75x, none spikes by 200 steps.
  spontaneous: { preset: "moe", lr: 1e-2, warmupSteps: 50, steps: 300, checkpointEvery: 10, seeds: 2 },
  mechanism: { k: 5, hvpBatches: 8, grid: 9, gridTokens: 8192 },
};

/**
 * The quick profile's models on 4x its tokens (dense 5.9M, MoE 4.9M: about 4.5 and 1.7
 * tokens per parameter), 3 seeds: where the quick profile's "not at this scale"
 * verdicts come from runs too short to tell. Every step-counted setting is scaled by 4
 * except the window, which doubles (V = 20 steps, 82k tokens): later in a run the loss
 * falls slower and the paper's V grows with scale.
 */
const STANDARD: LabProfile = {
  ...QUICK,
  name: "standard",
  seeds: 3,
  denseSteps: 1440,
  denseCheckpointEvery: 20,
  moeSteps: 1200,
  moeCheckpointEvery: 20,
  evalTokens: 65536,
  zeroShotItems: 200,
  window: { count: 6, intervalSteps: 20 },
  stable: { fromStep: 320, everySteps: 160, moeFromStep: 240 },
  anneal: { forkStep: 800, lrMin: 3e-5, everySteps: 160 },
  earlyStep: 480,
  ct: { ...QUICK.ct, steps: 160, warmupSteps: 8, checkpointEvery: 32, evalTokens: 32768 },
  sft: { ...QUICK.sft, steps: 240, warmupSteps: 12, questions: 512 },
  spike: { ...QUICK.spike, atStep: 960, steps: 160 },
  // As long as the MoE run: the sweep found no spike in 200-300 steps; longer runs are
  // where attention-logit growth might turn into one.
  spontaneous: { ...QUICK.spontaneous, steps: 1200, checkpointEvery: 20 },
  mechanism: { k: 6, hvpBatches: 16, grid: 11, gridTokens: 16384 },
};

const FULL: LabProfile = {
  ...QUICK,
  name: "full",
  seeds: 3,
  dense: { hidden_size: 256, intermediate_size: 688, num_hidden_layers: 6, num_attention_heads: 8 },
  moe: {
    hidden_size: 256,
    intermediate_size: 344,
    num_hidden_layers: 6,
    num_attention_heads: 8,
    num_local_experts: 8,
  },
  lr: 2e-3,
  warmupSteps: 100,
  denseSteps: 3000,
  denseCheckpointEvery: 25,
  moeSteps: 2000,
  moeCheckpointEvery: 50,
  evalTokens: 131072,
  zeroShotItems: 300,
  window: { count: 10, intervalSteps: 50 },
  stable: { fromStep: 500, everySteps: 250, moeFromStep: 500 },
  anneal: { forkStep: 1500, lrMin: 2e-5, everySteps: 250 },
  earlyStep: 750,
  ct: {
    steps: 400,
    warmupSteps: 20,
    schedules: [
      { peak: 2e-3, end: 2e-4 },
      { peak: 1e-3, end: 1e-4 },
      { peak: 5e-4, end: 5e-5 },
    ],
    checkpointEvery: 50,
    evalTokens: 65536,
  },
  sft: {
    steps: 400,
    warmupSteps: 20,
    lrs: [5e-4, 1e-3, 2e-3],
    endFactor: 0.1,
    batch: 16,
    seq: 64,
    questions: 1024,
  },
  spike: { atStep: 1200, factor: 10, steps: 300 },
  spontaneous: { preset: "moe", lr: 2e-2, warmupSteps: 100, steps: 1000, checkpointEvery: 25, seeds: 3 },
  mechanism: { k: 8, hvpBatches: 32, grid: 15, gridTokens: 32768 },
};

/** Tiny and fast: for tests of the machinery, not of the paper's claims. */
const MICRO: LabProfile = {
  name: "micro",
  seeds: 1,
  data: { vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2 },
  dense: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2 },
  moe: {
    hidden_size: 32,
    intermediate_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_local_experts: 4,
  },
  lr: 1e-2,
  warmupSteps: 4,
  denseSteps: 48,
  denseCheckpointEvery: 2,
  moeSteps: 32,
  moeCheckpointEvery: 4,
  evalTokens: 2048,
  zeroShotItems: 12,
  window: { count: 3, intervalSteps: 4 },
  stable: { fromStep: 16, everySteps: 16, moeFromStep: 16 },
  anneal: { forkStep: 24, lrMin: 1e-4, everySteps: 12 },
  earlyStep: 24,
  intervals: [0.5, 1, 2],
  counts: [2, 3, 5],
  ct: {
    steps: 6,
    warmupSteps: 1,
    schedules: [{ peak: 1e-2, end: 1e-3 }],
    checkpointEvery: 3,
    evalTokens: 1024,
  },
  sft: { steps: 6, warmupSteps: 1, lrs: [1e-2], endFactor: 0.1, batch: 4, seq: 32, questions: 16 },
  spike: { atStep: 16, factor: 10, steps: 8 },
  spontaneous: { preset: "moe", lr: 30, warmupSteps: 24, steps: 32, checkpointEvery: 2, seeds: 2 },
  mechanism: { k: 3, hvpBatches: 2, grid: 3, gridTokens: 512 },
};

const PROFILES: Record<ProfileName, LabProfile> = {
  micro: MICRO,
  quick: QUICK,
  standard: STANDARD,
  full: FULL,
};

export function labProfile(name: string): LabProfile {
  if (!(PROFILE_NAMES as readonly string[]).includes(name)) {
    throw new PmaError(
      "USAGE",
      `--profile must be one of ${PROFILE_NAMES.join(", ")}, got ${JSON.stringify(name)}`,
    );
  }
  return PROFILES[name as ProfileName];
}

export function tokensPerStep(p: LabProfile): number {
  return p.data.micro_batch * p.data.seq_len * p.data.grad_accum;
}

/** Steps from `from` to `to` (inclusive) every `every`, only those that are multiples of `every`. */
export function stepsBetween(from: number, to: number, every: number): number[] {
  const out: number[] = [];
  for (let s = Math.ceil(from / every) * every; s <= to; s += every) out.push(s);
  return out;
}
