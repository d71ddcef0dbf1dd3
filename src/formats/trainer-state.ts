import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { readJsonObjectFile } from "./json-file.js";

/**
 * The parts of a Hugging Face Trainer `trainer_state.json` pma relies on. Unknown keys
 * are kept by callers that rewrite the file; `num_input_tokens_seen` is 0 when the run
 * did not track tokens, which we report as unknown rather than zero.
 */
export interface TrainerState {
  globalStep?: number;
  tokensSeen?: number;
  raw: Record<string, unknown>;
}

export const TRAINER_STATE_FILE = "trainer_state.json";

/** Reads `dir/trainer_state.json`; null when the file does not exist. */
export async function readTrainerState(dir: string): Promise<TrainerState | null> {
  const obj = await readJsonObjectFile(join(dir, TRAINER_STATE_FILE), {
    code: "LOG_INVALID",
    what: "a trainer state",
  });
  return obj === null ? null : trainerStateOf(obj);
}

/** A trainer state from bytes read elsewhere (a remote checkpoint). */
export function parseTrainerState(bytes: Uint8Array, where: string): TrainerState {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new PmaError(
      "LOG_INVALID",
      `${where}: is not valid JSON (${(e as Error).message}); a trainer state is a JSON object.`,
      { file: where },
    );
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new PmaError("LOG_INVALID", `${where}: a trainer state must be a JSON object.`, { file: where });
  return trainerStateOf(obj as Record<string, unknown>);
}

function trainerStateOf(obj: Record<string, unknown>): TrainerState {
  const state: TrainerState = { raw: obj };
  const step = obj["global_step"];
  if (typeof step === "number" && Number.isInteger(step) && step >= 0) state.globalStep = step;
  const tokens = obj["num_input_tokens_seen"];
  if (typeof tokens === "number" && Number.isFinite(tokens) && tokens > 0) state.tokensSeen = tokens;
  else if (state.globalStep !== undefined) {
    const trl = tokensLoggedAt(obj["log_history"], state.globalStep);
    if (trl !== undefined) state.tokensSeen = trl;
  }
  return state;
}

/**
 * TRL's trainers count tokens in log_history as `num_tokens` and leave the Trainer's
 * num_input_tokens_seen at 0: the count logged at exactly the checkpoint's step is its
 * token count (an entry at another step would be off by the steps between).
 */
function tokensLoggedAt(history: unknown, step: number): number | undefined {
  if (!Array.isArray(history)) return undefined;
  for (let i = history.length - 1; i >= 0; i--) {
    const e = history[i] as Record<string, unknown> | null;
    if (typeof e !== "object" || e === null || e["step"] !== step) continue;
    const n = e["num_tokens"];
    if (typeof n === "number" && Number.isFinite(n) && n > 0) return n;
  }
  return undefined;
}

/** The step number in a checkpoint's name: `checkpoint-1200`, `iter_0001200`, `step_300`. */
export function stepFromName(name: string): number | undefined {
  const m = /(?:^|[^a-z])(?:checkpoint|iter|step|global_step)[-_]?(\d+)$/i.exec(name);
  if (m === null) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}
