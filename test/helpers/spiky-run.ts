/**
 * Fixture runs for PMA-init and pma watch: Trainer-style checkpoint folders (weights
 * from the synthetic writer, plus optimizer/scheduler/RNG files whose bytes name their
 * checkpoint) and a loss log with a spike, in pma JSONL, trainer_state.json log_history
 * or TensorBoard form.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openCheckpointTensors } from "../../src/formats/checkpoint-files.js";
import { type TensorboardScalar } from "../../src/formats/tensorboard.js";
import { writeTensorboardScalars } from "../../src/formats/tensorboard-writer.js";
import { decodeFloats } from "../../src/tensor/codec.js";
import { isFloatDType, type FloatDType } from "../../src/tensor/dtype.js";
import { writeSyntheticRun, type SyntheticModel } from "../../src/trajectory/synthetic.js";
import { rng } from "./fixtures.js";

export const TINY_MODEL: SyntheticModel = {
  hiddenSize: 8,
  intermediateSize: 12,
  layers: 1,
  vocabSize: 16,
  heads: 2,
};
export const TOKENS_PER_STEP = 1000;
/** The Trainer files a checkpoint carries besides weights, config and trainer_state.json. */
export const TRAINER_FILES = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"];

export interface LossPoint {
  step: number;
  loss: number;
  gradNorm: number;
}

/**
 * A decaying loss with 1% noise; from `divergeAt` on it jumps to about 6.5 and stays
 * (an irrecoverable spike, with a grad-norm explosion); a `bumpAt` adds a +3 bump that
 * decays within ~15 steps (a spike the run recovers from).
 */
export function lossCurve(
  steps: number,
  opts: { divergeAt?: number; bumpAt?: number; seed?: number },
): LossPoint[] {
  const r = rng(opts.seed ?? 7);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const out: LossPoint[] = [];
  for (let step = 1; step <= steps; step++) {
    let loss = 2 + 3 * Math.exp(-step / 150);
    let gradNorm = 0.5 * Math.exp(0.1 * gauss());
    if (opts.bumpAt !== undefined && step >= opts.bumpAt) loss += 3 * Math.exp(-(step - opts.bumpAt) / 5);
    if (opts.divergeAt !== undefined && step >= opts.divergeAt) {
      loss = 6.5;
      gradNorm *= 20;
    }
    out.push({ step, loss: loss * (1 + 0.01 * gauss()), gradNorm });
  }
  return out;
}

export type LogKind = "pma-jsonl" | "trainer-state" | "tensorboard";

export interface SpikyRunOptions {
  dir: string;
  /** Checkpoint steps are stepInterval, 2*stepInterval, ... */
  checkpoints: number;
  stepInterval: number;
  curve: LossPoint[];
  log: LogKind;
  seed?: number;
}

function trainerState(step: number, curve: LossPoint[]): Record<string, unknown> {
  return {
    global_step: step,
    max_steps: 10_000,
    epoch: step / 1000,
    num_input_tokens_seen: step * TOKENS_PER_STEP,
    train_batch_size: 8,
    log_history: curve
      .filter((p) => p.step <= step)
      .map((p) => ({
        epoch: p.step / 1000,
        grad_norm: p.gradNorm,
        learning_rate: 3e-4,
        loss: p.loss,
        step: p.step,
      })),
  };
}

/** Writes a run and returns its checkpoint paths, oldest first. */
export async function writeSpikyRun(o: SpikyRunOptions): Promise<string[]> {
  const paths = await writeSyntheticRun({
    dir: o.dir,
    model: TINY_MODEL,
    checkpoints: o.checkpoints,
    stepInterval: o.stepInterval,
    tokensPerStep: TOKENS_PER_STEP,
    dtype: "BF16",
    seed: o.seed ?? 3,
  });
  for (const [i, path] of paths.entries()) await addTrainerFiles(path, (i + 1) * o.stepInterval, o.curve);
  await writeRunLog(o.dir, o.log, o.curve);
  return paths;
}

/** The Trainer's non-weight files, each holding bytes that say which checkpoint it is from. */
export async function addTrainerFiles(path: string, step: number, curve: LossPoint[]): Promise<void> {
  for (const f of TRAINER_FILES) await writeFile(join(path, f), `${f} of step ${step}\n`);
  await writeFile(join(path, "tokenizer.json"), JSON.stringify({ version: "1.0", step }));
  await writeFile(join(path, "trainer_state.json"), JSON.stringify(trainerState(step, curve), null, 2));
}

export async function writeRunLog(dir: string, kind: LogKind, curve: LossPoint[]): Promise<void> {
  if (kind === "pma-jsonl") {
    const lines = curve.map((p) =>
      JSON.stringify({
        type: "step",
        step: p.step,
        tokens: p.step * TOKENS_PER_STEP,
        loss: p.loss,
        grad_norm: p.gradNorm,
        lr: 3e-4,
      }),
    );
    await writeFile(join(dir, "log.jsonl"), lines.join("\n") + "\n");
  } else if (kind === "tensorboard") {
    const runs = join(dir, "runs", "Jan01_00-00-00_host");
    await mkdir(runs, { recursive: true });
    const scalars: TensorboardScalar[] = curve.flatMap((p) => [
      { tag: "train/loss", step: p.step, value: p.loss, wallTime: 1.7e9 + p.step },
      { tag: "train/grad_norm", step: p.step, value: p.gradNorm, wallTime: 1.7e9 + p.step },
    ]);
    await writeTensorboardScalars(join(runs, "events.out.tfevents.1700000000.host"), scalars);
  }
  // trainer-state: the newest checkpoint's trainer_state.json log_history is the log.
}

/** Every float tensor of a checkpoint, decoded to float64. */
export async function readTensors(
  path: string,
): Promise<Map<string, { dtype: FloatDType; values: Float64Array }>> {
  const ck = await openCheckpointTensors(path);
  try {
    const out = new Map<string, { dtype: FloatDType; values: Float64Array }>();
    for (const t of ck.tensors.values()) {
      if (!isFloatDType(t.dtype)) continue;
      const bytes = await t.file.read(t.name);
      const values = new Float64Array(t.shape.reduce((a, b) => a * b, 1));
      decodeFloats(bytes, t.dtype, values);
      out.set(t.name, { dtype: t.dtype, values });
    }
    return out;
  } finally {
    await ck.close();
  }
}

export async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
}
