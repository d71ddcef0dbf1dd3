/**
 * What an experiment hands to the report: the paper's claim next to what was measured,
 * a verdict, and the data of its figures and tables (plain numbers; the report module
 * draws them).
 */
export type ExperimentId =
  | "stable-merge"
  | "anneal"
  | "methods"
  | "interval-count"
  | "continued-training"
  | "fine-tune"
  | "spike"
  | "mechanism";

export const EXPERIMENT_IDS: readonly ExperimentId[] = [
  "stable-merge",
  "anneal",
  "methods",
  "interval-count",
  "continued-training",
  "fine-tune",
  "spike",
  "mechanism",
];

/** How a claim fared at this scale (the report's three verdicts). */
export type Verdict = "reproduced" | "partly" | "not at this scale";

export interface Finding {
  /** Short stable identifier, e.g. "dense-merge-beats-latest". */
  id: string;
  /** The paper's claim, in a sentence. */
  claim: string;
  /** What the lab measured, with the numbers. */
  measured: string;
  verdict: Verdict;
  /** Caveats: what differs from the paper's setting, why the verdict. */
  note?: string;
  /** Ids of the figures that support it. */
  figures?: string[];
}

export interface Point {
  x: number;
  y: number;
  /** Edges of the spread band across seeds (mean -/+ sample sd); absent for one seed. */
  lo?: number;
  hi?: number;
}

export interface Series {
  name: string;
  points: Point[];
  /** Drawn dashed: a reference (the latest checkpoint, the original run). */
  dashed?: boolean;
}

export interface LineFigure {
  kind: "line";
  id: string;
  title: string;
  caption: string;
  x: { label: string; log?: boolean };
  y: { label: string; log?: boolean };
  series: Series[];
}

/** Grouped bars: one group per x category, one bar per series. */
export interface BarFigure {
  kind: "bar";
  id: string;
  title: string;
  caption: string;
  y: { label: string };
  /** `error`: half-width of the error bar (sample sd across seeds); absent for one seed. */
  groups: { name: string; bars: { name: string; value: number; error?: number }[] }[];
  /** A horizontal reference line per group, e.g. the latest checkpoint's loss. */
  baseline?: { name: string; values: number[] };
}

export interface HeatmapFigure {
  kind: "heatmap";
  id: string;
  title: string;
  caption: string;
  rows: string[];
  columns: string[];
  /** values[r][c] */
  values: number[][];
}

export interface ContourFigure {
  kind: "contour";
  id: string;
  title: string;
  caption: string;
  x: { label: string; values: number[] };
  y: { label: string; values: number[] };
  /** z[j][i] at (x.values[i], y.values[j]). */
  z: number[][];
  zLabel: string;
  points: { x: number; y: number; label: string; kind: "checkpoint" | "merge" | "reference" }[];
}

export type Figure = LineFigure | BarFigure | HeatmapFigure | ContourFigure;

export interface Table {
  id: string;
  title: string;
  columns: string[];
  rows: (string | number | null)[][];
}

export interface ExperimentResult {
  id: ExperimentId;
  title: string;
  /** The paper's section and figure this reproduces. */
  paper: string;
  /** What was trained and measured, with sizes and token counts. */
  setup: string;
  findings: Finding[];
  figures: Figure[];
  tables: Table[];
  /** Wall time of the experiment in the run that computed it. */
  seconds: number;
}
