/**
 * Which checkpoints a PMA-init restart merges (paper section 4.5: "merge the model
 * checkpoints from before the spike and resume training from that point"): the N
 * newest complete checkpoints that are certainly from before the spike, found in the
 * run's log, or before a step the user names.
 */
import { PmaError } from "../common/errors.js";
import type { LogPoint, TrainingLog } from "./logs.js";
import type { RunCheckpoint, RunScan } from "./run.js";
import { detectSpikes, healthyCheckpointsBefore, type SpikeEvent, type SpikeOptions } from "./spikes.js";

export interface InitSelectOptions {
  /** Restart before this step (strictly); default: before the spike found in the log. */
  before?: number;
  /** Restart before this event (found in the same log) instead of the newest unrecovered one. */
  event?: SpikeEvent;
  /** N: checkpoints to merge (the paper used 3). */
  count: number;
  /**
   * Steps kept clear of the last healthy logged loss. The default of 1 is the minimum
   * that is safe: a loss logged at step s measures the weights of step s-1, so the
   * checkpoint saved at the last healthy step produced the first bad loss.
   */
  margin?: number;
  spikeOptions?: Partial<SpikeOptions>;
}

/** Why the restart point is where it is. */
export type InitReason =
  | { kind: "spike"; event: SpikeEvent; limitStep: number }
  | { kind: "step"; before: number; limitStep: number; lossAtStep: number | null };

export interface InitSelection {
  reason: InitReason;
  /** Oldest first. */
  checkpoints: RunCheckpoint[];
  /** Spikes in the log that were not chosen (earlier, or recovered). */
  otherEvents: SpikeEvent[];
  notes: string[];
}

export const DEFAULT_INIT_COUNT = 3;
export const DEFAULT_INIT_MARGIN = 1;

/**
 * The spike a restart should undo: the newest event that did not recover (a divergence,
 * or one still open at the end of the log). A spike the run recovered from by itself is
 * no reason to throw away the training after it, so recovered ones are only reported.
 */
export function spikeToUndo(events: readonly SpikeEvent[]): SpikeEvent | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.kind === "divergence" || e.ongoing) return e;
  }
  return null;
}

function describeEvent(e: SpikeEvent): string {
  const peak = Number.isFinite(e.peakLoss) ? e.peakLoss.toFixed(4) : String(e.peakLoss);
  const state = e.ongoing
    ? "still above the band at the end of the log"
    : e.kind === "transient"
      ? `recovered at step ${e.endStep}`
      : "did not recover";
  return `${e.kind} at step ${e.startStep} (peak loss ${peak} at step ${e.peakStep}, healthy level ${e.level.toFixed(4)}; ${state})`;
}

/** The newest logged training loss at or before `step`. */
function lossAt(log: TrainingLog | null, step: number): LogPoint | null {
  if (log === null) return null;
  let best: LogPoint | null = null;
  for (const p of log.points) if (p.step <= step && p.loss !== undefined) best = p;
  return best;
}

/** Chooses the checkpoints to merge for a restart. `log` may be null only with `before`. */
export function selectInitCheckpoints(
  scan: RunScan,
  log: TrainingLog | null,
  opts: InitSelectOptions,
): InitSelection {
  if (!(Number.isInteger(opts.count) && opts.count >= 1))
    throw new PmaError("USAGE", `--count must be a positive integer (got ${opts.count})`);
  const margin = opts.margin ?? DEFAULT_INIT_MARGIN;
  if (!(Number.isInteger(margin) && margin >= 0))
    throw new PmaError("USAGE", `--margin must be a whole number of steps >= 0 (got ${margin})`);
  const notes: string[] = [];
  const events = log === null ? [] : detectSpikes(log, opts.spikeOptions ?? {}).events;
  let reason: InitReason;
  let chosen: RunCheckpoint[];
  let otherEvents: SpikeEvent[];

  if (opts.before !== undefined) {
    if (!(Number.isInteger(opts.before) && opts.before >= 0))
      throw new PmaError("USAGE", `--before must be a step number or auto (got ${opts.before})`);
    const limitStep = opts.before - 1;
    chosen = scan.checkpoints
      .filter((c) => c.step <= limitStep)
      .sort((a, b) => b.step - a.step)
      .slice(0, opts.count);
    const at = lossAt(log, opts.before);
    reason = {
      kind: "step",
      before: opts.before,
      limitStep,
      lossAtStep: at?.step === opts.before ? (at.loss ?? null) : null,
    };
    otherEvents = events;
  } else {
    if (log === null)
      throw new PmaError(
        "USAGE",
        "finding the spike needs the run's training log; pass --before STEP to choose the restart point yourself",
      );
    const event = opts.event ?? spikeToUndo(events);
    if (event === null) {
      // Eval-only entries are not training steps: count the steps that have a loss.
      const lossSteps = log.points.filter((p) => p.loss !== undefined).length;
      const evalOnly = log.points.length - lossSteps;
      const recovered =
        events.length > 0
          ? ` The log has ${events.length} spike(s) the run recovered from: ${events.map(describeEvent).join("; ")}.`
          : "";
      throw new PmaError(
        "USAGE",
        `${log.files[0] ?? scan.dir}: no unrecovered loss spike or divergence found in ${lossSteps} logged training step(s)${evalOnly > 0 ? ` (and ${evalOnly} evaluation-only entries)` : ""}.${recovered} ` +
          `Pass --before STEP to restart from the checkpoints before a step of your choice.`,
        { file: log.files[0] ?? scan.dir },
      );
    }
    if (event.lastHealthyStep === null) {
      throw new PmaError(
        "USAGE",
        `the spike at step ${event.startStep} begins before any healthy loss was logged, so no checkpoint is known to be healthy; pass --before STEP`,
      );
    }
    const limitStep = Math.min(event.lastHealthyStep, event.onsetStep - 1) - margin;
    chosen = healthyCheckpointsBefore(event, scan.checkpoints, opts.count, { margin });
    reason = { kind: "spike", event, limitStep };
    otherEvents = events.filter((e) => e.startStep !== event.startStep);
    if (event.onsetStep < event.startStep)
      notes.push(
        `a grad-norm spike at step ${event.onsetStep} preceded the loss spike; the restart point is before it`,
      );
  }

  if (chosen.length === 0) {
    const first = scan.checkpoints[0];
    throw new PmaError(
      "USAGE",
      `${scan.dir}: no complete checkpoint at or before step ${reason.limitStep}` +
        (first !== undefined
          ? ` (the oldest complete one is ${first.name} at step ${first.step})`
          : " (the run has no complete checkpoints)") +
        (scan.skipped.length > 0
          ? `; skipped: ${scan.skipped.map((s) => `${s.path} (${s.reason})`).join(", ")}`
          : ""),
      { file: scan.dir },
    );
  }
  // A checkpoint being written now may belong before the limit; say so rather than
  // silently merging an older window.
  if (scan.skipped.length > 0)
    notes.push(
      `skipped incomplete checkpoint(s): ${scan.skipped.map((s) => `${s.path} (${s.reason})`).join(", ")}`,
    );
  if (chosen.length < opts.count) {
    notes.push(
      `only ${chosen.length} complete checkpoint(s) before step ${reason.limitStep + 1}; merging ${chosen.length} instead of ${opts.count}`,
    );
  }
  return { reason, checkpoints: chosen.sort((a, b) => a.step - b.step), otherEvents, notes };
}

export { describeEvent };
