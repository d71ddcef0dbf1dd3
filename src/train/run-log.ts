/**
 * The run's JSONL log (`<run>/log.jsonl`): one line per optimizer step and per
 * evaluation, appended and flushed as training goes, so `pma watch`, the trajectory
 * readers or `tail -f` can follow a live run. Field names are part of pma's log format
 * (src/trajectory/log-readers.ts reads them):
 *   {"type":"step","step","tokens","loss","lr","grad_norm","seconds",
 *    "attn_logit_max","output_logit_max","output_log_z"}   seconds: that step's wall time;
 *       the last three are the logit monitors of nn/model.ts's LogitStats (largest over
 *       the step's micro-batches; log Z their mean)
 *   {"type":"eval","step","tokens","val_loss", ...}
 *   {"type":"prune","step","tokens","checkpoint","checkpoint_step","checkpoint_tokens"}
 *       a checkpoint deleted by checkpointing.keep_last once `step`'s was published;
 *       readers skip types they do not know, so older ones read these logs too
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { PmaError } from "../common/errors.js";
import { writeFileAtomicSync } from "../common/atomic-dir.js";
import { parseJsonLenient } from "../formats/json-python.js";

export const LOG_FILE = "log.jsonl";

export interface StepRecord {
  type: "step";
  step: number;
  tokens: number;
  loss: number;
  lr: number;
  grad_norm: number;
  seconds: number;
  /** MoE only: the cross-entropy part of `loss` (the rest is the router aux loss). */
  ce?: number;
  /** Logit monitors (nn/model.ts LogitStats); absent in logs of older pma versions. */
  attn_logit_max?: number;
  output_logit_max?: number;
  output_log_z?: number;
}

export interface EvalRecord {
  type: "eval";
  step: number;
  tokens: number;
  val_loss: number;
  val_tokens: number;
  seconds: number;
}

/** `step` and `tokens` are the run's position, so a resume keeps the line only if it happened before. */
export interface PruneRecord {
  type: "prune";
  step: number;
  tokens: number;
  /** The folder name, e.g. "checkpoint-12". */
  checkpoint: string;
  checkpoint_step: number;
  checkpoint_tokens: number;
}

export type LogRecord = StepRecord | EvalRecord | PruneRecord;

/**
 * Lines of an existing log up to and including `step`: what a run resumed (or forked)
 * at `step` inherits. Lines after it belong to a continuation that the resume replaces,
 * and an unterminated last line is a write cut short.
 */
export function logPrefix(path: string, step: number): string {
  if (!existsSync(path)) return "";
  const text = readFileSync(path, "utf8");
  const kept: string[] = [];
  const lines = text.split("\n");
  if (!text.endsWith("\n")) lines.pop();
  for (const line of lines) {
    if (line.trim() === "") continue;
    let rec: unknown;
    try {
      rec = parseJsonLenient(line);
    } catch {
      continue;
    }
    const s = (rec as { step?: unknown } | null)?.step;
    if (typeof s === "number" && s <= step) kept.push(line);
  }
  return kept.length === 0 ? "" : kept.join("\n") + "\n";
}

export class RunLog {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Starts the log with `prefix` (inherited lines, may be empty), replacing any old file. */
  static create(path: string, prefix = ""): RunLog {
    writeFileAtomicSync(path, prefix);
    try {
      return new RunLog(path, openSync(path, "a"));
    } catch (e) {
      throw new PmaError("IO", `cannot open ${path} for appending: ${(e as Error).message}`, {
        file: path,
        cause: e,
      });
    }
  }

  write(rec: LogRecord): void {
    if (this.fd === null) throw new PmaError("INTERNAL", `${this.path}: write after close`);
    // JSON has no NaN/Infinity; a diverged step is logged with nulls rather than lost.
    const line =
      JSON.stringify(rec, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v)) +
      "\n";
    const bytes = Buffer.from(line, "utf8");
    let off = 0;
    while (off < bytes.length) off += writeSync(this.fd, bytes, off, bytes.length - off);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
