/**
 * PMA-init for runs of pma's own trainer. Its checkpoints carry `pma_state.json` (step,
 * tokens, data position, config, lineage) and `pma_optimizer.safetensors` (AdamW
 * moments, plus f32 master weights when the model is saved in bf16); both formats are
 * defined in src/train/checkpoint.ts, and a test keeps these names in step with it.
 *
 * Copied as they are next to merged weights, they would undo the merge: a resume loads
 * the master weights of the checkpoint they came from. So the restart checkpoint gets
 * its own versions: the moments alone (the latest healthy checkpoint's, or zeros with
 * AdamW step 0 for a fresh optimizer, which is exactly what a new AdamW starts from),
 * `master_weights: false` so the weights load from model.safetensors, and a lineage
 * entry naming the restart. `pma train --resume <folder>` then continues from the merge
 * at the latest healthy checkpoint's step, data position and schedule.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { readJsonObjectFile } from "../formats/json-file.js";
import { SafetensorsFile } from "../formats/safetensors.js";
import { writeSafetensors, type TensorData } from "../formats/safetensors-writer.js";
import type { OptimizerChoice } from "./resume-files.js";
import { parseJsonLenient } from "../formats/json-python.js";

export const PMA_STATE_FILE = "pma_state.json";
export const PMA_OPTIMIZER_FILE = "pma_optimizer.safetensors";
const STATE_FORMAT = "pma-train-state";
const MOMENT = /\.exp_avg(_sq)?$/;

export interface PmaStateSummary {
  step: number;
  tokens: number;
  optimizerFile: string;
  optimizerStep: number;
}

function invalid(path: string, what: string): PmaError {
  return new PmaError(
    "CHECKPOINT_MISMATCH",
    `${path}: ${what}; not a pma training state this version understands`,
    { file: path },
  );
}

async function readState(
  dir: string,
): Promise<{ raw: Record<string, unknown>; summary: PmaStateSummary } | null> {
  const path = join(dir, PMA_STATE_FILE);
  const s = await readJsonObjectFile(path, {
    code: "CHECKPOINT_MISMATCH",
    what: "a pma training state this version understands",
  });
  if (s === null) return null;
  if (s["format"] !== STATE_FORMAT) throw invalid(path, `format is ${JSON.stringify(s["format"])}`);
  const opt = s["optimizer"] as Record<string, unknown> | undefined;
  const step = s["global_step"];
  const tokens = s["tokens"];
  if (
    typeof opt !== "object" ||
    opt === null ||
    typeof opt["file"] !== "string" ||
    typeof opt["step"] !== "number"
  )
    throw invalid(path, "no optimizer {file, step}");
  if (typeof step !== "number" || typeof tokens !== "number") throw invalid(path, "no global_step / tokens");
  if (!Array.isArray(s["lineage"])) throw invalid(path, "no lineage list");
  return { raw: s, summary: { step, tokens, optimizerFile: opt["file"], optimizerStep: opt["step"] } };
}

/** Whether `dir` is a checkpoint of pma's trainer. */
export async function isPmaTrainCheckpoint(dir: string): Promise<boolean> {
  return (await readState(dir)) !== null;
}

/** The files of a pma checkpoint that writePmaResumeState replaces (never copied as they are). */
export async function pmaStateFiles(dir: string): Promise<string[]> {
  const s = await readState(dir);
  return s === null ? [] : [PMA_STATE_FILE, s.summary.optimizerFile];
}

/**
 * Writes `pma_state.json` and `pma_optimizer.safetensors` into `staging` (a folder that
 * holds the merged weights and will be published as `target`) from the pma checkpoint
 * `from`; see the module comment.
 */
export async function writePmaResumeState(
  from: string,
  staging: string,
  target: string,
  optimizer: OptimizerChoice,
): Promise<PmaStateSummary> {
  const state = await readState(from);
  if (state === null) throw new PmaError("INTERNAL", `${from}: no ${PMA_STATE_FILE}`);
  const { raw, summary } = state;
  const optPath = join(from, summary.optimizerFile);
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(optPath);
  } catch (e) {
    throw new PmaError("IO", `${optPath}: cannot read the optimizer state (${(e as Error).message})`, {
      file: optPath,
      cause: e,
    });
  }
  const tensors: TensorData[] = [];
  try {
    for (const t of file.tensors.values()) {
      if (!MOMENT.test(t.name)) continue;
      tensors.push({
        name: t.name,
        dtype: t.dtype,
        shape: [...t.shape],
        data: optimizer === "latest" ? await file.read(t.name) : new Uint8Array(t.byteLength),
      });
    }
  } finally {
    await file.close();
  }
  if (tensors.length === 0) throw invalid(optPath, "no AdamW moments (<param>.exp_avg, <param>.exp_avg_sq)");
  const optimizerStep = optimizer === "latest" ? summary.optimizerStep : 0;
  await writeSafetensors(join(staging, PMA_OPTIMIZER_FILE), tensors, {
    optimizer: "adamw",
    step: String(optimizerStep),
  });
  const out = {
    ...raw,
    optimizer: {
      ...(raw["optimizer"] as Record<string, unknown>),
      file: PMA_OPTIMIZER_FILE,
      step: optimizerStep,
      master_weights: false,
    },
    lineage: [
      ...(raw["lineage"] as unknown[]),
      {
        weights: target,
        state: from,
        step: summary.step,
        tokens: summary.tokens,
        fresh_optimizer: optimizer === "reset",
      },
    ],
  };
  await writeFile(join(staging, PMA_STATE_FILE), JSON.stringify(out, null, 2) + "\n");
  return { ...summary, optimizerFile: PMA_OPTIMIZER_FILE, optimizerStep };
}

/**
 * The lines of a pma run's `log.jsonl` up to `step`, so a restarted run's log continues
 * the original's (the trainer keeps the lines of its run's log up to the resume step).
 * An unterminated last line is a write cut short and is left out.
 */
export async function logPrefix(runDir: string, step: number): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(join(runDir, "log.jsonl"), "utf8");
  } catch {
    return null;
  }
  const lines = text.split("\n");
  if (!text.endsWith("\n")) lines.pop();
  const kept = lines.filter((line) => {
    try {
      const s = (parseJsonLenient(line) as { step?: unknown } | null)?.step;
      return typeof s === "number" && s <= step;
    } catch {
      return false;
    }
  });
  return kept.length === 0 ? null : kept.join("\n") + "\n";
}
