import { stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { readTrainerState, stepFromName } from "../formats/trainer-state.js";

/** How far along training a checkpoint is, as far as its files tell. */
export interface CheckpointProgress {
  tokens?: number;
  step?: number;
}

export interface Ordered<T> {
  items: T[];
  /** What the order is based on. */
  basis: "tokens" | "step" | "arguments";
  /** Set when pma had to fall back to argument order, to be shown to the user. */
  note?: string;
}

/**
 * Reads the progress of one checkpoint: tokens and step from its `trainer_state.json`
 * (pma's trainer writes one too), else the step in the folder's name.
 */
export async function readProgress(path: string): Promise<CheckpointProgress> {
  const abs = resolve(path);
  const isDir = (await stat(abs)).isDirectory();
  const dir = isDir ? abs : dirname(abs);
  const state = await readTrainerState(dir);
  const progress: CheckpointProgress = {};
  if (state?.tokensSeen !== undefined) progress.tokens = state.tokensSeen;
  const step =
    state?.globalStep ??
    stepFromName(basename(abs).replace(/\.safetensors$/, "")) ??
    stepFromName(basename(dir));
  if (step !== undefined) progress.step = step;
  return progress;
}

/**
 * Orders checkpoints oldest first. Tokens are the paper's measure of progress, so they
 * win when every checkpoint has them; steps are next; argument order is the last
 * resort, and the caller is told so that a wrong order never goes unnoticed.
 */
export function orderByProgress<T extends { path: string; progress: CheckpointProgress }>(
  inputs: T[],
): Ordered<T> {
  const byKey = (key: "tokens" | "step") => {
    const sorted = [...inputs].sort((a, b) => a.progress[key]! - b.progress[key]!);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.progress[key] === sorted[i - 1]!.progress[key]) return null;
    }
    return sorted;
  };
  if (inputs.every((i) => i.progress.tokens !== undefined)) {
    const sorted = byKey("tokens");
    if (sorted !== null) return { items: sorted, basis: "tokens" };
  }
  if (inputs.every((i) => i.progress.step !== undefined)) {
    const sorted = byKey("step");
    if (sorted !== null) return { items: sorted, basis: "step" };
  }
  return {
    items: [...inputs],
    basis: "arguments",
    note:
      inputs.length > 1
        ? "no token counts or step numbers distinguish these checkpoints; they are merged in the order given, oldest first"
        : undefined,
  } as Ordered<T>;
}
