/**
 * Question 4 (section 4.3, Fig. 5): the interval V between merged checkpoints (over an
 * 8x range at fixed N) and their number N (3, 6, 10, 15 at fixed V), early and late in
 * the dense run. When the run is too short for N at V, pma's planner merges fewer
 * checkpoints, as the paper did (V=32B at 204B tokens: N=6); the table says so. With
 * several seeds, on each seed's dense run (already trained for stable-merge: only merges
 * and scores are added), reported as means with the sample sd across seeds.
 */
import type { LabContext } from "./context.js";
import { delta, NOISE_NATS, tokens } from "./format.js";
import { diffAt, meanSweep, perSeedTable, sweepRows, type SweepKey } from "./interval-count-seeds.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { checkpointDir } from "./runs.js";
import { acrossSeeds, denseRunsBySeed, plusMinus, seedList, seedsPhrase } from "./seeds.js";
import { tuneCheck, tuneFinding } from "./tune-check.js";

export interface SweepPoint {
  /** V in tokens or N. */
  setting: number;
  count: number;
  loss: number;
}

export interface Sweep {
  step: number;
  latest: number;
  byInterval: SweepPoint[];
  byCount: SweepPoint[];
}

async function sweep(ctx: LabContext, dir: string, step: number, label: string): Promise<Sweep> {
  const p = ctx.profile;
  const byInterval: SweepPoint[] = [];
  for (const m of p.intervals) {
    ctx.progress.stage("interval-count", `${label}: V=${m}x`);
    const vSteps = Math.max(1, Math.round(m * p.window.intervalSteps));
    const w = await ctx.window(dir, step, p.window.count, vSteps);
    byInterval.push({
      setting: vSteps * ctx.tps,
      count: w.count,
      loss: await ctx.heldout(await ctx.merged(w.inputs)),
    });
  }
  const byCount: SweepPoint[] = [];
  for (const n of p.counts) {
    ctx.progress.stage("interval-count", `${label}: N=${n}`);
    const w = await ctx.window(dir, step, n, p.window.intervalSteps);
    byCount.push({ setting: n, count: w.count, loss: await ctx.heldout(await ctx.merged(w.inputs)) });
  }
  return { step, latest: await ctx.heldout(checkpointDir(dir, step)), byInterval, byCount };
}

/** "V=163.8k", with the N the planner could fit when fewer than asked. */
function vName(x: SweepPoint, askedN: number): string {
  return `V=${tokens(x.setting)}${x.count < askedN ? ` (N=${x.count})` : ""}`;
}

function nName(x: SweepPoint): string {
  return `N=${x.setting}${x.count < x.setting ? ` (got ${x.count})` : ""}`;
}

function argmin(xs: SweepPoint[]): SweepPoint {
  return xs.reduce((a, b) => (b.loss < a.loss ? b : a));
}

export async function intervalCount(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const seeds = seedList(p);
  const several = seeds.length > 1;
  const dirs = denseRunsBySeed(ctx.runs, p);
  const earlies: Sweep[] = [];
  const lates: Sweep[] = [];
  for (const [k, d] of dirs.entries()) {
    const dir = await d;
    const of = several ? ` (seed ${k})` : "";
    earlies.push(await sweep(ctx, dir, p.earlyStep, `early${of}`));
    lates.push(await sweep(ctx, dir, p.denseSteps, `late${of}`));
  }
  // Verdicts and names on the mean losses; differences taken within a seed, then averaged
  // (one seed: its own numbers, exactly, so the text is the single-seed lab's).
  const early = meanSweep(earlies);
  const late = meanSweep(lates);
  const range = (s: SweepPoint[]) => Math.max(...s.map((x) => x.loss)) - Math.min(...s.map((x) => x.loss));
  const ranges = {
    early: acrossSeeds(earlies.map((s) => range(s.byInterval))),
    late: acrossSeeds(lates.map((s) => range(s.byInterval))),
  };
  const largestV = early.byInterval.at(-1)!;
  const bestNLate = argmin(late.byCount);
  const bestNEarly = argmin(early.byCount);
  const onMeans = several ? ` (${seedsPhrase(seeds.length)})` : "";
  const vs = (list: Sweep[], key: SweepKey, f: (x: SweepPoint) => string) =>
    meanSweep(list)
      [key].map((x, i) => {
        const d = diffAt(list, key, i);
        return `${f(x)}: ${delta(d.mean)}${plusMinus(d)}`;
      })
      .join("; ");
  const findings: Finding[] = [
    {
      id: "interval-early-large-v-hurts",
      claim:
        "Early in training, a large V reaches back into fast-changing weights and the merge can fall below the latest checkpoint.",
      measured: `early (${tokens(early.step * ctx.tps)}), merged minus latest${onMeans}: ${vs(earlies, "byInterval", (x) => vName(x, p.window.count))}.`,
      verdict:
        largestV.loss > early.latest + NOISE_NATS
          ? "reproduced"
          : largestV.loss > argmin(early.byInterval).loss + NOISE_NATS
            ? "partly"
            : "not at this scale",
    },
    {
      id: "interval-gap-narrows",
      claim: "As training goes on, the differences between intervals shrink.",
      measured: `spread across V${onMeans}: ${ranges.early.mean.toFixed(4)}${plusMinus(ranges.early)} early, ${ranges.late.mean.toFixed(4)}${plusMinus(ranges.late)} late; late merged minus latest: ${vs(lates, "byInterval", (x) => vName(x, p.window.count))}.`,
      verdict: ranges.late.mean < ranges.early.mean ? "reproduced" : "not at this scale",
    },
    {
      id: "count-more-is-better-late",
      claim:
        "Late in training, more checkpoints merge better (N=15 about 1 point above N=3); early, more checkpoints can hurt.",
      measured:
        `late${onMeans}: ${vs(lates, "byCount", nName)} (best N=${bestNLate.setting}); ` +
        `early: ${vs(earlies, "byCount", nName)} (best N=${bestNEarly.setting}).`,
      verdict: ((): Verdict => {
        const lateMore = late.byCount.at(-1)!.loss < late.byCount[0]!.loss - NOISE_NATS;
        const earlyFewer = bestNEarly.setting < bestNLate.setting;
        return lateMore && earlyFewer
          ? "reproduced"
          : lateMore || earlyFewer
            ? "partly"
            : "not at this scale";
      })(),
    },
  ];
  // pma tune against the same recipes, on seed 0's run and the same held-out windows.
  ctx.progress.stage("interval-count", "pma tune");
  findings.push(
    tuneFinding(
      await ctx.parent.with(async () => tuneCheck(ctx, await dirs[0]!, ctx.store.path("tune"))),
      several ? "on seed 0's run" : undefined,
    ),
  );
  // Bars of merged minus latest: the sign says at a glance whether a setting beats the
  // latest checkpoint; one group per setting, early and late side by side; over seeds,
  // the mean difference with an error bar of one sample sd.
  const groups = (key: SweepKey, name: (x: SweepPoint) => string) =>
    early[key].map((x, i) => ({
      name: name(x),
      bars: [earlies, lates].map((list, j) => {
        const d = diffAt(list, key, i);
        return {
          name: `${j === 0 ? "early" : "late"} (${tokens(list[0]!.step * ctx.tps)})`,
          value: d.mean,
          ...(d.sd !== undefined ? { error: d.sd } : {}),
        };
      }),
    }));
  const errorBars = several ? ` Means over ${seeds.length} seeds; error bars: -/+ one sample sd.` : "";
  return {
    id: "interval-count",
    title: "Interval V and number N of merged checkpoints",
    paper:
      "Section 4.3, Fig. 5: V from 4B to 32B at N=10; N in {3, 6, 10, 15} at V=8B; early (204B) and late.",
    setup:
      `Dense run, early point ${tokens(early.step * ctx.tps)} and late point ${tokens(late.step * ctx.tps)} tokens. ` +
      `V in {${early.byInterval.map((x) => tokens(x.setting)).join(", ")}} at N=${p.window.count}; N in {${p.counts.join(", ")}} at V=${tokens(p.window.intervalSteps * ctx.tps)}; SMA.` +
      (several
        ? ` On each of the ${seeds.length} seeds' dense runs (seeds 0-${seeds.length - 1}); numbers are ${seedsPhrase(seeds.length)}, differences taken within a seed.`
        : ""),
    findings,
    figures: [
      {
        kind: "bar",
        id: "interval",
        title: "Interval V at fixed N",
        caption: `SMA of N=${p.window.count} checkpoints V tokens apart (fewer when the run is too short: see the table); below zero is better than the latest checkpoint (${early.latest.toFixed(4)} early, ${late.latest.toFixed(4)} late).${errorBars}`,
        y: { label: "held-out loss minus latest checkpoint (nats)" },
        groups: groups("byInterval", (x) => `V=${tokens(x.setting)}`),
      },
      {
        kind: "bar",
        id: "count",
        title: "Number N at fixed V",
        caption: `SMA of N checkpoints ${tokens(p.window.intervalSteps * ctx.tps)} tokens apart; below zero is better than the latest checkpoint.${errorBars}`,
        y: { label: "held-out loss minus latest checkpoint (nats)" },
        groups: groups("byCount", (x) => `N=${x.setting}`),
      },
    ],
    tables: [
      several
        ? perSeedTable(earlies, lates, ctx.tps)
        : {
            id: "interval-count",
            title: "Held-out loss by V and N",
            columns: ["point", "tokens", "sweep", "setting", "N used", "merged", "latest"],
            rows: [early, late].flatMap((s, i) =>
              sweepRows(s, ctx.tps).map((r) => [i === 0 ? "early" : "late", ...r]),
            ),
          },
    ],
  };
}
