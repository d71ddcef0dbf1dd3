/**
 * The search over merges of one run, independent of how a candidate is scored:
 *
 * 1. the newest checkpoint alone (the baseline every merge must beat);
 * 2. windows (stride, count, end) with SMA: every window when they fit the budget (a grid),
 *    else Bayesian optimisation over them (a GP on log span, log count and end, started
 *    from a space-filling design) — WSM finds the window's length matters most;
 * 3. the other methods (WMA, WSM 1-sqrt and cosine) on the best window;
 * 4. EMA's alpha, a continuous parameter, by one-dimensional Bayesian optimisation over
 *    [0.05, 0.95] on the best window's stride, over as many checkpoints as fit (EMA
 *    weights the old ones down itself).
 *
 * Deterministic: the same scores give the same proposals, so a rerun (or a larger
 * budget) walks the same path through the evaluation cache first.
 */
import { PmaError } from "../common/errors.js";
import { roundAlpha, type Candidate, type TuneMethod } from "./candidates.js";
import { minimizeOverSet, spaceFilling } from "./gp.js";

export interface SearchSpace {
  /** Checkpoints in the run. */
  checkpoints: number;
  /** Window ends to consider (0-based indices); default the newest only. */
  ends?: number[];
  /** Largest N considered (default: all that fit). */
  maxCount?: number;
  /** Methods besides SMA to try on the best window (default all). */
  methods?: TuneMethod[];
}

export type SearchPhase = "baseline" | "window" | "method" | "ema";

export interface SearchStep {
  phase: SearchPhase;
  candidate: Candidate;
  loss: number;
}

export type Objective = (c: Candidate, phase: SearchPhase) => Promise<number>;

/** All windows of at least 2 checkpoints on the grid, by end, then stride, then count. */
export function enumerateWindows(space: SearchSpace): Candidate[] {
  const n = space.checkpoints;
  const ends = space.ends ?? [n - 1];
  const out: Candidate[] = [];
  for (const end of ends) {
    if (!Number.isInteger(end) || end < 0 || end >= n)
      throw new PmaError("USAGE", `window end ${end} is not a checkpoint of the run (0..${n - 1})`);
    for (let stride = 1; stride <= end; stride++) {
      const fit = Math.floor(end / stride) + 1;
      for (let count = 2; count <= Math.min(fit, space.maxCount ?? Infinity); count++)
        out.push({ method: "sma", stride, count, end });
    }
  }
  return out;
}

/** How the budget is split: [windows, methods, ema]; the baseline takes one. */
export function splitBudget(budget: number, windows: number, methods: number): [number, number, number] {
  const rest = budget - 1;
  if (rest <= 0) return [0, 0, 0];
  const m0 = budget >= 10 ? methods : 0;
  const e0 = budget >= 12 ? Math.min(6, Math.max(2, Math.floor(budget / 6))) : 0;
  const w = Math.min(windows, Math.max(0, rest - m0 - e0));
  const m = Math.min(m0, rest - w);
  // Windows that all fit leave their unused share to EMA.
  return [w, m, rest - w - m];
}

export async function searchMerges(
  space: SearchSpace,
  objective: Objective,
  budget: number,
): Promise<SearchStep[]> {
  if (!Number.isInteger(budget) || budget < 1)
    throw new PmaError("USAGE", `the budget must be a positive number of evaluations (got ${budget})`);
  if (space.checkpoints < 2)
    throw new PmaError("USAGE", `a run needs at least 2 checkpoints to merge (found ${space.checkpoints})`);
  const steps: SearchStep[] = [];
  const run = async (phase: SearchPhase, candidate: Candidate) => {
    const loss = await objective(candidate, phase);
    steps.push({ phase, candidate, loss });
    return loss;
  };
  const newest = space.checkpoints - 1;
  await run("baseline", { method: "sma", stride: 1, count: 1, end: newest });

  const windows = enumerateWindows(space);
  const methods = (space.methods ?? ["wma", "wsm-1-sqrt", "wsm-cosine", "ema"]).filter((m) => m !== "sma");
  const fixedMethods = methods.filter((m) => m !== "ema");
  const [wBudget, mBudget, eBudget] = splitBudget(budget, windows.length, fixedMethods.length);

  // Features in [0,1]: log of the span in saves, log of the count, and the end.
  const maxSpan = Math.max(1, ...windows.map((w) => (w.count - 1) * w.stride));
  const maxCount = Math.max(2, ...windows.map((w) => w.count));
  const ends = space.ends ?? [newest];
  const lo = Math.min(...ends);
  const hi = Math.max(...ends);
  const features = windows.map((w) => [
    Math.log((w.count - 1) * w.stride) / Math.log(Math.max(2, maxSpan)),
    Math.log(w.count - 1) / Math.log(Math.max(2, maxCount - 1)),
    hi > lo ? (w.end - lo) / (hi - lo) : 0,
  ]);
  if (wBudget >= windows.length) {
    for (const w of windows) await run("window", w);
  } else if (wBudget > 0) {
    const start = spaceFilling(features, Math.min(wBudget, Math.max(3, Math.ceil(wBudget / 3))));
    await minimizeOverSet(features, (i) => run("window", windows[i]!), wBudget, start);
  }
  const bestWindow = best(steps.filter((s) => s.phase === "window")) ?? steps[0]!;
  const w = bestWindow.candidate;
  if (w.count < 2) return steps;

  for (const m of fixedMethods.slice(0, mBudget)) await run("method", { ...w, method: m });

  if (methods.includes("ema") && eBudget > 0) {
    const count = Math.min(space.maxCount ?? Infinity, Math.floor(w.end / w.stride) + 1);
    const alphas = Array.from({ length: 91 }, (_, i) => roundAlpha(0.05 + i * 0.01));
    // The paper's default (0.2) and two more across the range; EMA's loss is smooth in
    // alpha, so short length scales (which send EI to the edges) are not tried.
    const initial = [0.2, 0.5, 0.8].map((a) => alphas.indexOf(a));
    await minimizeOverSet(
      alphas.map((a) => [a]),
      (i) => run("ema", { method: "ema", alpha: alphas[i]!, stride: w.stride, count, end: w.end }),
      eBudget,
      initial,
      [0.2, 0.35, 0.6, 1.0],
    );
  }
  return steps;
}

export function best(steps: readonly SearchStep[]): SearchStep | undefined {
  let b: SearchStep | undefined;
  for (const s of steps) if (Number.isFinite(s.loss) && (b === undefined || s.loss < b.loss)) b = s;
  return b;
}
