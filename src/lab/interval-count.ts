/**
 * Question 4 (section 4.3, Fig. 5): the interval V between merged checkpoints (over an
 * 8x range at fixed N) and their number N (3, 6, 10, 15 at fixed V), early and late in
 * the dense run. When the run is too short for N at V, pma's planner merges fewer
 * checkpoints, as the paper did (V=32B at 204B tokens: N=6); the table says so.
 */
import type { LabContext } from "./context.js";
import { delta, NOISE_NATS, tokens } from "./format.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { checkpointDir, denseSpec } from "./runs.js";

interface SweepPoint {
  /** V in tokens or N. */
  setting: number;
  count: number;
  loss: number;
}

interface Sweep {
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
    byInterval.push({ setting: vSteps * ctx.tps, count: w.count, loss: await ctx.heldout(await ctx.merged(w.inputs)) });
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
  const dir = await ctx.runs.ensure(denseSpec(p));
  const early = await sweep(ctx, dir, p.earlyStep, "early");
  const late = await sweep(ctx, dir, p.denseSteps, "late");
  const range = (s: SweepPoint[]) => Math.max(...s.map((x) => x.loss)) - Math.min(...s.map((x) => x.loss));
  const largestV = early.byInterval.at(-1)!;
  const bestNLate = argmin(late.byCount);
  const bestNEarly = argmin(early.byCount);
  const vs = (s: SweepPoint[], f: (x: SweepPoint) => string) => s.map((x) => `${f(x)}: ${delta(x.loss - (s === early.byInterval || s === early.byCount ? early.latest : late.latest))}`).join("; ");
  const findings: Finding[] = [
    {
      id: "interval-early-large-v-hurts",
      claim: "Early in training, a large V reaches back into fast-changing weights and the merge can fall below the latest checkpoint.",
      measured: `early (${tokens(early.step * ctx.tps)}), merged minus latest: ${vs(early.byInterval, (x) => vName(x, p.window.count))}.`,
      verdict: largestV.loss > early.latest + NOISE_NATS ? "reproduced" : largestV.loss > argmin(early.byInterval).loss + NOISE_NATS ? "partly" : "not at this scale",
    },
    {
      id: "interval-gap-narrows",
      claim: "As training goes on, the differences between intervals shrink.",
      measured: `spread across V: ${range(early.byInterval).toFixed(4)} early, ${range(late.byInterval).toFixed(4)} late; late merged minus latest: ${vs(late.byInterval, (x) => vName(x, p.window.count))}.`,
      verdict: range(late.byInterval) < range(early.byInterval) ? "reproduced" : "not at this scale",
    },
    {
      id: "count-more-is-better-late",
      claim: "Late in training, more checkpoints merge better (N=15 about 1 point above N=3); early, more checkpoints can hurt.",
      measured:
        `late: ${vs(late.byCount, nName)} (best N=${bestNLate.setting}); ` +
        `early: ${vs(early.byCount, nName)} (best N=${bestNEarly.setting}).`,
      verdict: ((): Verdict => {
        const lateMore = late.byCount.at(-1)!.loss < late.byCount[0]!.loss - NOISE_NATS;
        const earlyFewer = bestNEarly.setting < bestNLate.setting;
        return lateMore && earlyFewer ? "reproduced" : lateMore || earlyFewer ? "partly" : "not at this scale";
      })(),
    },
  ];
  // Bars of merged minus latest: the sign says at a glance whether a setting beats the
  // latest checkpoint; one group per setting, early and late side by side.
  const groups = (key: "byInterval" | "byCount", name: (x: SweepPoint) => string) =>
    early[key].map((x, i) => ({
      name: name(x),
      bars: [early, late].map((s, j) => ({ name: `${j === 0 ? "early" : "late"} (${tokens(s.step * ctx.tps)})`, value: s[key][i]!.loss - s.latest })),
    }));
  return {
    id: "interval-count",
    title: "Interval V and number N of merged checkpoints",
    paper: "Section 4.3, Fig. 5: V from 4B to 32B at N=10; N in {3, 6, 10, 15} at V=8B; early (204B) and late.",
    setup:
      `Dense run, early point ${tokens(early.step * ctx.tps)} and late point ${tokens(late.step * ctx.tps)} tokens. ` +
      `V in {${early.byInterval.map((x) => tokens(x.setting)).join(", ")}} at N=${p.window.count}; N in {${p.counts.join(", ")}} at V=${tokens(p.window.intervalSteps * ctx.tps)}; SMA.`,
    findings,
    figures: [
      {
        kind: "bar",
        id: "interval",
        title: "Interval V at fixed N",
        caption: `SMA of N=${p.window.count} checkpoints V tokens apart (fewer when the run is too short: see the table); below zero is better than the latest checkpoint (${early.latest.toFixed(4)} early, ${late.latest.toFixed(4)} late).`,
        y: { label: "held-out loss minus latest checkpoint (nats)" },
        groups: groups("byInterval", (x) => `V=${tokens(x.setting)}`),
      },
      {
        kind: "bar",
        id: "count",
        title: "Number N at fixed V",
        caption: `SMA of N checkpoints ${tokens(p.window.intervalSteps * ctx.tps)} tokens apart; below zero is better than the latest checkpoint.`,
        y: { label: "held-out loss minus latest checkpoint (nats)" },
        groups: groups("byCount", (x) => `N=${x.setting}`),
      },
    ],
    tables: [
      {
        id: "interval-count",
        title: "Held-out loss by V and N",
        columns: ["point", "tokens", "sweep", "setting", "N used", "merged", "latest"],
        rows: [early, late].flatMap((s, i) => [
          ...s.byInterval.map((x) => [i === 0 ? "early" : "late", s.step * ctx.tps, "V", x.setting, x.count, x.loss, s.latest]),
          ...s.byCount.map((x) => [i === 0 ? "early" : "late", s.step * ctx.tps, "N", x.setting, x.count, x.loss, s.latest]),
        ]),
      },
    ],
  };
}
