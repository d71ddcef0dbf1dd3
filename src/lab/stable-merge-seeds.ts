/**
 * What stable-merge adds when it ran several seeds: the figure of merged minus latest
 * (the quantity the verdict is on) with its band, the per-seed numbers, and their mean
 * and sample sd. The per-seed table keeps the raw numbers in results.json, so the
 * spread can be recomputed from them.
 */
import { bandPoint, type MergeCurvePoint, type SeedsPoint } from "./merge-curve.js";
import type { Figure, Table } from "./result.js";

export function spreadFigure(curves: Record<string, SeedsPoint[]>): Figure {
  const all = Object.values(curves).flat();
  const n = all[0]?.diff.n ?? 0;
  const xs = [...new Set(all.map((q) => q.tokens))].sort((a, b) => a - b);
  return {
    kind: "line",
    id: "stable-merge-seeds",
    title: "Merged minus latest across seeds",
    caption: `Held-out loss of the SMA minus that of the latest checkpoint, mean over ${n} seeds with a band of -/+ one sample sd; below zero the merge is better. Each seed's difference is taken within the seed.`,
    x: { label: "tokens" },
    y: { label: "merged minus latest (nats)" },
    series: [
      ...Object.entries(curves).map(([name, pts]) => ({
        name,
        points: pts.map((q) => bandPoint(q.tokens, q.diff)),
      })),
      { name: "no difference", points: [xs[0]!, xs.at(-1)!].map((x) => ({ x, y: 0 })), dashed: true },
    ],
  };
}

/** One row per model, seed and point: the numbers the means and spreads come from. */
export function perSeedTable(curves: Record<string, MergeCurvePoint[][]>): Table {
  return {
    id: "stable-merge",
    title: "Latest vs merged held-out loss, per seed",
    columns: ["model", "seed", "tokens", "latest", "merged", "merged - latest", "N"],
    rows: Object.entries(curves).flatMap(([name, seeds]) =>
      seeds.flatMap((pts, seed) =>
        pts.map((q) => [name, seed, q.tokens, q.latest, q.merged, q.merged - q.latest, q.count]),
      ),
    ),
  };
}

export function spreadTable(curves: Record<string, SeedsPoint[]>): Table {
  return {
    id: "stable-merge-seeds",
    title: "Merged minus latest across seeds",
    columns: [
      "model",
      "tokens",
      "seeds",
      "latest (mean)",
      "merged (mean)",
      "merged - latest (mean)",
      "merged - latest (sample sd)",
      "N",
    ],
    rows: Object.entries(curves).flatMap(([name, pts]) =>
      pts.map((q) => [
        name,
        q.tokens,
        q.diff.n,
        q.latest.mean,
        q.merged.mean,
        q.diff.mean,
        q.diff.sd ?? null,
        q.count,
      ]),
    ),
  };
}
