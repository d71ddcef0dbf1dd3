/**
 * pma watch's journal: one JSON line per processed checkpoint and per spike, appended
 * and fsynced as each finishes. It is both the results file (tokens, raw loss, merged
 * loss) and the state a restarted watcher resumes from: the newest step merged, the
 * spikes already handled, and the V that `--interval auto` chose. A line cut short by a
 * crash is dropped on open. Lines of a type this version does not know are kept and
 * otherwise ignored, so journals stay readable both ways across versions.
 */
import { open, readFile, truncate } from "node:fs/promises";
import { PmaError } from "../common/errors.js";
import type { SpikeKind } from "./spikes.js";

export interface JournalInput {
  name: string;
  step: number;
  tokens: number;
  coefficient: number;
}

/** The merged window ending at one new checkpoint. */
export interface MergeEntry {
  type: "merge";
  checkpoint: string;
  step: number;
  tokens: number;
  /** V the window was planned with (absent in journals written before it was recorded). */
  interval?: number;
  /** Oldest first; empty when the merge failed. */
  inputs: JournalInput[];
  /** Held-out loss of the newest raw checkpoint and of the merge (null without --eval). */
  raw_loss: number | string | null;
  merged_loss: number | string | null;
  /** Set when this checkpoint could not be merged (it is not retried). */
  error?: string;
  time: string;
}

/** A spike seen in the log, and the PMA-init checkpoint written for it. */
export interface SpikeEntry {
  type: "spike";
  start_step: number;
  kind: SpikeKind;
  ongoing: boolean;
  peak_step: number;
  peak_loss: number | string;
  /** The PMA-init checkpoint written; null when none was (see `action`). */
  init_checkpoint: string | null;
  inputs: { name: string; step: number; coefficient: number }[];
  /** What was done: "pma-init", "none: recovered", or the error. */
  action: string;
  time: string;
}

/**
 * The V `--interval auto` chose, written once before the first merge that uses it: a
 * restart reuses it rather than recomputing it from a checkpoint that may have been
 * rotated away since.
 */
export interface IntervalEntry {
  type: "interval";
  interval: number;
  /** Why: the model size and the paper's intervals it was interpolated from. */
  basis: string;
  /** The checkpoint the model size was read from. */
  checkpoint: string;
  parameters: number;
  moe: boolean;
  time: string;
}

export type JournalEntry = MergeEntry | SpikeEntry | IntervalEntry;

export interface JournalState {
  entries: JournalEntry[];
  /** Newest checkpoint step processed (merged or failed), or null for a fresh journal. */
  lastStep: number | null;
  /** Start steps of the spikes already handled. */
  spikes: Set<number>;
  /** The V `--interval auto` chose, if it was ever resolved into this journal. */
  autoInterval: IntervalEntry | null;
  /** V of the newest merge that records one: a restart with another V says so. */
  lastInterval: number | null;
}

/** JSON has no NaN/Infinity: a non-finite loss is written as its name. */
export function jsonLoss(x: number): number | string {
  return Number.isFinite(x) ? x : String(x);
}

function validInterval(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x) && x > 0;
}

export class WatchJournal {
  private constructor(readonly path: string) {}

  /** Opens (or starts) the journal at `path`, dropping a partial last line. */
  static async open(path: string): Promise<{ journal: WatchJournal; state: JournalState }> {
    let text = "";
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT")
        throw new PmaError("IO", `${path}: cannot read (${(e as Error).message})`, { file: path, cause: e });
    }
    const end = text.lastIndexOf("\n") + 1;
    if (end < text.length) await truncate(path, Buffer.byteLength(text.slice(0, end)));
    const state: JournalState = {
      entries: [],
      lastStep: null,
      spikes: new Set(),
      autoInterval: null,
      lastInterval: null,
    };
    text
      .slice(0, end)
      .split("\n")
      .forEach((line, i) => {
        if (line.trim() === "") return;
        let entry: JournalEntry;
        try {
          entry = JSON.parse(line) as JournalEntry;
        } catch (e) {
          throw new PmaError(
            "LOG_INVALID",
            `${path}:${i + 1}: not a JSON line (${(e as Error).message}); move the file away to start afresh`,
            { file: path },
          );
        }
        if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
          throw new PmaError(
            "LOG_INVALID",
            `${path}:${i + 1}: not a journal entry (a JSON object); move the file away to start afresh`,
            { file: path },
          );
        }
        state.entries.push(entry);
        if (entry.type === "merge" && typeof entry.step === "number")
          state.lastStep = Math.max(state.lastStep ?? entry.step, entry.step);
        if (entry.type === "merge" && validInterval(entry.interval)) state.lastInterval = entry.interval;
        if (entry.type === "interval") {
          // A V that cannot be used must not be replaced silently by a fresh one.
          if (!validInterval(entry.interval))
            throw new PmaError(
              "LOG_INVALID",
              `${path}:${i + 1}: an interval line without a positive interval; move the file away to start afresh`,
              { file: path },
            );
          state.autoInterval = entry;
        }
        if (entry.type === "spike" && typeof entry.start_step === "number")
          state.spikes.add(entry.start_step);
      });
    return { journal: new WatchJournal(path), state };
  }

  async append(entry: JournalEntry): Promise<void> {
    const fh = await open(this.path, "a");
    try {
      await fh.write(JSON.stringify(entry) + "\n");
      await fh.sync();
    } catch (e) {
      throw new PmaError("IO", `${this.path}: cannot append (${(e as Error).message})`, {
        file: this.path,
        cause: e,
      });
    } finally {
      await fh.close();
    }
  }
}
