/**
 * interval-count over several seeds: the seeds' sweeps as one (mean losses, for the
 * verdicts and names), merged minus latest per setting taken within each seed then
 * averaged (the seeds' losses move together, so the spread of the difference is what
 * says whether a setting helps), and the table of every seed's numbers, from which the
 * means and spreads in the results can be recomputed.
 */
import type { MeanSd } from "./mean-sd.js";
import type { Sweep, SweepPoint } from "./interval-count.js";
import type { Table } from "./result.js";
import { acrossSeeds } from "./seeds.js";

export type SweepKey = "byInterval" | "byCount";

/** The seeds' sweeps of one point as one: mean losses (one seed: its own numbers, exactly). */
export function meanSweep(list: readonly Sweep[]): Sweep {
  const a = list[0]!;
  const mean = (key: SweepKey): SweepPoint[] =>
    a[key].map((x, i) => ({
      setting: x.setting,
      count: Math.min(...list.map((s) => s[key][i]!.count)),
      loss: acrossSeeds(list.map((s) => s[key][i]!.loss)).mean,
    }));
  return {
    step: a.step,
    latest: acrossSeeds(list.map((s) => s.latest)).mean,
    byInterval: mean("byInterval"),
    byCount: mean("byCount"),
  };
}

/** Merged minus latest at setting i, per seed, then mean and sample sd (one seed: its difference). */
export function diffAt(list: readonly Sweep[], key: SweepKey, i: number): MeanSd {
  return acrossSeeds(list.map((s) => s[key][i]!.loss - s.latest));
}

/** One sweep's rows after its point (and seed) columns: tokens, sweep, setting, N used, merged, latest. */
export function sweepRows(s: Sweep, tps: number): (string | number)[][] {
  return [...s.byInterval.map((x) => ["V", x] as const), ...s.byCount.map((x) => ["N", x] as const)].map(
    ([sweep, x]) => [s.step * tps, sweep, x.setting, x.count, x.loss, s.latest],
  );
}

/** Every seed's rows (early, then late), then the mean rows: the layout of the methods table over seeds. */
export function perSeedTable(earlies: readonly Sweep[], lates: readonly Sweep[], tps: number): Table {
  const points: [string, string | number, Sweep][] = [
    ...earlies.map((s, k) => ["early", k, s] as [string, number, Sweep]),
    ...lates.map((s, k) => ["late", k, s] as [string, number, Sweep]),
    ["early", "mean", meanSweep(earlies)],
    ["late", "mean", meanSweep(lates)],
  ];
  return {
    id: "interval-count",
    title: "Held-out loss by V and N, per seed and mean",
    columns: ["point", "seed", "tokens", "sweep", "setting", "N used", "merged", "latest"],
    rows: points.flatMap(([point, seed, s]) => sweepRows(s, tps).map((r) => [point, seed, ...r])),
  };
}
