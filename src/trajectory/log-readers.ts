/**
 * The four training-log formats, each parsed into a TrainingLog: pma's JSONL, Hugging
 * Face trainer_state.json, CSV, and TensorBoard scalars. Records are applied in file
 * order through one builder, which keeps one point per step and handles restarts.
 */
import { basename, dirname } from "node:path";
import { PmaError } from "../common/errors.js";
import { readTensorboardFile, type TensorboardFile } from "../formats/tensorboard.js";
import { JsonSyntaxError, parseJsonLenient, parseNumberCell, splitCsvRow } from "./log-text.js";
import { MaxHeap } from "../common/max-heap.js";
import type { LogField, LogPoint, TrainingLog } from "./logs.js";

/**
 * Names under which trainers log each field, best first. TensorBoard tags and CSV
 * headers are matched against this table case-insensitively and exactly (Megatron's
 * "lm loss vs tokens" is a different series, plotted against tokens, not steps).
 */
export const LOG_FIELD_NAMES: Readonly<Record<LogField, readonly string[]>> = {
  loss: [
    "train/loss",
    "loss",
    "lm loss", // Megatron-LM
    "lm_loss",
    "train/lm_loss",
    "train_loss_step", // Lightning: self.log("train_loss", on_step=True, on_epoch=True)
    "train_loss",
    "training_loss",
    "loss/train",
    "train/loss_step",
    "reduced_train_loss", // NeMo
    "loss_metrics/global_avg_loss", // torchtitan
    "train/ce loss", // OLMo
    "batch_loss", // Keras TensorBoard callback, update_freq="batch"
    // Once per epoch: only when nothing finer was logged.
    "train_loss_epoch", // Lightning
    "epoch_loss", // Keras
  ],
  gradNorm: [
    "train/grad_norm",
    "grad_norm",
    "grad-norm",
    "grad norm",
    "gradnorm",
    "gradient_norm",
    "train/gradient_norm",
    "optim/grad_norm",
    "grad_norm/total",
  ],
  lr: [
    "train/learning_rate",
    "learning_rate",
    "learning-rate",
    "lr",
    "train/lr",
    "optim/lr",
    "lr-adamw",
    "lr_scheduler/lr",
  ],
  evalLoss: [
    "eval/loss",
    "eval_loss",
    "val_loss",
    "val/loss",
    "valid/loss",
    "validation/loss",
    "lm loss validation",
    "loss/val",
    "eval/lm_loss",
    "evaluation_loss_vs_iterations", // Keras, validation folder
    "validation/evaluation_loss_vs_iterations",
    "validation/epoch_loss", // Keras: epoch_loss in the validation folder
  ],
  tokens: [
    "train/num_input_tokens_seen",
    "num_input_tokens_seen",
    "num_tokens", // TRL
    "train/num_tokens",
    "tokens",
    "train/tokens",
    "tokens_seen",
    "consumed_tokens",
    "consumed-tokens",
  ],
};

/** Per-field replacement of the names to look for (a string or a best-first list). */
export type FieldNameOverrides = Partial<Record<LogField, string | readonly string[]>>;

const FIELDS: readonly LogField[] = ["loss", "gradNorm", "lr", "evalLoss", "tokens"];

function fieldNames(overrides: FieldNameOverrides | undefined): Record<LogField, readonly string[]> {
  const out = { ...LOG_FIELD_NAMES };
  for (const f of FIELDS) {
    const o = overrides?.[f];
    if (o !== undefined) out[f] = typeof o === "string" ? [o] : o;
  }
  return out;
}

/** For each field, the best-ranked of `available` names (matched case-insensitively). */
function pickNames(
  available: Iterable<string>,
  names: Record<LogField, readonly string[]>,
): Partial<Record<LogField, string>> {
  const byLower = new Map<string, string>();
  for (const a of available) if (!byLower.has(a.toLowerCase())) byLower.set(a.toLowerCase(), a);
  const out: Partial<Record<LogField, string>> = {};
  for (const f of FIELDS) {
    for (const n of names[f]) {
      const hit = byLower.get(n.toLowerCase());
      if (hit !== undefined) {
        out[f] = hit;
        break;
      }
    }
  }
  return out;
}

type Fields = Partial<Record<LogField, number>>;

const MAX_LOG_POINTS = (1 << 24) - 1;

/** Accumulates records in file order into one point per step, handling restarts. */
class LogBuilder {
  private readonly byStep = new Map<number, LogPoint>();
  /**
   * The steps in byStep, largest on top, so a restart drops the points after it
   * without scanning the ones before: scanning made a log of many restarts quadratic
   * (a 30 MB log took minutes). Each step is pushed when its point is created and
   * popped when it is dropped, so there is one entry per live point.
   */
  private readonly steps = new MaxHeap();
  private lastTrainStep = Number.NEGATIVE_INFINITY;
  restarts = 0;

  constructor(private readonly file: string) {}

  /** `train`: a training-loss record, whose step going backwards marks a restart. */
  add(step: number, fields: Fields, train: boolean): void {
    let hasField = false;
    for (const f of FIELDS) if (fields[f] !== undefined) hasField = true;
    if (!hasField) return;
    if (train) {
      if (step < this.lastTrainStep) {
        this.purgeFrom(step);
        this.restarts++;
      }
      this.lastTrainStep = step;
    }
    let p = this.byStep.get(step);
    if (p === undefined) {
      // A Map stops at 2^24 entries with a RangeError; say what is wrong instead.
      if (this.byStep.size >= MAX_LOG_POINTS)
        throw invalid(
          this.file,
          "",
          `more than ${MAX_LOG_POINTS} distinct steps; pma reads logs of up to that many.`,
        );
      p = { step };
      this.byStep.set(step, p);
      this.steps.push(step);
    }
    for (const f of FIELDS) {
      const v = fields[f];
      if (v !== undefined) p[f] = v;
    }
  }

  /** Drops every point at or after `step` (data orphaned by a restart). */
  purgeFrom(step: number): void {
    while (this.steps.size > 0 && this.steps.peek() >= step) this.byStep.delete(this.steps.pop());
    if (this.lastTrainStep >= step) this.lastTrainStep = Number.NEGATIVE_INFINITY;
  }

  points(): LogPoint[] {
    return [...this.byStep.values()].sort((a, b) => a.step - b.step);
  }
}

function invalid(file: string, where: string, what: string): PmaError {
  return new PmaError("LOG_INVALID", `${file}${where}: ${what}`, { file });
}

/** Names echoed in a message: at most this many, each cut to a readable length. */
const MAX_LISTED_NAMES = 40;
const MAX_NAME_CHARS = 80;

/**
 * A log without a training-loss series is an error, never an empty log: it lists what the
 * file has, so the user can pick the series with --loss-key.
 */
export function noLossSeries(
  file: string,
  what: string,
  kind: "tags" | "columns" | "keys",
  present: readonly string[],
): PmaError {
  const shown = present
    .slice(0, MAX_LISTED_NAMES)
    .map((n) => JSON.stringify(n.length > MAX_NAME_CHARS ? `${n.slice(0, MAX_NAME_CHARS)}...` : n));
  const more = present.length > MAX_LISTED_NAMES ? `, ... (${present.length} in all)` : "";
  return new PmaError(
    "LOG_INVALID",
    `${file}: no training-loss series found (${what}). The ${kind} present: ${shown.length > 0 ? shown.join(", ") + more : "none"}. ` +
      `Pick the loss with --loss-key NAME (the names pma recognises are listed in docs/logs.md).`,
    { file },
  );
}

function checkStep(v: unknown, file: string, where: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(file, where, `"step" must be a non-negative integer, got ${JSON.stringify(v)}.`);
  }
  return v;
}

/**
 * A numeric field: absent stays absent. `null` is how JavaScript's JSON.stringify
 * writes NaN and Infinity, so for a quantity that is always logged (loss, grad norm) it
 * means "not finite" and is kept as NaN, where a spike detector will see it.
 */
function numberField(
  v: unknown,
  name: string,
  nullIsNaN: boolean,
  file: string,
  where: string,
): number | undefined {
  if (v === undefined) return undefined;
  if (v === null) return nullIsNaN ? Number.NaN : undefined;
  if (typeof v !== "number")
    throw invalid(file, where, `"${name}" must be a number, got ${JSON.stringify(v)}.`);
  return v;
}

export function asRecord(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

// ---------------------------------------------------------------- pma JSONL

/**
 * pma's own log: one JSON object per line, `{"type":"step", step, tokens, loss, lr,
 * grad_norm, seconds}` and `{"type":"eval", step, tokens, val_loss}`. Other types are
 * skipped so newer writers stay readable. A last line with no newline that does not
 * parse is a line still being written, and is ignored.
 */
export function parsePmaJsonl(text: string, file = "<memory>"): TrainingLog {
  const b = new LogBuilder(file);
  let ignoredTailBytes = 0;
  let start = 0;
  for (let lineNo = 1; start < text.length; lineNo++) {
    const nl = text.indexOf("\n", start);
    const end = nl < 0 ? text.length : nl;
    const line = text.slice(start, end).trim();
    const isTail = nl < 0;
    const lineStart = start;
    start = end + 1;
    if (line === "") continue;
    let rec: unknown;
    try {
      rec = parseJsonLenient(line);
    } catch (e) {
      if (isTail) {
        ignoredTailBytes = Buffer.byteLength(text.slice(lineStart));
        break;
      }
      throw invalid(file, `:${lineNo}`, `not a JSON object (${(e as Error).message}).`);
    }
    const r = asRecord(rec);
    if (r === null) throw invalid(file, `:${lineNo}`, "not a JSON object.");
    const where = `:${lineNo}`;
    if (r.type === "step") {
      const step = checkStep(r.step, file, where);
      b.add(
        step,
        {
          tokens: numberField(r.tokens, "tokens", false, file, where),
          loss: numberField(r.loss, "loss", true, file, where),
          lr: numberField(r.lr, "lr", false, file, where),
          gradNorm: numberField(r.grad_norm, "grad_norm", true, file, where),
        },
        true,
      );
    } else if (r.type === "eval") {
      const step = checkStep(r.step, file, where);
      b.add(
        step,
        {
          tokens: numberField(r.tokens, "tokens", false, file, where),
          evalLoss: numberField(r.val_loss, "val_loss", true, file, where),
        },
        false,
      );
    }
  }
  return { format: "pma-jsonl", files: [file], points: b.points(), ignoredTailBytes, restarts: b.restarts };
}

// ---------------------------------------------------------------- trainer_state.json

/**
 * Hugging Face Trainer state: `log_history` holds training entries (`loss`,
 * `grad_norm`, `learning_rate`, `step`, optional `num_input_tokens_seen`), evaluation
 * entries (`eval_loss`) and a final summary (`train_loss` is a run average, not a step
 * loss, so it is not read). Unknown keys are ignored.
 */
export function parseTrainerState(
  text: string,
  file = "<memory>",
  options: { lossKey?: string } = {},
): TrainingLog {
  const lossKey = options.lossKey ?? "loss";
  let doc: unknown;
  try {
    doc = parseJsonLenient(text);
  } catch (e) {
    const where = e instanceof JsonSyntaxError && e.line !== null ? `:${e.line}:${e.column}` : "";
    throw invalid(file, where, `not valid JSON (${(e as Error).message}).`);
  }
  const history = asRecord(doc)?.log_history;
  if (!Array.isArray(history))
    throw invalid(file, "", `no "log_history" list: not a Hugging Face trainer_state.json.`);
  const b = new LogBuilder(file);
  history.forEach((entry, i) => {
    const where = ` log_history[${i}]`;
    const r = asRecord(entry);
    if (r === null) throw invalid(file, where, "not an object.");
    if (r.step === undefined) return;
    const step = checkStep(r.step, file, where);
    // TRL's trainers count tokens as num_tokens.
    const tokens = numberField(
      r.num_input_tokens_seen ?? r.num_tokens,
      r.num_input_tokens_seen !== undefined ? "num_input_tokens_seen" : "num_tokens",
      false,
      file,
      where,
    );
    const loss = numberField(r[lossKey], lossKey, true, file, where);
    const evalLoss = numberField(r.eval_loss, "eval_loss", true, file, where);
    b.add(
      step,
      {
        // The Trainer logs 0 tokens when it is not counting them.
        tokens: tokens === 0 && step > 0 ? undefined : tokens,
        loss,
        gradNorm: numberField(r.grad_norm, "grad_norm", true, file, where),
        lr: numberField(r.learning_rate, "learning_rate", false, file, where),
        evalLoss,
      },
      loss !== undefined,
    );
  });
  const points = b.points();
  if (!points.some((p) => p.loss !== undefined)) {
    const keys = new Set<string>();
    for (const e of history.slice(0, 1000)) for (const k of Object.keys(asRecord(e) ?? {})) keys.add(k);
    throw noLossSeries(
      file,
      history.length === 0 ? "log_history is empty" : `log_history entries have no "${lossKey}"`,
      "keys",
      [...keys],
    );
  }
  return { format: "trainer-state", files: [file], points, ignoredTailBytes: 0, restarts: b.restarts };
}

// ---------------------------------------------------------------- CSV

/**
 * Step columns, best first: W&B exports have both the trainer's step and W&B's own
 * `_step` counter; Megatron's `consumed_samples` is a last resort (samples, not steps).
 */
export const STEP_NAMES = [
  "step",
  "steps",
  "global_step",
  "train/global_step",
  "trainer/global_step",
  "iteration",
  "iter",
  "_step",
  "consumed_samples",
];

/**
 * CSV (or TSV) with a header row naming the columns: a step column and any of the
 * fields in LOG_FIELD_NAMES, in any order; other columns are ignored. A last line with
 * no newline and fewer cells than the header is a line still being written.
 */
export function parseCsvLog(
  text: string,
  file = "<memory>",
  options: { columns?: FieldNameOverrides } = {},
): TrainingLog {
  // Lines one at a time: text.split("\n") on a file of newlines makes an array past V8's
  // limit, which ends the process rather than throwing.
  const lines = linesOf(text);
  let first = lines.next();
  while (!first.done && first.value.text.trim() === "") first = lines.next();
  if (first.done) throw invalid(file, "", "empty CSV: no header row.");
  const h = first.value.index;
  const headerLine = first.value.text.replace(/\r$/, "").replace(/^\uFEFF/, "");
  const delimiter = headerLine.includes("\t") && !headerLine.includes(",") ? "\t" : ",";
  const header = splitCsvRow(headerLine, delimiter).map((c) => c.trim());
  const stepName = STEP_NAMES.find((n) => header.some((c) => c.toLowerCase() === n));
  if (stepName === undefined) {
    throw invalid(
      file,
      `:${h + 1}`,
      `the header has no step column (one of ${STEP_NAMES.join(", ")}); found: ${header.join(", ")}.`,
    );
  }
  const stepCol = header.findIndex((c) => c.toLowerCase() === stepName);
  const sources = pickNames(header, fieldNames(options.columns));
  if (sources.loss === undefined)
    throw noLossSeries(file, "no column has a recognised loss name", "columns", header);
  const cols = FIELDS.flatMap((f) =>
    sources[f] === undefined ? [] : [[f, header.indexOf(sources[f]!)] as const],
  );
  const b = new LogBuilder(file);
  let ignoredTailBytes = 0;
  for (const { text: raw, index: i, last: isTail } of lines) {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const cells = splitCsvRow(line, delimiter);
    if (cells.length < header.length) {
      if (isTail) {
        ignoredTailBytes = Buffer.byteLength(raw);
        break;
      }
      throw invalid(file, `:${i + 1}`, `${cells.length} cells, the header has ${header.length}.`);
    }
    const where = `:${i + 1}`;
    const stepCell = parseNumberCell(cells[stepCol]!);
    const step = checkStep(stepCell, file, where);
    const fields: Fields = {};
    for (const [f, c] of cols) {
      const v = parseNumberCell(cells[c]!);
      if (v === null)
        throw invalid(file, where, `column "${header[c]}": ${JSON.stringify(cells[c])} is not a number.`);
      fields[f] = v;
    }
    b.add(step, fields, fields.loss !== undefined);
  }
  return {
    format: "csv",
    files: [file],
    points: b.points(),
    ignoredTailBytes,
    restarts: b.restarts,
    sources,
  };
}

/** The lines of `text` (split at "\n"), numbered from 0; `last`: no newline follows. */
function* linesOf(text: string): Generator<{ text: string; index: number; last: boolean }> {
  let start = 0;
  for (let index = 0; ; index++) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) {
      yield { text: text.slice(start), index, last: true };
      return;
    }
    yield { text: text.slice(start, nl), index, last: false };
    start = nl + 1;
  }
}

// ---------------------------------------------------------------- TensorBoard

/** Orders event files by the creation time in their name, then by name. */
function eventFileOrder(a: string, b: string): number {
  const t = (p: string) => Number(/tfevents\.(\d+)/.exec(basename(p))?.[1] ?? Number.POSITIVE_INFINITY);
  return t(a) - t(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Keras writes training and validation scalars under the same tags (`epoch_loss`) in
 * sibling folders `train/` and `validation/`: a validation folder's tags are read as
 * `validation/<tag>`, so they cannot pass for the training loss.
 */
function tagName(file: string, tag: string): string {
  return /^(validation|val|eval|evaluation)$/i.test(basename(dirname(file))) && !tag.includes("/")
    ? `validation/${tag}`
    : tag;
}

/**
 * Scalars from TensorBoard event files, applied in the order the files were created.
 * Tags map to fields through LOG_FIELD_NAMES (override per field with `tags`); when a
 * run logged several names for one field, the best-ranked present one is used.
 */
export async function readTensorboardLog(
  files: readonly string[],
  options: { tags?: FieldNameOverrides } = {},
): Promise<TrainingLog> {
  const ordered = [...files].sort(eventFileOrder);
  const decoded: TensorboardFile[] = [];
  for (const f of ordered) decoded.push(await readTensorboardFile(f));
  const present = new Set<string>();
  decoded.forEach((tb, i) => {
    for (const ev of tb.events) for (const v of ev.values) present.add(tagName(ordered[i]!, v.tag));
  });
  const sources = pickNames(present, fieldNames(options.tags));
  if (sources.loss === undefined)
    throw noLossSeries(
      ordered[0] ?? "<no files>",
      "no scalar tag has a recognised loss name",
      "tags",
      [...present].sort(),
    );
  const fieldOf = new Map<string, LogField>();
  for (const f of FIELDS) if (sources[f] !== undefined) fieldOf.set(sources[f]!, f);
  const b = new LogBuilder(ordered[0] ?? "<no files>");
  for (const [i, tb] of decoded.entries()) {
    for (const ev of tb.events) {
      // A SessionLog START orphans whatever was logged at or after its step.
      if (ev.sessionLog === "start") b.purgeFrom(ev.step);
      const fields: Fields = {};
      for (const v of ev.values) {
        const f = fieldOf.get(tagName(ordered[i]!, v.tag));
        if (f !== undefined) fields[f] = v.value;
      }
      if (ev.step < 0) continue;
      b.add(ev.step, fields, fields.loss !== undefined);
    }
  }
  return {
    format: "tensorboard",
    files: ordered,
    points: b.points(),
    // Only the newest file can still be growing; earlier files' tails are reported too.
    ignoredTailBytes: decoded.reduce((n, tb) => n + tb.ignoredTailBytes, 0),
    restarts: b.restarts,
    sources,
  };
}
