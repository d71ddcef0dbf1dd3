/**
 * pma training checkpoints: `checkpoint-<step>/` in the run directory, a Hugging Face
 * folder (model.safetensors, config.json, generation_config.json, tokenizer.json,
 * tokenizer_config.json, trainer_state.json) plus pma's own state:
 *
 *   pma_optimizer.safetensors  AdamW moments `<param>.exp_avg` / `<param>.exp_avg_sq`
 *                              (f32), and the f32 master weights `<param>` when
 *                              model.safetensors is bf16, so a resume is exact anyway
 *   pma_state.json             step, tokens, AdamW step, data position and sampler
 *                              seed, the resolved config, lineage
 *
 * The folder is staged in a hidden sibling and renamed into place complete, so a reader
 * (run discovery, `pma watch`) never sees half of one.
 */
import { join } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { stringifyHfConfig } from "../formats/hf-config-json.js";
import { readJsonObjectFile } from "../formats/json-file.js";
import { writeSafetensors } from "../formats/safetensors-writer.js";
import type { AdamW } from "../nn/adamw.js";
import type { ModelConfig } from "../nn/config.js";
import { toHfConfig } from "../nn/config.js";
import type { NamedTensor, ParamSet } from "../nn/params.js";
import type { TrainConfig } from "./config.js";
import { parseTrainConfig } from "./config.js";
import { encodeTensors, readWeights, SAFETENSORS_DTYPE, TORCH_DTYPE } from "./weights-io.js";

export const PMA_STATE_FILE = "pma_state.json";
export const OPTIMIZER_FILE = "pma_optimizer.safetensors";
const STATE_FORMAT = "pma-train-state";
const STATE_VERSION = 1;

export function checkpointName(step: number): string {
  return `checkpoint-${step}`;
}

/** Where a checkpoint's weights and state came from when the run did not start at step 0 from scratch. */
export interface Lineage {
  /** The folder the weights were loaded from (a checkpoint or a merge). */
  weights: string;
  /** The checkpoint whose optimizer / step / data position was continued; null: none. */
  state: string | null;
  step: number;
  tokens: number;
  /** True when the optimizer started fresh. */
  fresh_optimizer: boolean;
}

export interface PmaTrainState {
  format: typeof STATE_FORMAT;
  version: number;
  global_step: number;
  tokens: number;
  optimizer: { type: "adamw"; step: number; file: string; master_weights: boolean };
  /** Batches are f(seed, step): the data position and the whole RNG state are (seed, next_step). */
  data: {
    corpus: string;
    sampler: string;
    seed: number;
    next_step: number;
    train_tokens: number;
    train_sha256: string;
  };
  /** Running sum for the trainer_state log_history entry being averaged. */
  history_pending: { steps: number; loss_sum: number; first_step: number };
  config: TrainConfig;
  model_config: ModelConfig;
  tokenizer_sha256: string;
  backend: string;
  /** Forks and restarts this run descends from, oldest first. */
  lineage: Lineage[];
  pma_version: string;
}

export type PmaTrainStateInput = Omit<PmaTrainState, "format" | "version" | "pma_version" | "optimizer"> & {
  optimizerStep: number;
};

export interface CheckpointContents {
  runDir: string;
  params: ParamSet;
  optimizer: AdamW;
  state: PmaTrainStateInput;
  trainerState: Record<string, unknown>;
  tokenizerJson: string;
}

/** Writes `runDir/checkpoint-<step>/` atomically (replacing one left by an abandoned continuation). */
export async function writeCheckpoint(c: CheckpointContents): Promise<string> {
  const { state } = c;
  const dtype = state.config.checkpointing.dtype;
  const target = join(c.runDir, checkpointName(state.global_step));
  const staged = await StagedDir.create(target, true);
  try {
    const dir = staged.staging;
    const params = c.params.entries();
    await writeSafetensors(join(dir, "model.safetensors"), encodeTensors(params, SAFETENSORS_DTYPE[dtype]));
    const masters: NamedTensor[] = dtype === "f32" ? [] : params;
    await writeSafetensors(
      join(dir, OPTIMIZER_FILE),
      encodeTensors([...c.optimizer.exportState().tensors, ...masters], "F32"),
      {
        optimizer: "adamw",
        step: String(c.optimizer.steps),
      },
    );
    const cfg = state.model_config;
    const json = (o: unknown): string => JSON.stringify(o, null, 2) + "\n";
    await writeFileAtomic(join(dir, "config.json"), stringifyHfConfig(toHfConfig(cfg, TORCH_DTYPE[dtype])));
    await writeFileAtomic(
      join(dir, "generation_config.json"),
      json({ _from_model_config: true, bos_token_id: cfg.bos_token_id, eos_token_id: cfg.eos_token_id }),
    );
    await writeFileAtomic(join(dir, "tokenizer.json"), c.tokenizerJson);
    await writeFileAtomic(
      join(dir, "tokenizer_config.json"),
      json(tokenizerConfig(c.tokenizerJson, cfg, state.config.data.seq_len)),
    );
    const { optimizerStep, ...rest } = state;
    const full: PmaTrainState = {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      ...rest,
      optimizer: {
        type: "adamw",
        step: optimizerStep,
        file: OPTIMIZER_FILE,
        master_weights: dtype !== "f32",
      },
      pma_version: PMA_VERSION,
    };
    await writeFileAtomic(join(dir, PMA_STATE_FILE), json(full));
    await writeFileAtomic(join(dir, "trainer_state.json"), json(c.trainerState));
    await staged.publish();
  } catch (e) {
    await staged.discard();
    throw e;
  }
  return target;
}

/** Enough for transformers' AutoTokenizer to load tokenizer.json as a fast tokenizer. */
function tokenizerConfig(tokenizerJson: string, cfg: ModelConfig, seq: number): Record<string, unknown> {
  const added =
    (JSON.parse(tokenizerJson) as { added_tokens?: { id: number; content: string }[] }).added_tokens ?? [];
  const eos = added.find((t) => t.id === cfg.eos_token_id)?.content ?? null;
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: eos,
    eos_token: eos,
    model_max_length: seq,
    clean_up_tokenization_spaces: false,
  };
}

/** pma_state.json of a checkpoint folder; null when there is none (a merge, a foreign checkpoint). */
export async function readPmaState(dir: string): Promise<PmaTrainState | null> {
  const path = join(dir, PMA_STATE_FILE);
  const raw = await readJsonObjectFile(path, { code: "CHECKPOINT_MISMATCH", what: "a pma training state" });
  if (raw === null) return null;
  const s = raw as unknown as PmaTrainState;
  if (s.format !== STATE_FORMAT || s.version !== STATE_VERSION) {
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${path}: not a pma training state of version ${STATE_VERSION} (format ${JSON.stringify(s.format)}, version ${JSON.stringify(s.version)})`,
      { file: path },
    );
  }
  // Re-validate the stored config: a hand-edited state must fail here, naming the field.
  s.config = parseTrainConfig(s.config, path);
  return s;
}

/**
 * Loads a pma checkpoint's training state into `params` (the f32 master weights) and,
 * unless null, `optimizer` (moments and step).
 */
export async function loadTrainingState(
  dir: string,
  state: PmaTrainState,
  params: ParamSet,
  optimizer: AdamW | null,
): Promise<void> {
  const opt = await readWeights(join(dir, state.optimizer.file));
  if (state.optimizer.master_weights) {
    params.load(new Map([...opt.tensors].filter(([name]) => params.has(name))));
  } else {
    params.load((await readWeights(dir)).tensors);
  }
  if (optimizer !== null) {
    const moments = [...opt.tensors.values()].filter(
      (t) => t.name.endsWith(".exp_avg") || t.name.endsWith(".exp_avg_sq"),
    );
    optimizer.importState({ step: state.optimizer.step, tensors: moments });
  }
}
