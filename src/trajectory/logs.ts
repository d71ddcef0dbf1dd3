/**
 * A training run's loss log as data, read from whichever format the trainer wrote:
 * pma's own JSONL, Hugging Face `trainer_state.json`, TensorBoard event files, or CSV.
 *
 * Every reader produces the same `TrainingLog`: one point per step, ascending. When a
 * run was resumed from an earlier step (a restart after a spike, say), the log holds
 * both the abandoned and the resumed records for the overlapping steps; the resumed
 * ones win and the abandoned tail is dropped, as TensorBoard does with orphaned data.
 */
import { lstat, open, readdir, readFile, stat } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { PmaError } from "../common/errors.js";
import { maskedCrc32c } from "../formats/crc32c.js";
import {
  asRecord,
  parseCsvLog,
  parsePmaJsonl,
  parseTrainerState,
  readTensorboardLog,
  STEP_NAMES,
  type FieldNameOverrides,
} from "./log-readers.js";
import { parseJsonLenient, splitCsvRow } from "./log-text.js";

export {
  LOG_FIELD_NAMES,
  parseCsvLog,
  parsePmaJsonl,
  parseTrainerState,
  readTensorboardLog,
} from "./log-readers.js";
export type { FieldNameOverrides } from "./log-readers.js";

export type LogFormat = "pma-jsonl" | "trainer-state" | "tensorboard" | "csv";

export interface LogPoint {
  step: number;
  tokens?: number;
  /** Training loss; NaN or ±Infinity when the trainer logged a non-finite loss. */
  loss?: number;
  gradNorm?: number;
  lr?: number;
  evalLoss?: number;
}

export type LogField = Exclude<keyof LogPoint, "step">;

export interface TrainingLog {
  format: LogFormat;
  /** The files read, in the order their records were applied. */
  files: string[];
  /** Ascending by step, one point per step. */
  points: LogPoint[];
  /** Bytes of a partial last record or line (a file still being written). */
  ignoredTailBytes: number;
  /** How many times the steps went back (a resumed run overwrote a tail). */
  restarts: number;
  /** For TensorBoard and CSV: the tag or column each field was read from. */
  sources?: Partial<Record<LogField, string>>;
}

// ---------------------------------------------------------------- detection

export interface ReadLogOptions {
  /** Skip detection. */
  format?: LogFormat;
  /** TensorBoard tag overrides per field. */
  tags?: FieldNameOverrides;
  /** CSV column overrides per field. */
  columns?: FieldNameOverrides;
  /**
   * The training loss's name, whatever the format: a TensorBoard tag, a CSV column, a
   * key of trainer_state.json's log_history entries (`--loss-key`). Not for pma's JSONL.
   */
  lossKey?: string;
}

const isEventFile = (name: string) => name.startsWith("events.out.tfevents.");

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new PmaError("IO", `${path}: cannot read (${(e as Error).message}).`, { file: path, cause: e });
  }
}

/** Guesses the format of one file from its name, then from its first bytes. */
async function sniff(path: string): Promise<LogFormat> {
  const name = basename(path);
  const ext = extname(name).toLowerCase();
  if (name.includes("tfevents")) return "tensorboard";
  if (ext === ".jsonl" || ext === ".ndjson") return "pma-jsonl";
  if (ext === ".json") return "trainer-state";
  if (ext === ".csv" || ext === ".tsv") return "csv";
  const fh = await open(path, "r");
  let head: Uint8Array;
  try {
    const buf = new Uint8Array(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  if (head.length >= 12) {
    const crc = (head[8]! | (head[9]! << 8) | (head[10]! << 16) | (head[11]! << 24)) >>> 0;
    if (maskedCrc32c(head.subarray(0, 8)) === crc) return "tensorboard";
  }
  const text = new TextDecoder().decode(head);
  const first =
    text
      .split("\n")
      .find((l) => l.trim() !== "")
      ?.trim() ?? "";
  if (first.startsWith("{")) {
    try {
      if (asRecord(parseJsonLenient(first)) !== null) return "pma-jsonl";
    } catch {
      return "trainer-state";
    }
  }
  const cells = splitCsvRow(first, first.includes("\t") && !first.includes(",") ? "\t" : ",").map((c) =>
    c.trim().toLowerCase(),
  );
  if (cells.length > 1 && STEP_NAMES.some((n) => cells.includes(n))) return "csv";
  throw new PmaError(
    "LOG_INVALID",
    `${path}: cannot tell the log format (expected pma JSONL, trainer_state.json, a TensorBoard event file, or CSV with a "step" column).`,
    { file: path },
  );
}

/**
 * Regular files and real directories only: a run directory is untrusted, and a symlink
 * found in it could lead anywhere (a log file named on the command line is followed).
 */
async function entries(dir: string): Promise<{ name: string; dir: boolean; file: boolean }[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).map((d) => ({
      name: d.name,
      dir: d.isDirectory(),
      file: d.isFile(),
    }));
  } catch (e) {
    throw new PmaError("IO", `${dir}: cannot list (${(e as Error).message}).`, { file: dir, cause: e });
  }
}

/** Event files in `dir`, else in its subfolders, else one level further (HF's runs/<stamp>/). */
async function findEventFiles(dir: string): Promise<string[]> {
  let level = [dir];
  for (let depth = 0; depth < 3 && level.length > 0; depth++) {
    const found: string[] = [];
    const next: string[] = [];
    for (const d of level) {
      for (const e of await entries(d)) {
        if (e.dir) next.push(join(d, e.name));
        else if (e.file && isEventFile(e.name)) found.push(join(d, e.name));
      }
    }
    if (found.length > 0) return found;
    level = next;
  }
  return [];
}

/**
 * The log of a run directory, looked for in this order: pma's `log.jsonl`; TensorBoard
 * event files (in the folder, a subfolder, or HF's `runs/<stamp>/`); `trainer_state.json`;
 * the newest `checkpoint-N/trainer_state.json`; `log.csv`, `metrics.csv` or a lone CSV.
 */
async function findRunLog(dir: string): Promise<{ format: LogFormat; files: string[] }> {
  const top = await entries(dir);
  const has = (n: string) => top.some((e) => e.file && e.name === n);
  if (has("log.jsonl")) return { format: "pma-jsonl", files: [join(dir, "log.jsonl")] };
  const events = await findEventFiles(dir);
  if (events.length > 0) return { format: "tensorboard", files: events };
  if (has("trainer_state.json")) return { format: "trainer-state", files: [join(dir, "trainer_state.json")] };
  const ckpts = top
    .filter((e) => e.dir && /^checkpoint-\d+$/.test(e.name))
    .map((e) => ({ name: e.name, step: Number(e.name.slice("checkpoint-".length)) }))
    .sort((a, b) => b.step - a.step);
  for (const c of ckpts) {
    const p = join(dir, c.name, "trainer_state.json");
    if (
      await lstat(p).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return { format: "trainer-state", files: [p] };
  }
  const csvs = top.filter((e) => e.file && e.name.toLowerCase().endsWith(".csv")).map((e) => e.name);
  const csv =
    ["log.csv", "metrics.csv"].find((n) => csvs.includes(n)) ?? (csvs.length === 1 ? csvs[0] : undefined);
  if (csv !== undefined) return { format: "csv", files: [join(dir, csv)] };
  throw new PmaError(
    "LOG_INVALID",
    `${dir}: no training log found (looked for log.jsonl, events.out.tfevents.*, trainer_state.json, ` +
      `checkpoint-*/trainer_state.json, a CSV file; symbolic links are not followed). Pass the log file itself.`,
    { file: dir },
  );
}

/**
 * Reads a training log from a file or a run directory, detecting the format from the
 * file name and contents (or use `options.format`).
 */
export async function readTrainingLog(path: string, options: ReadLogOptions = {}): Promise<TrainingLog> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new PmaError("IO", `${path}: cannot read training log (${(e as Error).message}).`, {
      file: path,
      cause: e,
    });
  }
  let found: { format: LogFormat; files: string[] };
  if (isDir) {
    found = await findRunLog(path);
    if (options.format !== undefined && options.format !== found.format) {
      throw new PmaError(
        "LOG_INVALID",
        `${path}: found a ${found.format} log, not ${options.format}; pass the log file itself.`,
        { file: path },
      );
    }
  } else {
    found = { format: options.format ?? (await sniff(path)), files: [path] };
  }
  const file = found.files[0]!;
  const loss = options.lossKey;
  switch (found.format) {
    case "tensorboard":
      return readTensorboardLog(found.files, {
        tags: loss === undefined ? options.tags : { ...options.tags, loss },
      });
    case "pma-jsonl":
      return parsePmaJsonl(await readText(file), file);
    case "trainer-state":
      return parseTrainerState(await readText(file), file, loss === undefined ? {} : { lossKey: loss });
    case "csv":
      return parseCsvLog(await readText(file), file, {
        columns: loss === undefined ? options.columns : { ...options.columns, loss },
      });
  }
}
