/**
 * `pma watch --tune`: every K new merges, re-runs `pma tune` on the run so far and
 * publishes its winner in DIR/tuned/ beside the fixed-recipe merge in DIR/merged/. The
 * fixed recipe's window is scored in the same search (same data, same windows), and a
 * "tune" line in watch.jsonl records both losses, so the journal holds both curves.
 * Tuning runs one at a time, queued behind the watcher's own work.
 */
import { join } from "node:path";
import { isPmaError } from "../common/errors.js";
import { PARAM_DEFAULTS, type MethodSpec } from "../merge/methods.js";
import type { TuneMethod } from "../tune/candidates.js";
import type { TuneOptions } from "../tune/tune.js";
import type { MergeEntry } from "../trajectory/watch-journal.js";
import { WATCH_JOURNAL_FILE } from "../trajectory/watch.js";
import { appendFile } from "node:fs/promises";

export interface WatchTuneOptions {
  run: string;
  out: string;
  data: string;
  every: number;
  budget: number;
  method: MethodSpec;
  textField?: string;
  maxTokens?: number;
  onLine?: (line: TuneJournalEntry) => void;
}

export interface TuneJournalEntry {
  type: "tune";
  step: number;
  tokens: number;
  /** Loss of the tuned winner and of the fixed recipe's window, on the tune data. */
  tuned_loss: number | null;
  fixed_loss: number | null;
  best: string | null;
  evaluations: number;
  computed: number;
  command: string | null;
  error?: string;
  time: string;
}

function tuneMethod(m: MethodSpec): { method: TuneMethod; alpha?: number } | null {
  if (m.method === "sma" || m.method === "wma") return { method: m.method };
  if (m.method === "ema") return { method: "ema", alpha: m.alpha ?? PARAM_DEFAULTS.alpha };
  if (m.method === "wsm")
    return m.decay === "linear"
      ? { method: "sma" }
      : { method: m.decay === "cosine" ? "wsm-cosine" : "wsm-1-sqrt" };
  return null;
}

export function watchTuner(opts: WatchTuneOptions): {
  onMerge(entry: MergeEntry): void;
  finish(): Promise<void>;
} {
  let merges = 0;
  let queue: Promise<void> = Promise.resolve();
  const retune = async (entry: MergeEntry): Promise<void> => {
    const { tuneRun } = await import("../tune/tune.js");
    const { renderTunePage } = await import("../report/tune-page.js");
    const fixed = tuneMethod(opts.method);
    const base: TuneJournalEntry = {
      type: "tune",
      step: entry.step,
      tokens: entry.tokens,
      tuned_loss: null,
      fixed_loss: null,
      best: null,
      evaluations: 0,
      computed: 0,
      command: null,
      time: "",
    };
    let line: TuneJournalEntry;
    try {
      const t: TuneOptions = {
        run: opts.run,
        data: opts.data,
        budget: opts.budget,
        out: join(opts.out, "tuned"),
        force: true,
        untilStep: entry.step,
        comparedCompete: true,
        renderPage: renderTunePage,
        ...(opts.textField !== undefined ? { textField: opts.textField } : {}),
        ...(opts.maxTokens !== undefined ? { maxTokens: opts.maxTokens } : {}),
        ...(fixed !== null && entry.inputs.length > 0
          ? { compare: [{ label: "fixed recipe", checkpoints: entry.inputs.map((i) => i.name), ...fixed }] }
          : {}),
      };
      // A fixed-recipe window off the run's even grid (a checkpoint missing) cannot be
      // scored as a candidate: tune without it rather than not at all.
      const r = await tuneRun(t).catch((e: unknown) => {
        if (t.compare === undefined || !isPmaError(e) || e.code !== "USAGE") throw e;
        const { compare: _skip, ...rest } = t;
        return tuneRun(rest);
      });
      line = {
        ...base,
        tuned_loss: r.best.loss,
        fixed_loss: r.compared[0]?.loss ?? null,
        best: r.best.key,
        evaluations: r.evaluations.length,
        computed: r.computed,
        command: r.mergeCommand,
        time: new Date().toISOString(),
      };
    } catch (e) {
      line = { ...base, error: (e as Error).message, time: new Date().toISOString() };
    }
    await appendFile(join(opts.out, WATCH_JOURNAL_FILE), JSON.stringify(line) + "\n");
    opts.onLine?.(line);
  };
  return {
    onMerge(entry) {
      if (entry.error !== undefined) return;
      merges++;
      if (merges % opts.every === 0) queue = queue.then(() => retune(entry));
    },
    finish: () => queue,
  };
}
