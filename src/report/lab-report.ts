/**
 * The lab's results as the report module's LabReport: each experiment's findings
 * become claims (the paper's claim, our measurement, the verdict, the figures behind
 * it) and its figure data becomes Vega-Lite specs through the report's chart helpers.
 * The report sits below the lab in the layer order, so it may read the lab's results.
 */
import { join } from "node:path";
import type { LabResult } from "../lab/lab.js";
import { tokens } from "../lab/format.js";
import type { Figure, Point } from "../lab/result.js";
import { seedsSentence, seedsSetup } from "../lab/seeds.js";
import {
  barChart,
  contourPlot,
  heatmap,
  lineChart,
  writeReport,
  type Claim,
  type FigureSpec,
  type Json,
  type LabReport,
  type ReportFigure,
  type WrittenReport,
} from "./index.js";

/** A line point with its spread band across seeds, when it has a finite one. */
function band(p: Point): Point {
  return p.lo !== undefined && p.hi !== undefined && Number.isFinite(p.lo) && Number.isFinite(p.hi)
    ? { x: p.x, y: p.y, lo: p.lo, hi: p.hi }
    : { x: p.x, y: p.y };
}

function spec(f: Figure): FigureSpec {
  switch (f.kind) {
    case "line":
      return lineChart(
        f.series
          .filter((s) => s.points.length > 0)
          .map((s) => ({
            name: s.name,
            points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).map(band),
            ...(s.dashed === true ? { dashed: true } : {}),
          })),
        {
          xTitle: f.x.label,
          yTitle: f.y.label,
          ...(f.x.log === true ? { xLog: true } : {}),
          ...(f.y.log === true ? { yLog: true } : {}),
        },
      );
    case "bar": {
      const bars = f.groups.flatMap((g, i) => [
        ...(f.baseline !== undefined
          ? [{ group: g.name, series: f.baseline.name, value: f.baseline.values[i]! }]
          : []),
        ...g.bars.map((b) => ({
          group: g.name,
          series: b.name,
          value: b.value,
          ...(b.error !== undefined && Number.isFinite(b.error) ? { error: b.error } : {}),
        })),
      ]);
      return barChart(bars, { xTitle: "", yTitle: f.y.label, yZero: false });
    }
    case "heatmap":
      return heatmap(
        { rows: f.rows, cols: f.columns, values: f.values },
        { xTitle: "checkpoint j (tokens)", yTitle: "checkpoint i (tokens)", colorTitle: "δᵢᵀHδⱼ" },
      );
    case "contour":
      return contourPlot(
        { xs: f.x.values, ys: f.y.values, z: f.z },
        f.points.map((p) => ({ label: p.label, x: p.x, y: p.y })),
        { xTitle: f.x.label, yTitle: f.y.label, zTitle: f.zLabel },
      );
  }
}

function setupTable(r: LabResult): Record<string, string | number> {
  const p = r.profile;
  const t: Record<string, string | number> = { profile: p.name };
  for (const m of r.models)
    t[`${m.name} model`] =
      `${m.description}: ${(m.parameters / 1e6).toFixed(2)}M parameters (${(m.nonEmbedding / 1e6).toFixed(2)}M without embeddings)`;
  t["tokens per step"] = r.tokensPerStep;
  for (const [k, v] of Object.entries(r.tokenCounts)) t[`tokens: ${k}`] = tokens(v);
  t["held-out tokens per score"] = tokens(p.evalTokens);
  t["default merge"] =
    `SMA of N=${p.window.count}, V=${tokens(p.window.intervalSteps * r.tokensPerStep)} tokens`;
  const seeds = seedsSetup(
    p,
    r.experiments.map((e) => e.id),
  );
  if (seeds !== null) t.seeds = seeds;
  t.backend = r.backend;
  t["wall time of this pma lab"] =
    `${r.seconds.toFixed(0)} s (load average ${r.loadAverage.map((x) => x.toFixed(1)).join(" / ")} at the start, 1/5/15 min)`;
  t["CPU time"] =
    `${r.cpuSeconds.toFixed(0)} s (parent ${r.parentCpuSeconds.toFixed(0)} s, training children ${(r.cpuSeconds - r.parentCpuSeconds).toFixed(0)} s)`;
  for (const e of r.experiments)
    t[`experiment ${e.id}`] = e.cached
      ? `cached (took ${e.seconds.toFixed(0)} s)`
      : `${e.seconds.toFixed(0)} s wall (runs concurrently with the others)`;
  for (const run of r.runs)
    t[`run ${run.name}`] = `${run.seconds.toFixed(0)} s wall, ${run.cpuSeconds.toFixed(0)} s CPU`;
  return t;
}

/**
 * How long the results took: this call's wall time when it computed everything, else
 * what the cached experiments took when they were computed (they ran concurrently, so
 * the longest is the floor of a fresh run's wall time).
 */
function computeTime(r: LabResult): string {
  const cached = r.experiments.filter((e) => e.cached);
  if (cached.length === 0) return `Wall time ${r.seconds.toFixed(0)} s`;
  const longest = Math.max(...r.experiments.map((e) => e.seconds));
  return `${cached.length} of ${r.experiments.length} experiments reused from an earlier run (the longest took ${longest.toFixed(0)} s when computed); this call ${r.seconds.toFixed(0)} s`;
}

export function buildLabReport(r: LabResult): LabReport {
  const figures: ReportFigure[] = [];
  const claims: Claim[] = [];
  for (const e of r.experiments) {
    const ids = e.figures.map((f) => f.id);
    for (const f of e.figures) figures.push({ id: f.id, title: f.title, caption: f.caption, spec: spec(f) });
    for (const [i, f] of e.findings.entries()) {
      // The experiment's setup once, under its first claim.
      const note = [i === 0 ? `Setup: ${e.setup}` : undefined, f.note]
        .filter((x) => x !== undefined)
        .join(" ");
      claims.push({
        id: f.id,
        paper: `${f.claim} [${e.paper.split(":")[0]}]`,
        measurement: f.measured,
        verdict: f.verdict,
        ...(note !== "" ? { note } : {}),
        figures: f.figures ?? ids,
      });
    }
  }
  const verdicts = claims.reduce<Record<string, number>>(
    (acc, c) => ({ ...acc, [c.verdict]: (acc[c.verdict] ?? 0) + 1 }),
    {},
  );
  const failed = r.failed.map((f) => `${f.id} failed (${f.error})`);
  return {
    title: "Model merging in pre-training, reproduced at small scale (pma lab)",
    summary:
      `pma lab, profile ${r.profile.name}: ${r.models.map((m) => `${m.name} ${m.description} (${(m.parameters / 1e6).toFixed(2)}M parameters)`).join("; ")}, ` +
      `trained on the Brown corpus with pma's trainer (${r.tokensPerStep} tokens per step; dense run ${tokens(r.tokenCounts["dense pre-training"] ?? 0)} tokens, ` +
      `MoE run ${tokens(r.tokenCounts["MoE pre-training"] ?? 0)}), merged with pma merge, checkpoints chosen by pma's planner, scored on fixed held-out windows. ` +
      `${seedsSentence(
        r.profile,
        r.experiments.map((e) => e.id),
      )} ` +
      `Verdicts: ${Object.entries(verdicts)
        .map(([k, v]) => `${v} ${k}`)
        .join(", ")}. ` +
      `${computeTime(r)} on ${r.backend}.` +
      (failed.length > 0 ? ` ${failed.join("; ")}.` : ""),
    setup: setupTable(r),
    claims,
    figures,
    results: JSON.parse(JSON.stringify(r)) as Json,
  };
}

/** Writes DIR/lab-report (index.html, summary.md, results.json, figures). */
export async function writeLabReport(r: LabResult): Promise<WrittenReport> {
  return writeReport(join(r.dir, "lab-report"), buildLabReport(r), { force: true });
}
