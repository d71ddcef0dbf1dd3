import { PmaError } from "../common/errors.js";
import { isRemoteUri } from "../sources/location.js";
import { parseTokens } from "../common/units.js";
import type { MethodSpec } from "../merge/methods.js";
import { autoInterval } from "../trajectory/auto-interval.js";
import { planMerge, type MergePlan } from "../trajectory/plan.js";
import { discoverRun, requireTokens, type RunScan } from "../trajectory/run.js";

/** Flags that find a run's checkpoints and choose N of them V tokens apart. */
export const RUN_OPTIONS = {
  interval: { type: "string" },
  count: { type: "string" },
  at: { type: "string" },
  tolerance: { type: "string" },
  "tokens-per-step": { type: "string" },
  "step-pattern": { type: "string" },
} as const;

export const RUN_USAGE = `  --interval V          tokens between merged checkpoints (8B, 80M, 2e9) or auto
  --count N             checkpoints to merge, or auto (default auto: 10, or 6 when fewer fit)
  --at T                tokens of the newest merged checkpoint, or latest (default)
  --tolerance T         how far a checkpoint may be from its target (default half the save spacing)
  --tokens-per-step K   tokens per step, for runs whose trainer_state.json lacks num_input_tokens_seen
  --step-pattern RE     regex with one group capturing the step in checkpoint folder names`;

export interface RunFlags {
  interval?: string;
  count?: string;
  at?: string;
  tolerance?: string;
  "tokens-per-step"?: string;
  "step-pattern"?: string;
}

export interface PlannedRun {
  scan: RunScan;
  plan: MergePlan;
  /** Why V (and N) were chosen when the user asked for auto. */
  basis: string[];
}

export async function planFromFlags(
  runDir: string,
  values: RunFlags,
  method: MethodSpec,
): Promise<PlannedRun> {
  if (values.interval === undefined)
    throw new PmaError("USAGE", "--interval V is required (a token count such as 8B, or auto)");
  let stepPattern: RegExp | undefined;
  if (values["step-pattern"] !== undefined) {
    try {
      stepPattern = new RegExp(values["step-pattern"]);
    } catch (e) {
      throw new PmaError(
        "USAGE",
        `--step-pattern is not a valid regular expression: ${(e as Error).message}`,
      );
    }
  }
  const tokensPerStep =
    values["tokens-per-step"] === undefined
      ? undefined
      : parseTokens(values["tokens-per-step"], "--tokens-per-step");
  const scan = await discoverRun(runDir, {
    ...(stepPattern ? { stepPattern } : {}),
    ...(tokensPerStep !== undefined ? { tokensPerStep } : {}),
  });
  const checkpoints = requireTokens(scan);
  if (checkpoints.length === 0) {
    throw new PmaError(
      "USAGE",
      `${scan.dir}: no complete checkpoints found${scan.skipped.length ? ` (${scan.skipped.length} skipped: ${scan.skipped[0]!.reason})` : ""}`,
      { file: scan.dir },
    );
  }
  const basis: string[] = [];
  if (isRemoteUri(runDir)) {
    const from = {
      trainer_state: "trainer_state.json",
      checkpoint: "the checkpoint's own items",
      name: "the revision name",
      "tokens-per-step": "step x --tokens-per-step",
    } as const;
    const counts = new Map<string, number>();
    for (const c of checkpoints)
      if (c.tokensFrom !== null) counts.set(from[c.tokensFrom], (counts.get(from[c.tokensFrom]) ?? 0) + 1);
    basis.push(`tokens from ${[...counts].map(([k, n]) => `${k} (${n})`).join(", ")}`);
  }
  let interval: number;
  if (values.interval === "auto") {
    const rec = await autoInterval(checkpoints[checkpoints.length - 1]!);
    interval = rec.interval;
    basis.push(rec.basis);
  } else {
    interval = parseTokens(values.interval, "--interval");
  }
  const count = values.count === undefined || values.count === "auto" ? 10 : Number(values.count);
  if (values.count === undefined || values.count === "auto")
    basis.push("N=10 as in the paper (reduced automatically when the run is too short)");
  const plan = planMerge(checkpoints, {
    interval,
    count,
    ...(values.at !== undefined && values.at !== "latest" ? { at: parseTokens(values.at, "--at") } : {}),
    ...(values.tolerance !== undefined ? { tolerance: parseTokens(values.tolerance, "--tolerance") } : {}),
    method,
  });
  return { scan, plan, basis };
}
