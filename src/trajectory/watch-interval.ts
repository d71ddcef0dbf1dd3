/**
 * V for pma watch. A number is used as given. `auto` cannot be resolved at start, since
 * the run may have no checkpoint yet: it is resolved from the first complete checkpoint
 * the watcher sees and journaled, so every later merge, and every restart with
 * `--interval auto`, uses the same V (even once that checkpoint has been rotated away).
 * A V different from the one the journal's merges used is reported, never silent.
 */
import { formatTokens } from "../common/units.js";
import { autoInterval } from "./auto-interval.js";
import type { RunCheckpoint } from "./run.js";
import type { IntervalEntry, JournalState } from "./watch-journal.js";

export type IntervalOption = number | "auto";

/** V known at start (null: auto, to be resolved), and what to tell the user about it. */
export function startInterval(
  option: IntervalOption,
  state: JournalState,
): { interval: number | null; notes: string[] } {
  const auto = state.autoInterval;
  if (option === "auto") {
    if (auto === null) return { interval: null, notes: [] };
    return {
      interval: auto.interval,
      notes: [
        `--interval auto: keeping ${describeAuto(auto)}, as recorded in the journal`,
        ...change(state, auto.interval),
      ],
    };
  }
  const notes = change(state, option);
  if (notes.length === 0 && auto !== null && auto.interval !== option) {
    notes.push(
      `V is now ${tokens(option)} tokens, replacing the V=${tokens(auto.interval)} that --interval auto chose for this journal`,
    );
  }
  return { interval: option, notes };
}

/** Resolves auto from `checkpoint`: the journal line to append and the note to report. */
export async function resolveAutoInterval(
  checkpoint: RunCheckpoint,
  state: JournalState,
): Promise<{ entry: IntervalEntry; notes: string[] }> {
  const rec = await autoInterval(checkpoint);
  const entry: IntervalEntry = {
    type: "interval",
    interval: rec.interval,
    basis: rec.basis,
    checkpoint: rec.checkpoint,
    parameters: rec.parameters,
    moe: rec.moe,
    time: new Date().toISOString(),
  };
  return { entry, notes: [`--interval auto: ${describeAuto(entry)}`, ...change(state, entry.interval)] };
}

function describeAuto(e: IntervalEntry): string {
  return `V=${tokens(e.interval)} tokens, from ${e.checkpoint} (${e.basis})`;
}

function change(state: JournalState, interval: number): string[] {
  if (state.lastInterval === null || state.lastInterval === interval) return [];
  return [
    `V is now ${tokens(interval)} tokens; the journal's earlier merges used ${tokens(state.lastInterval)}`,
  ];
}

/** A library caller or an edited journal may give a fractional V, which formatTokens refuses. */
function tokens(n: number): string {
  return Number.isSafeInteger(n) ? formatTokens(n) : String(n);
}
