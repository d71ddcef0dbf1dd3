/**
 * What the lab hands the report writer: the paper's claims with our measurement and a
 * verdict each, the figures as plotting specs, and the raw results. The writer turns it
 * into index.html (self-contained), a PNG and an SVG per figure, results.json and
 * summary.md; nothing in it depends on how the numbers were produced.
 */
import type { Spec as VegaSpec } from "vega";
import type { TopLevelSpec as VegaLiteSpec } from "vega-lite";

export type { VegaSpec, VegaLiteSpec };

/** How far a claim of the paper holds in our measurements. */
export type Verdict = "reproduced" | "partly" | "not at this scale";
export const VERDICTS: readonly Verdict[] = ["reproduced", "partly", "not at this scale"];

/** A plotting spec: Vega-Lite for ordinary charts, raw Vega for anything Vega-Lite cannot say. */
export type FigureSpec = { kind: "vega-lite"; spec: VegaLiteSpec } | { kind: "vega"; spec: VegaSpec };

export interface ReportFigure {
  /** File name stem and HTML anchor: lower-case letters, digits and dashes. */
  id: string;
  title: string;
  /** What the figure shows and how to read it (one or two sentences). */
  caption: string;
  spec: FigureSpec;
}

/** One number with its spread across seeds, for the tables. */
export interface Measured {
  label: string;
  mean: number;
  /** Sample standard deviation across seeds; absent for a single run. */
  sd?: number;
  /** Runs (seeds) behind the mean. */
  n?: number;
  unit?: string;
}

export interface Claim {
  /** Short stable identifier, e.g. "merge-beats-latest". */
  id: string;
  /** The paper's claim in a sentence, with its section or figure. */
  paper: string;
  /** Our measurement in words and numbers, with the spread across seeds where measured. */
  measurement: string;
  verdict: Verdict;
  /** Caveats: what differs from the paper's setting, why the verdict. */
  note?: string;
  /** The numbers behind the measurement, shown under it and kept in results.json. */
  numbers?: Measured[];
  /** Ids of the figures that support this claim. */
  figures?: string[];
}

/** JSON values (results must survive JSON.stringify unchanged). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface LabReport {
  title: string;
  /** A paragraph on what was run: models, tokens, seeds, machine. */
  summary?: string;
  /** Key facts of the setup, shown as a table (e.g. "model": "Llama 0.8M"). */
  setup?: Record<string, string | number>;
  claims: Claim[];
  figures: ReportFigure[];
  /** Everything measured, written to results.json and embedded in the page. */
  results: Json;
  /** When the results were produced (ISO 8601); absent: the time of writing. */
  generated?: string;
}
