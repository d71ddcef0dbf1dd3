/**
 * pma watch: runs beside a training job. On every poll it
 *   1. scans the run for complete checkpoints (a checkpoint still being written, or
 *      whose files changed size within `settleMs`, is skipped until it is complete);
 *   2. reads the run's log and, for each loss spike the run has not recovered from,
 *      writes a PMA-init restart checkpoint once (early: before the trainer's rotation
 *      deletes the healthy checkpoints);
 *   3. for each new checkpoint, oldest first, merges the window of N checkpoints V
 *      tokens apart ending at it into OUT/merged, optionally evaluates the raw
 *      checkpoint and the merge, and appends a line to OUT/watch.jsonl.
 *
 * The journal is the watcher's state: a restart continues after the newest checkpoint
 * it records and does not repeat spikes it records. A first start begins at the run's
 * newest checkpoint, or with `backfill` at its oldest, so that the journal holds the
 * whole loss curve; a backfill cut short continues like any restart. An interrupted
 * merge or PMA-init leaves no output and no journal line, so a restart redoes it.
 * `interval: "auto"` is resolved from the first complete checkpoint and journaled
 * (see watch-interval.ts).
 *
 * OUT/merged is replaced by the merger's atomic publish: the new merge is written and
 * fsynced under a hidden name, then the old folder is renamed aside, the new one renamed
 * into place, and the old one deleted. OUT/merged is never partial, but between the two
 * renames (a few microseconds) it does not exist: a reader that finds it missing should
 * retry, and a reader holding files of the old merge open keeps reading them.
 */
import { mkdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isPmaError, PmaError } from "../common/errors.js";
import { acquireLock } from "../common/lock.js";
import { merge, type MergeOptions } from "../merge/merger.js";
import { DEFAULT_METHOD, type MethodSpec } from "../merge/methods.js";
import { DEFAULT_INIT_COUNT } from "./init-select.js";
import { pmaInit, type InitRecord } from "./init.js";
import { readTrainingLog, type TrainingLog } from "./logs.js";
import { planMerge } from "./plan.js";
import type { OptimizerChoice } from "./resume-files.js";
import { discoverRun, requireTokens, type DiscoverOptions, type RunCheckpoint, type RunScan } from "./run.js";
import { detectSpikes, type SpikeOptions } from "./spikes.js";
import { resolveAutoInterval, startInterval, type IntervalOption } from "./watch-interval.js";
import {
  jsonLoss,
  WatchJournal,
  type JournalState,
  type MergeEntry,
  type SpikeEntry,
} from "./watch-journal.js";

/**
 * Held-out losses of the newest raw checkpoint and of the merge, scored the same way
 * (a merge folder lacks the run's state, so the evaluator must take the window length
 * and corpus from the raw checkpoint for the two numbers to be comparable).
 */
export type Evaluator = (
  raw: string,
  merged: string,
  signal: AbortSignal,
) => Promise<{ raw: number; merged: number }>;

export interface WatchInitOptions {
  /** Checkpoints merged for a PMA-init (default 3). */
  count?: number;
  margin?: number;
  optimizer?: OptimizerChoice;
}

export interface WatchOptions {
  run: string;
  /** Default `<run>-pma-watch` beside the run. */
  out?: string;
  /**
   * V: tokens between merged checkpoints, or "auto" for the paper's V for this model
   * size, resolved from the first complete checkpoint and kept for the whole watch.
   */
  interval: IntervalOption;
  /** N: checkpoints per merge (fewer while the run is short). */
  count: number;
  tolerance?: number;
  method?: MethodSpec;
  /** Time between polls (default 10 s). */
  pollMs?: number;
  /** How long a checkpoint's file sizes must stay unchanged to count as complete (default 2 s). */
  settleMs?: number;
  discover?: Omit<DiscoverOptions, "settleMs">;
  /** Evaluates the newest raw checkpoint and the merge; losses are null without it. */
  evaluate?: Evaluator;
  /** PMA-init on spikes; false turns spike watching off. */
  init?: WatchInitOptions | false;
  /** The training log, when it is not found in the run directory. */
  log?: string;
  /** The training loss's tag, column or key in the log (see ReadLogOptions.lossKey). */
  lossKey?: string;
  spikeOptions?: Partial<SpikeOptions>;
  accumulate?: MergeOptions["accumulate"];
  threads?: number;
  /**
   * On a first start (empty journal), merge the window ending at every complete
   * checkpoint already there, oldest first, not only the newest one.
   */
  backfill?: boolean;
  /** Poll once and return (for cron jobs and tests). */
  once?: boolean;
  onEvent?: (e: WatchEvent) => void;
}

export type WatchEvent =
  | { type: "started"; out: string; resumeAfterStep: number | null }
  | { type: "merge"; entry: MergeEntry }
  | { type: "spike"; entry: SpikeEntry; init: InitRecord | null }
  | { type: "waiting"; path: string; reason: string }
  | { type: "note"; message: string };

export interface WatchSummary {
  out: string;
  merged: number;
  spikes: number;
  errors: number;
  lastStep: number | null;
  stopped: "signal" | "once";
}

export const WATCH_JOURNAL_FILE = "watch.jsonl";
export const WATCH_MERGED_DIR = "merged";
const LOCK_FILE = ".watch.lock";

export function defaultWatchOut(run: string): string {
  const abs = resolve(run);
  return join(dirname(abs), `${basename(abs)}-pma-watch`);
}

/** Where the PMA-init checkpoint for the spike starting at `startStep` goes (a run directory of its own). */
export function initDirFor(out: string, startStep: number): string {
  return join(out, `pma-init-${startStep}`);
}

function validate(o: WatchOptions): void {
  if (o.interval !== "auto" && !(o.interval > 0))
    throw new PmaError("USAGE", `--interval must be a positive token count or auto (got ${o.interval})`);
  if (!(Number.isInteger(o.count) && o.count >= 1))
    throw new PmaError("USAGE", `--count must be a positive integer (got ${o.count})`);
  for (const [k, v] of [
    ["pollMs", o.pollMs],
    ["settleMs", o.settleMs],
  ] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      throw new PmaError("USAGE", `${k} must be >= 0 (got ${v})`);
  }
}

/** Runs until `signal` aborts (or one poll with `once`); see the module comment. */
export async function watchRun(
  opts: WatchOptions,
  signal: AbortSignal = new AbortController().signal,
): Promise<WatchSummary> {
  validate(opts);
  const out = resolve(opts.out ?? defaultWatchOut(opts.run));
  try {
    await mkdir(out, { recursive: true });
  } catch (e) {
    throw new PmaError("IO", `cannot create ${out}: ${(e as Error).message}`, { file: out, cause: e });
  }
  const lock = await acquireLock(join(out, LOCK_FILE), `watching into ${out}`);
  try {
    const { journal, state } = await WatchJournal.open(join(out, WATCH_JOURNAL_FILE));
    const { interval, notes } = startInterval(opts.interval, state);
    const w = new Watcher(opts, out, journal, state, interval, signal);
    opts.onEvent?.({ type: "started", out, resumeAfterStep: state.lastStep });
    for (const message of notes) opts.onEvent?.({ type: "note", message });
    for (;;) {
      await w.poll();
      if (signal.aborted) return w.summary("signal");
      if (opts.once) return w.summary("once");
      await sleep(opts.pollMs ?? 10_000, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return w.summary("signal");
    }
  } finally {
    await lock.release();
  }
}

class Watcher {
  private merged = 0;
  private spikes = 0;
  private errors = 0;
  /** Things reported once, so a long wait does not repeat itself every poll. */
  private readonly told = new Set<string>();

  constructor(
    private readonly o: WatchOptions,
    private readonly out: string,
    private readonly journal: WatchJournal,
    private readonly state: JournalState,
    /** V; null until "auto" has a checkpoint to be resolved from. */
    private interval: number | null,
    private readonly signal: AbortSignal,
  ) {}

  summary(stopped: WatchSummary["stopped"]): WatchSummary {
    return {
      out: this.out,
      merged: this.merged,
      spikes: this.spikes,
      errors: this.errors,
      lastStep: this.state.lastStep,
      stopped,
    };
  }

  private emit(e: WatchEvent): void {
    if (e.type === "waiting" || e.type === "note") {
      const key = JSON.stringify(e);
      if (this.told.has(key)) return;
      this.told.add(key);
    }
    this.o.onEvent?.(e);
  }

  async poll(): Promise<void> {
    let scan: RunScan;
    try {
      scan = await discoverRun(this.o.run, { ...this.o.discover, settleMs: this.o.settleMs ?? 2000 });
    } catch (e) {
      // A watcher may start before the trainer has created its run directory.
      if (!isPmaError(e, "IO")) throw e;
      this.emit({ type: "note", message: `waiting for the run: ${e.message}` });
      return;
    }
    for (const s of scan.skipped) this.emit({ type: "waiting", path: s.path, reason: s.reason });
    // Spikes first: the checkpoints a restart needs may soon be rotated away.
    if (this.o.init !== false) await this.handleSpikes(scan, this.o.init ?? {});
    await this.mergeNew(scan);
  }

  /** An error from work the signal cut short is the interruption, not a failure to record. */
  private interrupted(e: unknown): boolean {
    return this.signal.aborted || isPmaError(e, "INTERRUPTED");
  }

  private async readLog(): Promise<TrainingLog | null> {
    try {
      return await readTrainingLog(
        this.o.log ?? this.o.run,
        this.o.lossKey === undefined ? {} : { lossKey: this.o.lossKey },
      );
    } catch (e) {
      if (!isPmaError(e)) throw e;
      // No log yet, or one being rewritten: spikes are looked for again next poll.
      this.emit({ type: "note", message: `no usable training log yet: ${e.message}` });
      return null;
    }
  }

  private async handleSpikes(scan: RunScan, init: WatchInitOptions): Promise<void> {
    const log = await this.readLog();
    if (log === null) return;
    for (const ev of detectSpikes(log, this.o.spikeOptions ?? {}).events) {
      if (this.state.spikes.has(ev.startStep) || this.signal.aborted) continue;
      const base = {
        type: "spike" as const,
        start_step: ev.startStep,
        kind: ev.kind,
        ongoing: ev.ongoing,
        peak_step: ev.peakStep,
        peak_loss: jsonLoss(ev.peakLoss),
      };
      let entry: SpikeEntry;
      let record: InitRecord | null = null;
      if (ev.kind === "transient" && !ev.ongoing) {
        // Already recovered when first seen: no reason to restart from before it.
        entry = {
          ...base,
          init_checkpoint: null,
          inputs: [],
          action: "none: recovered",
          time: new Date().toISOString(),
        };
      } else {
        try {
          record = await pmaInit({
            run: this.o.run,
            out: initDirFor(this.out, ev.startStep),
            event: ev,
            scan,
            trainingLog: log,
            count: init.count ?? DEFAULT_INIT_COUNT,
            ...(init.margin !== undefined ? { margin: init.margin } : {}),
            optimizer: init.optimizer ?? "latest",
            method: this.o.method ?? DEFAULT_METHOD,
            // A crash after the publish but before the journal line redoes the same output.
            force: true,
            ...(this.o.spikeOptions !== undefined ? { spikeOptions: this.o.spikeOptions } : {}),
            ...(this.o.accumulate !== undefined ? { accumulate: this.o.accumulate } : {}),
            ...(this.o.threads !== undefined ? { threads: this.o.threads } : {}),
            signal: this.signal,
          });
          entry = {
            ...base,
            init_checkpoint: record.checkpoint,
            inputs: record.checkpoints.map((c) => ({
              name: c.name,
              step: c.step,
              coefficient: c.coefficient,
            })),
            action: "pma-init",
            time: new Date().toISOString(),
          };
        } catch (e) {
          if (this.interrupted(e)) return;
          if (!isPmaError(e)) throw e;
          this.errors++;
          entry = {
            ...base,
            init_checkpoint: null,
            inputs: [],
            action: `error: ${e.message}`,
            time: new Date().toISOString(),
          };
        }
      }
      await this.journal.append(entry);
      this.state.spikes.add(ev.startStep);
      this.spikes++;
      this.emit({ type: "spike", entry, init: record });
    }
  }

  private async mergeNew(scan: RunScan): Promise<void> {
    if (scan.checkpoints.length === 0) return;
    const checkpoints = requireTokens(scan);
    const interval = this.interval ?? (await this.resolveInterval(checkpoints[checkpoints.length - 1]!));
    if (interval === null) return;
    const last = this.state.lastStep;
    const pending =
      last !== null
        ? checkpoints.filter((c) => c.step > last)
        : this.o.backfill
          ? checkpoints
          : checkpoints.slice(-1);
    if (last === null && pending.length > 1)
      this.emit({
        type: "note",
        message: `backfilling the ${pending.length} checkpoints already in the run, oldest first`,
      });
    const mergedDir = join(this.out, WATCH_MERGED_DIR);
    for (const c of pending) {
      if (this.signal.aborted) return;
      const entry: MergeEntry = {
        type: "merge",
        checkpoint: c.name,
        step: c.step,
        tokens: c.tokens,
        interval,
        inputs: [],
        raw_loss: null,
        merged_loss: null,
        time: "",
      };
      try {
        const plan = planMerge(
          checkpoints.filter((x) => x.tokens <= c.tokens),
          {
            interval,
            count: this.o.count,
            at: c.tokens,
            method: this.o.method ?? DEFAULT_METHOD,
            ...(this.o.tolerance !== undefined ? { tolerance: this.o.tolerance } : {}),
          },
        );
        const record = await merge({
          inputs: plan.selected.map((p) => p.path),
          out: mergedDir,
          method: plan.method,
          keepOrder: true,
          force: true,
          ...(this.o.accumulate !== undefined ? { accumulate: this.o.accumulate } : {}),
          ...(this.o.threads !== undefined ? { threads: this.o.threads } : {}),
          signal: this.signal,
        });
        entry.inputs = plan.selected.map((p, i) => ({
          name: p.name,
          step: p.step,
          tokens: p.tokens,
          coefficient: record.coefficients[i]!,
        }));
        if (this.o.evaluate !== undefined) {
          const losses = await this.o.evaluate(c.path, mergedDir, this.signal);
          entry.raw_loss = jsonLoss(losses.raw);
          entry.merged_loss = jsonLoss(losses.merged);
        }
      } catch (e) {
        if (this.interrupted(e)) return;
        if (!isPmaError(e)) throw e;
        // Recorded and not retried: the next checkpoint brings a new window anyway.
        entry.error = e.message;
        this.errors++;
      }
      entry.time = new Date().toISOString();
      await this.journal.append(entry);
      this.state.lastStep = c.step;
      this.state.lastInterval = interval;
      if (entry.error === undefined) this.merged++;
      this.emit({ type: "merge", entry });
    }
  }

  /**
   * Resolves `interval: "auto"` from a complete checkpoint and journals it before any
   * merge uses it. Null (retried next poll) when the checkpoint cannot be read, e.g.
   * because the trainer's rotation deleted it since the scan.
   */
  private async resolveInterval(checkpoint: RunCheckpoint): Promise<number | null> {
    let resolved: Awaited<ReturnType<typeof resolveAutoInterval>>;
    try {
      resolved = await resolveAutoInterval(checkpoint, this.state);
    } catch (e) {
      if (!isPmaError(e)) throw e;
      this.emit({
        type: "note",
        message: `--interval auto: cannot read ${checkpoint.name} yet (${e.message})`,
      });
      return null;
    }
    await this.journal.append(resolved.entry);
    this.state.autoInterval = resolved.entry;
    this.interval = resolved.entry.interval;
    for (const message of resolved.notes) this.emit({ type: "note", message });
    return this.interval;
  }
}
