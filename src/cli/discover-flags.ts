import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";
import type { DiscoverOptions } from "../trajectory/run.js";

/** Flags that say how to find a run's checkpoints, shared by `pma init` and `pma watch`. */
export const DISCOVER_OPTIONS = {
  "tokens-per-step": { type: "string" },
  "step-pattern": { type: "string" },
} as const;

export const DISCOVER_USAGE = `  --tokens-per-step K   tokens per step, for runs whose trainer_state.json lacks num_input_tokens_seen
  --step-pattern RE     regex with one group capturing the step in checkpoint folder names`;

export function discoverFromFlags(values: {
  "tokens-per-step"?: string;
  "step-pattern"?: string;
}): Omit<DiscoverOptions, "settleMs"> {
  const out: Omit<DiscoverOptions, "settleMs"> = {};
  if (values["step-pattern"] !== undefined) {
    try {
      out.stepPattern = new RegExp(values["step-pattern"]);
    } catch (e) {
      throw new PmaError(
        "USAGE",
        `--step-pattern is not a valid regular expression: ${(e as Error).message}`,
      );
    }
  }
  if (values["tokens-per-step"] !== undefined)
    out.tokensPerStep = parseTokens(values["tokens-per-step"], "--tokens-per-step");
  return out;
}

/** A whole number >= `min` from a flag, or a usage error naming the flag. */
export function intFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < min)
    throw new PmaError("USAGE", `${flag} must be a whole number >= ${min} (got '${text}')`);
  return n;
}
