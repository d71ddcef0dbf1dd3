/**
 * The logit monitors a lab run logged (train/run-log.ts: attn_logit_max, output_log_z,
 * output_logit_max on every step line), and which instability they point at around a
 * spike: attention-logit growth or output-logit divergence (Wortsman et al., 2023).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { LOG_FILE } from "../train/run-log.js";

export interface MonitorPoint {
  step: number;
  /** null where the step's loss was not finite. */
  loss: number | null;
  attn: number | null;
  logZ: number | null;
  outMax: number | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Step lines of a pma run's log.jsonl, by step (a resumed run's later line for a step wins). */
export async function readMonitors(runDir: string): Promise<MonitorPoint[]> {
  const text = await readFile(join(runDir, LOG_FILE), "utf8");
  const byStep = new Map<number, MonitorPoint>();
  for (const line of text.split("\n")) {
    if (!line.includes('"type":"step"')) continue;
    const r = JSON.parse(line) as Record<string, unknown>;
    if (typeof r.step !== "number") continue;
    byStep.set(r.step, {
      step: r.step,
      loss: num(r.loss),
      attn: num(r.attn_logit_max),
      logZ: num(r.output_log_z),
      outMax: num(r.output_logit_max),
    });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

export interface MechanismReading {
  /** Monitors `lookback` steps before the onset and at the onset (the nearest logged steps). */
  before: MonitorPoint;
  onset: MonitorPoint;
  /** "attention-logit growth", "output-logit divergence", both, or neither. */
  verdict: string;
}

/** Thresholds of the reading: a growth of the attention logits by half, or log Z moving by 1 nat. */
const ATTN_GROWTH = 1.5;
const LOGZ_DRIFT = 1;

function nearest(points: MonitorPoint[], step: number): MonitorPoint {
  return points.reduce((a, b) => (Math.abs(b.step - step) < Math.abs(a.step - step) ? b : a));
}

/** Which monitor moved in the `lookback` steps up to the spike's onset. */
export function readMechanism(points: MonitorPoint[], onsetStep: number, lookback: number): MechanismReading {
  const before = nearest(points, Math.max(1, onsetStep - lookback));
  const onset = nearest(points, onsetStep);
  const attnGrew = before.attn !== null && onset.attn !== null && onset.attn > ATTN_GROWTH * before.attn;
  const logZMoved =
    before.logZ !== null && onset.logZ !== null && Math.abs(onset.logZ - before.logZ) > LOGZ_DRIFT;
  const verdict =
    attnGrew && logZMoved
      ? "attention-logit growth and output-logit divergence"
      : attnGrew
        ? "attention-logit growth"
        : logZMoved
          ? "output-logit divergence"
          : "neither monitor moved before the onset";
  return { before, onset, verdict };
}
