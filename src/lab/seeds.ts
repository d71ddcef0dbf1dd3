/**
 * Seeds: which experiments repeat their runs over seeds, and how a spread is written.
 *
 * A seed k sets both the parameter initialization and the batch order of the dense and
 * MoE pre-training runs (runs.ts: pretrainConfig). Only the experiments whose extra
 * cost is the runs themselves plus merges and scores are seeded: stable-merge trains
 * the runs, methods and interval-count merge the same runs' checkpoints. The rest fork,
 * continue or fine-tune from seed 0, and repeating those is the expensive part.
 *
 * Seed 0 is exactly the single-seed lab: its runs keep their configs (so their folders,
 * named by the config's hash, are reused), and with one seed an experiment's cache key
 * and its text are those of the lab before seeds existed.
 */
import { PmaError } from "../common/errors.js";
import { meanSd, type MeanSd } from "./mean-sd.js";
import { NOISE_NATS } from "./format.js";
import type { LabProfile } from "./profile.js";
import type { ExperimentId } from "./result.js";
import { denseSpec, type LabRuns } from "./runs.js";

export const SEEDED_EXPERIMENTS: readonly ExperimentId[] = ["stable-merge", "methods", "interval-count"];

/** 0, 1, ..., seeds - 1. */
export function seedList(p: LabProfile): number[] {
  return Array.from({ length: p.seeds }, (_, k) => k);
}

/** The profile with its seed count replaced (`pma lab --seeds N`). */
export function withSeeds(p: LabProfile, seeds: number): LabProfile {
  if (!Number.isInteger(seeds) || seeds < 1)
    throw new PmaError("USAGE", `--seeds must be a whole number >= 1, got ${seeds}`);
  return { ...p, seeds };
}

/**
 * What of the profile an experiment's cached result depends on. The seed count only
 * matters to seeded experiments, and only above one: so one seed hashes like the lab
 * before seeds existed (its cached results stay valid), and changing --seeds does not
 * recompute the unseeded experiments.
 */
export function profileForKey(
  p: LabProfile,
  id: ExperimentId,
): { profile: Omit<LabProfile, "seeds">; seeds?: number } {
  const { seeds, ...rest } = p;
  return SEEDED_EXPERIMENTS.includes(id) && seeds > 1 ? { profile: rest, seeds } : { profile: rest };
}

/** Mean and sample sd of per-seed values (the sd absent for one seed). */
export function acrossSeeds(values: readonly number[]): MeanSd {
  return meanSd(values);
}

/** " ± 0.0012" after a 4-decimal number, or nothing for a single seed. */
export function plusMinus(m: MeanSd): string {
  return m.sd === undefined ? "" : ` ± ${m.sd.toFixed(4)}`;
}

/** "mean ± sample sd over 3 seeds" for n > 1. */
export function seedsPhrase(n: number): string {
  return `mean ± sample sd over ${n} seeds`;
}

/** "a", "a and b", "a, b and c". */
function listed(ids: readonly string[]): string {
  return ids.length <= 2 ? ids.join(" and ") : `${ids.slice(0, -1).join(", ")} and ${ids.at(-1)!}`;
}

/** The seeded experiments among those that ran, when there is more than one seed. */
function seededAmong(p: LabProfile, ran: readonly ExperimentId[]): ExperimentId[] {
  return p.seeds > 1 ? SEEDED_EXPERIMENTS.filter((id) => ran.includes(id)) : [];
}

/** The report's sentence on seeds: which experiments used how many, and the noise bar. */
export function seedsSentence(p: LabProfile, ran: readonly ExperimentId[]): string {
  const used = seededAmong(p, ran);
  if (used.length === 0)
    return `One seed per setting: differences below ${NOISE_NATS} nats are treated as noise.`;
  const others = ran.filter((id) => !used.includes(id));
  return (
    `${listed(used)} ${used.length === 1 ? "uses" : "use"} ${p.seeds} seeds (0-${p.seeds - 1}; a seed sets the initialization and the batch order) and ${used.length === 1 ? "reports" : "report"} the ${seedsPhrase(p.seeds)}` +
    (others.length > 0
      ? `; ${others.length === 1 ? `${others[0]} uses` : `${others.join(", ")} use`} one seed (seed 0)`
      : "") +
    `. Differences below ${NOISE_NATS} nats, of one seed or of a mean, are treated as noise.`
  );
}

/** The setup table's "seeds" row; null with one seed (the table is then as it always was). */
export function seedsSetup(p: LabProfile, ran: readonly ExperimentId[]): string | null {
  const used = seededAmong(p, ran);
  return used.length === 0
    ? null
    : `${p.seeds} (seeds 0-${p.seeds - 1}) for ${used.join(", ")}; seed 0 only for the others`;
}

/**
 * Every seed's dense run (the same specs for every experiment, so each trains once),
 * all requested at once so they queue for training together; the caller awaits them in
 * seed order and can start on seed 0 while the others train.
 */
export function denseRunsBySeed(runs: LabRuns, p: LabProfile): Promise<string>[] {
  const dirs = seedList(p).map((k) => runs.ensure(denseSpec(p, k)));
  for (const d of dirs) void d.catch(() => undefined); // awaited by the caller; not an unhandled rejection meanwhile
  return dirs;
}
