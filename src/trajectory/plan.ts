import { PmaError } from "../common/errors.js";
import { formatTokens } from "../common/units.js";
import { coefficientsFor, DEFAULT_METHOD, type MethodSpec } from "../merge/methods.js";
import type { RunCheckpoint } from "./run.js";

export interface PlanOptions {
  /** V: tokens between merged checkpoints. */
  interval: number;
  /** N: how many checkpoints; may be reduced when the run is too short. */
  count: number;
  /** T: tokens of the newest merged checkpoint; default the run's newest. */
  at?: number;
  /** How far a checkpoint may be from its target; default half the save spacing. */
  tolerance?: number;
  method?: MethodSpec;
}

export interface PlannedCheckpoint extends RunCheckpoint {
  tokens: number;
  target: number;
  coefficient: number;
}

export interface MergePlan {
  interval: number;
  requestedCount: number;
  count: number;
  at: number;
  tolerance: number;
  method: MethodSpec;
  /** Oldest first. */
  selected: PlannedCheckpoint[];
  /** Targets no checkpoint was close enough to. */
  missingTargets: number[];
  notes: string[];
}

/**
 * Picks the checkpoints closest to T, T-V, ..., T-(N-1)V, as the paper merges N
 * checkpoints spaced V tokens apart ending at the newest. When the run is too short for
 * N at V, N shrinks to what fits (the paper did the same: V=32B at 204B tokens, N=6).
 */
export function planMerge(checkpoints: (RunCheckpoint & { tokens: number })[], opts: PlanOptions): MergePlan {
  if (checkpoints.length === 0)
    throw new PmaError("USAGE", "the run has no complete checkpoints to plan a merge from");
  if (!(opts.interval > 0)) throw new PmaError("USAGE", `--interval must be positive (got ${opts.interval})`);
  if (!(Number.isInteger(opts.count) && opts.count >= 1))
    throw new PmaError("USAGE", `--count must be a positive integer (got ${opts.count})`);
  const sorted = [...checkpoints].sort((a, b) => a.tokens - b.tokens);
  const notes: string[] = [];
  const first = sorted[0]!.tokens;
  const newest = sorted[sorted.length - 1]!.tokens;
  const at = opts.at ?? newest;
  const tolerance = opts.tolerance ?? defaultTolerance(sorted);
  if (at > newest + tolerance)
    notes.push(`--at ${formatTokens(at)} is beyond the newest checkpoint (${formatTokens(newest)})`);
  const fits = Math.floor((at - first + tolerance) / opts.interval) + 1;
  let count = opts.count;
  if (fits < count) {
    count = Math.max(1, fits);
    notes.push(
      `the run is too short for ${opts.count} checkpoints ${formatTokens(opts.interval)} tokens apart ending at ${formatTokens(at)}; using N=${count} (as the paper did when a run was short)`,
    );
  }
  const used = new Set<string>();
  const picked: PlannedCheckpoint[] = [];
  const missingTargets: number[] = [];
  for (let k = count - 1; k >= 0; k--) {
    const target = at - k * opts.interval;
    let best: (RunCheckpoint & { tokens: number }) | null = null;
    for (const c of sorted) {
      if (used.has(c.path) || Math.abs(c.tokens - target) > tolerance) continue;
      if (best === null || Math.abs(c.tokens - target) < Math.abs(best.tokens - target)) best = c;
    }
    if (best === null) missingTargets.push(target);
    else {
      used.add(best.path);
      picked.push({ ...best, target, coefficient: 0 });
    }
  }
  if (missingTargets.length > 0) {
    notes.push(
      `no checkpoint within ${formatTokens(tolerance)} tokens of ${missingTargets.map((t) => formatTokens(Math.max(0, t))).join(", ")}`,
    );
  }
  if (picked.length === 0)
    throw new PmaError(
      "USAGE",
      `no checkpoint is near any target; check --interval, --at and --tolerance (${notes.join("; ")})`,
    );
  picked.sort((a, b) => a.tokens - b.tokens);
  const method = opts.method ?? DEFAULT_METHOD;
  const c = coefficientsFor(method, picked.length);
  picked.forEach((p, i) => (p.coefficient = c[i]!));
  return {
    interval: opts.interval,
    requestedCount: opts.count,
    count: picked.length,
    at,
    tolerance,
    method,
    selected: picked,
    missingTargets,
    notes,
  };
}

/** Half the median spacing between saved checkpoints: a target is never ambiguous. */
function defaultTolerance(sorted: { tokens: number }[]): number {
  if (sorted.length < 2) return Number.MAX_SAFE_INTEGER;
  const gaps = sorted
    .slice(1)
    .map((c, i) => c.tokens - sorted[i]!.tokens)
    .sort((a, b) => a - b);
  return Math.max(1, Math.floor(gaps[Math.floor(gaps.length / 2)]! / 2));
}
