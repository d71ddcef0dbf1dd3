/**
 * Loss-spike detection on real, noisy training curves (paper section 4.5: when the
 * loss spikes, merge checkpoints from before the spike and resume from the merge).
 *
 * A point is anomalous when its loss is above a robust running band: the median of a
 * trailing window of healthy points plus the larger of k robust standard deviations
 * (1.4826 x MAD) and a minimum absolute / relative jump. NaN and Infinity are always
 * anomalous. The median of a short trailing window lags a falling learning curve from
 * above, so a normal decreasing loss (fast early phase, LR decay) never crosses the
 * band; the window holds only healthy points, so a spike does not drag the band up.
 *
 * Anomalous points form one event until the loss is back for a few consecutive points
 * within a recovery band (half the detection band: hysteresis keeps a decaying tail
 * that flickers around the edge one event). An event that returns within the recovery
 * window is a transient spike; one that does not, or that contains a non-finite loss,
 * is a divergence, after which the level is relearned from the points that follow.
 * A point or two that are anomalous but not far out are outlier batches, not an event.
 * Windows count logged points, so they scale with the log's granularity.
 *
 * Grad norms that are not a positive finite number do not describe the gradient's size
 * and are neither spikes nor part of the trailing level (see docs/pma-init.md):
 * 0 is a step without a gradient (an RL batch with no reward signal, a step skipped
 * after an fp16 overflow that some trainers log as 0); a negative value is a sentinel
 * ("not computed"); Inf and NaN are what fp16 dynamic loss scaling logs on a step it
 * skips, which happens by design every time the scale grows. Taking log(0) as the
 * smallest double made zeros the window's median once they were common, after which
 * every real grad norm was a "spike". Non-finite grad norms are listed on their own
 * (`gradNormOverflows`); a divergence shows in the loss, which is always judged.
 */
import { PmaError } from "../common/errors.js";
import type { LogPoint, TrainingLog } from "./logs.js";
import { MAD_TO_SIGMA, RollingWindow } from "./robust.js";

export interface SpikeOptions {
  /** Healthy points in the trailing window (keep it short next to the curve's drift). */
  window: number;
  /** Band width in robust standard deviations. */
  k: number;
  /** The band is at least this wide in loss units... */
  minAbsJump: number;
  /** ...and at least this fraction of the level, so a near-noiseless curve does not alarm on a wiggle. */
  minRelJump: number;
  /** Healthy points needed before anything but a non-finite loss can be anomalous. */
  minHealthy: number;
  /** Logged points within which a spike must return to the band to count as transient. */
  recoveryWindow: number;
  /** Consecutive points back within the recovery band that confirm a recovery. */
  recoverPoints: number;
  /**
   * The recovery band is this fraction of the detection band: hysteresis, so that the
   * tail of a decaying spike flickering around the edge stays one event.
   */
  recoverFraction: number;
  /** Events with fewer anomalous points than this... */
  minPoints: number;
  /** ...are reported only if their peak is this many band widths above the level. */
  shortEventFactor: number;
  /** Grad-norm window, in healthy points (grad norms are judged on a log scale). */
  gradWindow: number;
  /** Grad-norm band in robust standard deviations of log(grad norm). */
  gradK: number;
  /** A grad-norm spike is also at least this multiple of its level. */
  gradMinRatio: number;
  /** Grad-norm spikes up to this many points before a loss event belong to it. */
  gradLead: number;
}

export const DEFAULT_SPIKE_OPTIONS: Readonly<SpikeOptions> = {
  window: 50,
  k: 6,
  minAbsJump: 0.01,
  minRelJump: 0.02,
  minHealthy: 10,
  recoveryWindow: 200,
  recoverPoints: 3,
  recoverFraction: 0.5,
  minPoints: 3,
  shortEventFactor: 2.5,
  gradWindow: 50,
  gradK: 6,
  gradMinRatio: 1.5,
  gradLead: 3,
};

export type SpikeKind = "transient" | "divergence";

export interface SpikeEvent {
  kind: SpikeKind;
  /** First anomalous loss. */
  startStep: number;
  /** Earlier of startStep and an accompanying grad-norm spike just before it. */
  onsetStep: number;
  peakStep: number;
  /** Highest loss in the event; NaN or Infinity when the loss went non-finite. */
  peakLoss: number;
  /** First step back within the band (confirmed by the following points), or null. */
  endStep: number | null;
  /** The log ends before the event was resolved (more data may change the verdict). */
  ongoing: boolean;
  /** Healthy level (trailing median) before the event, and the band's upper edge. */
  level: number;
  threshold: number;
  /** Last step with a healthy loss before the onset; null when there was none. */
  lastHealthyStep: number | null;
  /** Anomalous loss points in the event. */
  anomalousPoints: number;
  /** A grad-norm spike occurred from just before the onset to the end of the event. */
  gradNormSpike: boolean;
  /** Largest grad norm in that span, when grad norms were logged. */
  gradNormPeak: number | null;
}

export interface GradNormSpike {
  step: number;
  gradNorm: number;
  /** Trailing median grad norm before it. */
  level: number;
}

export interface SpikeReport {
  events: SpikeEvent[];
  gradNormSpikes: GradNormSpike[];
  /** Steps whose grad norm was Inf or NaN (fp16 loss-scale overflows: skipped steps). */
  gradNormOverflows: number[];
  /** Grad norms of 0 or below (no gradient, or a sentinel), ignored. */
  gradNormsIgnored: number;
  /** Points with a loss that were examined. */
  lossPoints: number;
}

function resolveOptions(options: Partial<SpikeOptions>): SpikeOptions {
  const o: SpikeOptions = { ...DEFAULT_SPIKE_OPTIONS, ...options };
  const positiveInt = [
    "window",
    "minHealthy",
    "recoveryWindow",
    "recoverPoints",
    "gradWindow",
    "minPoints",
  ] as const;
  for (const key of positiveInt) {
    if (!Number.isInteger(o[key]) || o[key] < 1)
      throw new PmaError("USAGE", `spike option ${key} must be a positive integer, got ${o[key]}.`);
  }
  const nonNegative = [
    "k",
    "minAbsJump",
    "minRelJump",
    "recoverFraction",
    "shortEventFactor",
    "gradK",
    "gradMinRatio",
    "gradLead",
  ] as const;
  for (const key of nonNegative) {
    if (!(o[key] >= 0) || !Number.isFinite(o[key]))
      throw new PmaError("USAGE", `spike option ${key} must be a finite number >= 0, got ${o[key]}.`);
  }
  if (o.minHealthy > o.window)
    throw new PmaError(
      "USAGE",
      `spike option minHealthy (${o.minHealthy}) cannot exceed window (${o.window}).`,
    );
  if (o.minHealthy > o.gradWindow)
    throw new PmaError(
      "USAGE",
      `spike option minHealthy (${o.minHealthy}) cannot exceed gradWindow (${o.gradWindow}).`,
    );
  return o;
}

/** Per point: whether its grad norm is a spike against the trailing healthy grad norms. */
function gradNormFlags(
  points: readonly LogPoint[],
  o: SpikeOptions,
): { flags: boolean[]; spikes: GradNormSpike[]; overflows: number[]; ignored: number } {
  const win = new RollingWindow(o.gradWindow);
  const flags = points.map(() => false);
  const spikes: GradNormSpike[] = [];
  const overflows: number[] = [];
  let ignored = 0;
  points.forEach((p, i) => {
    const g = p.gradNorm;
    if (g === undefined) return;
    if (!Number.isFinite(g)) {
      overflows.push(p.step);
      return;
    }
    if (!(g > 0)) {
      ignored++;
      return;
    }
    // Grad norms are positive and skewed: multiplicative deviations are what matter.
    const lg = Math.log(g);
    if (win.size >= o.minHealthy) {
      const m = win.median();
      const band = o.gradK * MAD_TO_SIGMA * win.mad();
      if (lg > m + band && g >= o.gradMinRatio * Math.exp(m)) {
        flags[i] = true;
        spikes.push({ step: p.step, gradNorm: g, level: Math.exp(m) });
        return;
      }
    }
    win.push(lg);
  });
  return { flags, spikes, overflows, ignored };
}

interface OpenEvent {
  startIdx: number;
  /** Loss points seen since the start (the recovery window counts these). */
  age: number;
  peakIdx: number;
  peakLoss: number;
  nonFinite: boolean;
  anomalous: number;
  level: number;
  threshold: number;
  /** Upper edge of the recovery band. */
  recoverAt: number;
  /** Indices of the in-band points of a recovery not yet confirmed. */
  okIdx: number[];
}

const rank = (x: number) => (Number.isFinite(x) ? x : Number.POSITIVE_INFINITY);

/** Finds loss spikes and divergences in a training log. */
export function detectSpikes(
  log: TrainingLog | readonly LogPoint[],
  options: Partial<SpikeOptions> = {},
): SpikeReport {
  const o = resolveOptions(options);
  const raw = "points" in log ? log.points : log;
  const points = raw.every((p, i) => i === 0 || raw[i - 1]!.step <= p.step)
    ? raw
    : [...raw].sort((a, b) => a.step - b.step);
  const grad = gradNormFlags(points, o);
  const scan = new SpikeScan(points, grad.flags, o);
  for (let i = 0; i < points.length; i++) scan.observe(i);
  return {
    events: scan.end(),
    gradNormSpikes: grad.spikes,
    gradNormOverflows: grad.overflows,
    gradNormsIgnored: grad.ignored,
    lossPoints: scan.lossPoints,
  };
}

/** One pass over the loss points: the healthy band, the event open now, the events found. */
class SpikeScan {
  private readonly healthy: RollingWindow;
  /** Steps judged healthy, ascending, to find the last one before an onset. */
  private readonly healthySteps: number[] = [];
  private readonly events: SpikeEvent[] = [];
  private open: OpenEvent | null = null;
  // After a divergence the level is relearned; a run that stays NaN is one event, not many.
  private relearning = false;
  lossPoints = 0;

  constructor(
    private readonly points: readonly LogPoint[],
    private readonly gradFlags: readonly boolean[],
    private readonly o: SpikeOptions,
  ) {
    this.healthy = new RollingWindow(o.window);
  }

  /** Judges point i: healthy, the start of an event, or part of the open one. */
  observe(i: number): void {
    const x = this.points[i]!.loss;
    if (x === undefined) return;
    this.lossPoints++;
    if (this.open === null) {
      this.open = this.startEvent(i, x);
      if (this.open === null) return;
    }
    this.continueEvent(this.open, i, x);
  }

  /** Closes the event still open at the end of the log (ongoing), and returns every event. */
  end(): SpikeEvent[] {
    if (this.open !== null) {
      const ev = this.open;
      const recovering = ev.okIdx.length > 0 ? ev.okIdx[0]! : null;
      this.finish(ev, recovering, this.points.length - 1, true);
    }
    return this.events;
  }

  private band(level: number): number {
    const o = this.o;
    return Math.max(o.k * MAD_TO_SIGMA * this.healthy.mad(), o.minAbsJump, o.minRelJump * Math.abs(level));
  }

  /** With no event open: a healthy point joins the band (null), an anomalous one opens an event. */
  private startEvent(i: number, x: number): OpenEvent | null {
    const finite = Number.isFinite(x);
    const ready = this.healthy.size >= this.o.minHealthy;
    if (finite && !ready) {
      this.markHealthy(i);
      return null;
    }
    if (!finite && this.relearning) return null;
    const level = this.healthy.median();
    const threshold = ready ? level + this.band(level) : Number.NaN;
    if (finite && x <= threshold) {
      this.markHealthy(i);
      return null;
    }
    const recoverAt = level + this.o.recoverFraction * (threshold - level);
    return {
      startIdx: i,
      age: 0,
      peakIdx: i,
      peakLoss: x,
      nonFinite: false,
      anomalous: 0,
      level,
      threshold,
      recoverAt,
      okIdx: [],
    };
  }

  /** Point i within the open event: a confirmed return closes it, too long a stay makes it a divergence. */
  private continueEvent(ev: OpenEvent, i: number, x: number): void {
    const o = this.o;
    const finite = Number.isFinite(x);
    ev.age++;
    // Without a level yet (a non-finite loss during warm-up), any finite loss is a return.
    const inBand = finite && i !== ev.startIdx && (Number.isNaN(ev.threshold) || x <= ev.recoverAt);
    if (inBand) {
      ev.okIdx.push(i);
      if (ev.okIdx.length >= o.recoverPoints) {
        this.finish(ev, ev.okIdx[0]!, ev.okIdx[0]!, false);
        // The confirming points are healthy: they were checked against the frozen band.
        for (const j of ev.okIdx) this.markHealthy(j);
        this.open = null;
      }
      return;
    }
    ev.okIdx = [];
    // Between the recovery band and the threshold: not back yet, but not anomalous either.
    if (finite && x <= ev.threshold) {
      if (ev.age >= o.recoveryWindow) this.closeDiverged(ev, i);
      return;
    }
    ev.anomalous++;
    if (!finite) ev.nonFinite = true;
    // The first non-finite loss is the peak; before any, the highest loss.
    if ((!finite && Number.isFinite(ev.peakLoss)) || (Number.isFinite(ev.peakLoss) && x > ev.peakLoss)) {
      ev.peakIdx = i;
      ev.peakLoss = x;
    }
    if (ev.age >= o.recoveryWindow) this.closeDiverged(ev, i);
  }

  private markHealthy(i: number): void {
    this.healthy.push(this.points[i]!.loss!);
    this.healthySteps.push(this.points[i]!.step);
    if (this.relearning && this.healthy.size >= this.o.minHealthy) this.relearning = false;
  }

  /** No recovery within the window: a divergence; relearn the level from what follows. */
  private closeDiverged(ev: OpenEvent, i: number): void {
    this.finish(ev, null, i, false);
    this.healthy.clear();
    this.relearning = true;
    this.open = null;
  }

  /** The last healthy step before `step`, or null. */
  private lastHealthyStepBefore(step: number): number | null {
    for (let j = this.healthySteps.length - 1; j >= 0; j--)
      if (this.healthySteps[j]! < step) return this.healthySteps[j]!;
    return null;
  }

  /** Records a closed event if it is severe enough to be one (not an outlier batch or two). */
  private finish(ev: OpenEvent, endIdx: number | null, lastIdx: number, ongoing: boolean): void {
    const { o, points, gradFlags } = this;
    const severe =
      ev.nonFinite ||
      ev.anomalous >= o.minPoints ||
      ev.peakLoss - ev.level >= o.shortEventFactor * (ev.threshold - ev.level);
    if (!severe) return;
    // A grad-norm spike shortly before the loss moves is where the event began.
    let onsetIdx = ev.startIdx;
    for (let j = ev.startIdx - 1; j >= 0 && j >= ev.startIdx - o.gradLead; j--)
      if (gradFlags[j]) onsetIdx = j;
    let gradNormSpike = false;
    let gradNormPeak: number | null = null;
    for (let j = onsetIdx; j <= lastIdx; j++) {
      if (gradFlags[j]) gradNormSpike = true;
      const g = points[j]!.gradNorm;
      if (g !== undefined && (gradNormPeak === null || rank(g) > rank(gradNormPeak))) gradNormPeak = g;
    }
    const onsetStep = points[onsetIdx]!.step;
    const recovered = endIdx !== null;
    this.events.push({
      kind: recovered && !ev.nonFinite ? "transient" : "divergence",
      startStep: points[ev.startIdx]!.step,
      onsetStep,
      peakStep: points[ev.peakIdx]!.step,
      peakLoss: ev.peakLoss,
      endStep: recovered ? points[endIdx]!.step : null,
      ongoing,
      level: ev.level,
      threshold: ev.threshold,
      lastHealthyStep: this.lastHealthyStepBefore(onsetStep),
      anomalousPoints: ev.anomalous,
      gradNormSpike,
      gradNormPeak,
    });
  }
}

/**
 * The newest checkpoint that is certainly from before `event`: at or before the last
 * healthy logged step preceding its onset, minus `margin` steps. A loss logged at step
 * s was computed with the weights of step s-1, so "before the first bad loss" is not
 * enough; the last good loss is the evidence that the weights were still healthy.
 */
export function lastHealthyBefore<C extends { step: number }>(
  event: SpikeEvent,
  checkpoints: readonly C[],
  options: { margin?: number } = {},
): C | null {
  return healthyCheckpointsBefore(event, checkpoints, 1, options)[0] ?? null;
}

/** The newest `count` healthy checkpoints before `event` (see lastHealthyBefore), newest first. */
export function healthyCheckpointsBefore<C extends { step: number }>(
  event: SpikeEvent,
  checkpoints: readonly C[],
  count: number,
  options: { margin?: number } = {},
): C[] {
  const margin = options.margin ?? 0;
  if (!(margin >= 0)) throw new PmaError("USAGE", `margin must be >= 0 steps, got ${margin}.`);
  if (event.lastHealthyStep === null) return [];
  const limit = Math.min(event.lastHealthyStep, event.onsetStep - 1) - margin;
  return checkpoints
    .filter((c) => c.step <= limit)
    .sort((a, b) => b.step - a.step)
    .slice(0, count);
}
