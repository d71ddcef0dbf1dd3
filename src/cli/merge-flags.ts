import { PmaError } from "../common/errors.js";
import { intFlag } from "./discover-flags.js";

/** How a merge runs (not what it merges): shared by `pma merge`, `pma init` and `pma watch`. */
export const MERGE_RUN_OPTIONS = {
  accumulate: { type: "string" },
  threads: { type: "string" },
} as const;

/** The PMA-init flags shared by `pma init` and `pma watch` (which inits on spikes). */
export const INIT_OPTIONS = {
  optimizer: { type: "string" },
  margin: { type: "string" },
  log: { type: "string" },
  activate: { type: "boolean" },
  "loss-key": { type: "string" },
} as const;

export interface MergeRunFlags {
  accumulate: "f32" | "f64";
  threads?: number;
}

export function mergeRunFromFlags(values: { accumulate?: string; threads?: string }): MergeRunFlags {
  const accumulate = values.accumulate ?? "f64";
  if (accumulate !== "f32" && accumulate !== "f64")
    throw new PmaError("USAGE", `--accumulate must be f32 or f64 (got '${accumulate}')`);
  return {
    accumulate,
    ...(values.threads !== undefined ? { threads: intFlag(values.threads, "--threads", 1) } : {}),
  };
}

export interface InitFlags {
  optimizer: "latest" | "reset";
  /** Megatron runs: point latest_checkpointed_iteration.txt at the new checkpoint. */
  activate?: boolean;
  margin?: number;
  log?: string;
  lossKey?: string;
}

export function initFromFlags(values: {
  optimizer?: string;
  margin?: string;
  log?: string;
  activate?: boolean;
  "loss-key"?: string;
}): InitFlags {
  const optimizer = values.optimizer ?? "latest";
  if (optimizer !== "latest" && optimizer !== "reset")
    throw new PmaError("USAGE", `--optimizer must be latest or reset (got '${optimizer}')`);
  return {
    optimizer,
    ...(values.margin !== undefined ? { margin: intFlag(values.margin, "--margin", 0) } : {}),
    ...(values.log !== undefined ? { log: values.log } : {}),
    ...(values.activate === true ? { activate: true } : {}),
    ...(values["loss-key"] !== undefined ? { lossKey: values["loss-key"] } : {}),
  };
}
