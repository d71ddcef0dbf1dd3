import { basename, dirname } from "node:path";
import { stepFromName } from "../trainer-state.js";
import type { DcpCheckpoint } from "./model.js";
import { readMegatronCommon } from "./megatron-common.js";
import { readBytesValue } from "./open.js";

/** Names of BYTE_IO items (last path component) that trainers use for tokens seen and for the step. */
const TOKEN_ITEMS = ["tokens_seen", "global_train_tokens_seen", "consumed_tokens", "num_tokens_seen"];
const STEP_ITEMS = ["step", "global_step", "iteration"];

export interface DcpProgress {
  tokens?: number;
  step?: number;
  /** Which item or name each came from, to be shown to the user. */
  tokensFrom?: string;
  stepFrom?: string;
}

function countItem(ckpt: DcpCheckpoint, names: string[]): { value: number; item: string } | null {
  // Shallowest first: `step` before `train_state.step` before `optimizer.state.x.step`.
  const items = [...ckpt.bytesItems.keys()]
    .filter((k) => names.includes(k.split(".").pop()!))
    .sort((a, b) => a.split(".").length - b.split(".").length);
  for (const item of items) {
    const v = readBytesValue(ckpt, item);
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return { value: v, item };
  }
  return null;
}

/**
 * How far training had gone at a distributed checkpoint: tokens and step from its BYTE_IO
 * items (torchtitan's and most trainers' `step`, a `tokens_seen` counter), else the step
 * in the folder's name (`step-300`, `iter_0000100`) or its parent's (OLMo-core's
 * `step300/model_and_optim`).
 */
export function dcpProgress(ckpt: DcpCheckpoint): DcpProgress {
  const p: DcpProgress = {};
  const tokens = countItem(ckpt, TOKEN_ITEMS);
  if (tokens !== null) {
    p.tokens = tokens.value;
    p.tokensFrom = `item "${tokens.item}"`;
  }
  const common = p.tokens === undefined ? readMegatronCommon(ckpt.root) : null;
  if (common?.tokens !== undefined) {
    p.tokens = common.tokens;
    p.tokensFrom = "common.pt: args.consumed_train_samples x args.seq_length (derived)";
  }
  const step = countItem(ckpt, STEP_ITEMS);
  if (common?.iteration !== undefined && step === null) {
    p.step = common.iteration;
    p.stepFrom = "common.pt: iteration";
  } else if (step !== null) {
    p.step = step.value;
    p.stepFrom = `item "${step.item}"`;
  } else {
    for (const dir of [ckpt.root, dirname(ckpt.root)]) {
      const s = stepFromName(basename(dir)) ?? /^step(\d+)$/.exec(basename(dir))?.[1];
      if (s !== undefined) {
        p.step = Number(s);
        p.stepFrom = `folder name "${basename(dir)}"`;
        break;
      }
    }
  }
  return p;
}
