/**
 * Vega-Lite specs for the lab's figures: curves with a spread band (raw vs merged over
 * tokens, annealed vs merged), grouped bars with error bars (merge methods, V and N
 * ablations), a heat map on a diverging scale centred at zero (Hessian cross terms
 * delta_i' H delta_j), and a contour plot (loss on a plane through weight space, with
 * the models on it marked). Every chart gets titled axes and a legend; the look is
 * shared through one config, and the font is one that both the browser and the PNG
 * renderer have (DejaVu Sans on Debian).
 */
import { PmaError } from "../common/errors.js";
import { isoLines } from "./contours.js";
import type { FigureSpec, VegaLiteSpec } from "./types.js";

export const FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

const CONFIG = {
  font: FONT,
  background: "white",
  padding: 8,
  view: { stroke: "#cccccc" },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#eeeeee" },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 400, titleLimit: 400 },
  title: { fontSize: 14, anchor: "start" as const, offset: 10 },
  range: {
    category: [
      "#1f77b4",
      "#d62728",
      "#2ca02c",
      "#ff7f0e",
      "#9467bd",
      "#8c564b",
      "#e377c2",
      "#7f7f7f",
      "#bcbd22",
      "#17becf",
    ],
  },
};

interface Common {
  title?: string;
  width?: number;
  height?: number;
}

function lite(spec: Record<string, unknown>, o: Common): FigureSpec {
  const full = {
    $schema: SCHEMA,
    ...(o.title !== undefined ? { title: o.title } : {}),
    width: o.width ?? 520,
    height: o.height ?? 300,
    config: CONFIG,
    ...spec,
  };
  return { kind: "vega-lite", spec: full as VegaLiteSpec };
}

function finite(v: number, what: string): number {
  if (!Number.isFinite(v)) throw new PmaError("USAGE", `${what} is ${v}; figures need finite numbers`);
  return v;
}

function positive(v: number, what: string): number {
  if (!(finite(v, what) > 0)) throw new PmaError("USAGE", `${what} is ${v}; a log axis needs values above 0`);
  return v;
}

export interface LinePoint {
  x: number;
  y: number;
  /** Lower and upper edge of the spread band (e.g. mean -/+ sd across seeds). */
  lo?: number;
  hi?: number;
}

export interface LineSeries {
  name: string;
  points: LinePoint[];
  /** Draw dashed (e.g. a reference such as the annealed run). */
  dashed?: boolean;
}

export interface LineChartOptions extends Common {
  xTitle: string;
  yTitle: string;
  /** Legend title; default none. */
  seriesTitle?: string;
  xLog?: boolean;
  /** A log y axis (values spanning decades, e.g. attention-logit maxima); y values must be > 0. */
  yLog?: boolean;
  /** Start the y axis at zero; default false (losses differ in the second decimal). */
  yZero?: boolean;
}

/** Curves of several series over a shared x (e.g. loss of raw vs merged over tokens seen). */
export function lineChart(series: LineSeries[], o: LineChartOptions): FigureSpec {
  const values = series.flatMap((s) =>
    s.points.map((p) => ({
      series: s.name,
      band: s.name,
      x: finite(p.x, `${s.name}: x`),
      y: o.yLog === true ? positive(p.y, `${s.name}: y`) : finite(p.y, `${s.name}: y`),
      lo: p.lo === undefined ? null : finite(p.lo, `${s.name}: lo`),
      hi: p.hi === undefined ? null : finite(p.hi, `${s.name}: hi`),
    })),
  );
  const names = series.map((s) => s.name);
  const x = {
    field: "x",
    type: "quantitative",
    title: o.xTitle,
    scale: o.xLog === true ? { type: "log" } : { zero: false },
  };
  const color = {
    field: "series",
    type: "nominal",
    title: o.seriesTitle ?? null,
    scale: { domain: names },
    legend: { orient: "right", symbolType: "stroke", symbolStrokeWidth: 2.5, symbolSize: 400 },
  };
  const layers: Record<string, unknown>[] = [];
  if (values.some((v) => v.lo !== null && v.hi !== null)) {
    layers.push({
      transform: [{ filter: "datum.lo !== null && datum.hi !== null" }],
      mark: { type: "area", opacity: 0.18 },
      // Fill of a copy of the series field: same palette and domain as the lines, but no
      // legend of its own to merge with theirs, which shows line symbols with their dashes.
      encoding: {
        x,
        y: { field: "lo", type: "quantitative" },
        y2: { field: "hi" },
        fill: { field: "band", type: "nominal", scale: { domain: names }, legend: null },
      },
    });
  }
  layers.push({
    mark: { type: "line", point: { size: 28 }, strokeWidth: 2 },
    encoding: {
      x,
      y: {
        field: "y",
        type: "quantitative",
        title: o.yTitle,
        scale: o.yLog === true ? { type: "log" } : { zero: o.yZero === true },
      },
      color,
      // Same field and title as the colour: one legend, whose symbols show the dashes too.
      strokeDash: {
        field: "series",
        type: "nominal",
        title: o.seriesTitle ?? null,
        scale: { domain: names, range: series.map((s) => (s.dashed === true ? [6, 4] : [1, 0])) },
      },
      tooltip: [
        { field: "series" },
        { field: "x", title: o.xTitle },
        { field: "y", title: o.yTitle, format: ".4f" },
      ],
    },
  });
  return lite({ data: { values }, layer: layers }, o);
}

export interface Bar {
  /** Position on the x axis (e.g. the merge method, or V). */
  group: string;
  /** Bar within the group, coloured (e.g. the model size, or N). */
  series: string;
  value: number;
  /** Half-width of the error bar (e.g. sd across seeds). */
  error?: number;
}

export interface BarChartOptions extends Common {
  xTitle: string;
  yTitle: string;
  seriesTitle?: string;
  /** Start the y axis at zero; default true. Without it bars are clipped at the axis. */
  yZero?: boolean;
}

/** Grouped bars with error bars (merge methods; V and N ablations). */
export function barChart(bars: Bar[], o: BarChartOptions): FigureSpec {
  const values = bars.map((b) => {
    const e = b.error === undefined ? null : Math.abs(finite(b.error, `${b.group}/${b.series}: error`));
    const v = finite(b.value, `${b.group}/${b.series}: value`);
    return {
      group: b.group,
      series: b.series,
      value: v,
      lo: e === null ? null : v - e,
      hi: e === null ? null : v + e,
    };
  });
  const groups = [...new Set(bars.map((b) => b.group))];
  const series = [...new Set(bars.map((b) => b.series))];
  const x = { field: "group", type: "nominal", title: o.xTitle, sort: groups, axis: { labelAngle: 0 } };
  const xOffset = { field: "series", type: "nominal", sort: series };
  const zero = o.yZero ?? true;
  const layers: Record<string, unknown>[] = [
    {
      mark: { type: "bar", clip: !zero },
      encoding: {
        x,
        xOffset,
        y: { field: "value", type: "quantitative", title: o.yTitle, scale: { zero } },
        color: { field: "series", type: "nominal", title: o.seriesTitle ?? null, sort: series },
        tooltip: [
          { field: "group", title: o.xTitle },
          { field: "series" },
          { field: "value", format: ".4f" },
        ],
      },
    },
  ];
  // Only with errors: a rule layer over all-null lo/hi makes Vega warn of an infinite extent.
  if (values.some((v) => v.lo !== null)) {
    layers.push({
      transform: [{ filter: "datum.lo !== null" }],
      mark: { type: "rule", color: "black", strokeWidth: 1.5 },
      encoding: { x, xOffset, y: { field: "lo", type: "quantitative" }, y2: { field: "hi" } },
    });
  }
  return lite({ data: { values }, layer: layers }, o);
}

export interface Matrix {
  rows: string[];
  cols: string[];
  /** values[r][c]. */
  values: number[][];
}

export interface HeatmapOptions extends Common {
  xTitle: string;
  yTitle: string;
  colorTitle: string;
  /** Print each cell's value; default when the matrix has at most 12 x 12 cells. */
  labels?: boolean;
  /** d3-format of the printed values; default ".2~g". */
  format?: string;
}

/** A matrix on a diverging red-blue scale centred at zero (e.g. delta_i' H delta_j). */
export function heatmap(m: Matrix, o: HeatmapOptions): FigureSpec {
  if (m.values.length !== m.rows.length || m.values.some((r) => r.length !== m.cols.length)) {
    throw new PmaError("USAGE", `heat map: values must be ${m.rows.length} rows of ${m.cols.length}`);
  }
  const values = m.rows.flatMap((row, r) =>
    m.cols.map((col, c) => ({ row, col, v: finite(m.values[r]![c]!, `heat map [${row}, ${col}]`) })),
  );
  const top = Math.max(1e-300, ...values.map((d) => Math.abs(d.v)));
  const labels = o.labels ?? (m.rows.length <= 12 && m.cols.length <= 12);
  const x = { field: "col", type: "ordinal", title: o.xTitle, sort: m.cols, axis: { labelAngle: 0 } };
  const y = { field: "row", type: "ordinal", title: o.yTitle, sort: m.rows };
  const layers: Record<string, unknown>[] = [
    {
      mark: { type: "rect" },
      encoding: {
        x,
        y,
        color: {
          field: "v",
          type: "quantitative",
          title: o.colorTitle,
          scale: { scheme: "redblue", reverse: true, domain: [-top, top] },
        },
        tooltip: [{ field: "row" }, { field: "col" }, { field: "v", format: ".4g" }],
      },
    },
  ];
  if (labels) {
    layers.push({
      mark: { type: "text", fontSize: 10 },
      encoding: {
        x,
        y,
        text: { field: "v", type: "quantitative", format: o.format ?? ".2~g" },
        color: { condition: { test: `abs(datum.v) > ${0.6 * top}`, value: "white" }, value: "black" },
      },
    });
  }
  const size = Math.min(520, Math.max(200, 36 * Math.max(m.rows.length, m.cols.length)));
  return lite({ data: { values }, layer: layers }, { width: size, height: size, ...o });
}

export interface Grid {
  xs: number[];
  ys: number[];
  /** z[j][i] is the value at (xs[i], ys[j]). */
  z: number[][];
}

export interface MarkedPoint {
  label: string;
  x: number;
  y: number;
}

export interface ContourOptions extends Common {
  xTitle: string;
  yTitle: string;
  zTitle: string;
  /** Iso-lines drawn; default 10, evenly spaced over the colour range. */
  levels?: number;
  /** Upper end of the colour range (values above share the top colour); default the maximum. */
  zMax?: number;
}

/**
 * A filled grid (each value a rectangle reaching halfway to its neighbours) with
 * iso-lines traced by marching squares and the marked models as labelled points:
 * Vega-Lite has no contour mark, and this renders the same in SVG, PNG and browsers.
 */
export function contourPlot(g: Grid, points: MarkedPoint[], o: ContourOptions): FigureSpec {
  const nx = g.xs.length;
  const ny = g.ys.length;
  if (nx < 2 || ny < 2 || g.z.length !== ny || g.z.some((r) => r.length !== nx)) {
    throw new PmaError("USAGE", `contour plot: z must be ${ny} rows of ${nx} values (at least 2 x 2)`);
  }
  const edges = (a: number[]): number[] =>
    a
      .map((v, i) => (i === 0 ? v - (a[1]! - v) / 2 : (a[i - 1]! + v) / 2))
      .concat([a[a.length - 1]! + (a[a.length - 1]! - a[a.length - 2]!) / 2]);
  const ex = edges(g.xs);
  const ey = edges(g.ys);
  const cells = g.z.flatMap((row, j) =>
    row.map((z, i) => ({
      x: ex[i]!,
      x2: ex[i + 1]!,
      y: ey[j]!,
      y2: ey[j + 1]!,
      z: finite(z, `contour z[${j}][${i}]`),
      zStroke: z,
    })),
  );
  const zs = cells.map((c) => c.z);
  const lo = Math.min(...zs);
  const hi = Math.min(Math.max(...zs), o.zMax ?? Infinity);
  const n = o.levels ?? 10;
  const thresholds = Array.from({ length: n }, (_, k) => lo + ((k + 1) * (hi - lo)) / (n + 1));
  const segments = isoLines(g, thresholds).map((s) => ({
    x: s.x1,
    y: s.y1,
    x2: s.x2,
    y2: s.y2,
    level: s.level,
  }));
  const xs = {
    type: "quantitative",
    title: o.xTitle,
    scale: { domain: [ex[0]!, ex[nx]!], nice: false, zero: false },
  };
  const ys = {
    type: "quantitative",
    title: o.yTitle,
    scale: { domain: [ey[0]!, ey[ny]!], nice: false, zero: false },
  };
  const marked = points.map((p) => ({
    label: p.label,
    x: finite(p.x, `${p.label}: x`),
    y: finite(p.y, `${p.label}: y`),
  }));
  const labelFlipX = ex[0]! + ((ex[nx]! - ex[0]!) * 2) / 3;
  return lite(
    {
      layer: [
        {
          data: { values: cells },
          mark: { type: "rect", clip: true, strokeWidth: 0.6 },
          encoding: {
            x: { field: "x", ...xs },
            x2: { field: "x2" },
            y: { field: "y", ...ys },
            y2: { field: "y2" },
            color: {
              field: "z",
              type: "quantitative",
              title: o.zTitle,
              scale: { scheme: "viridis", domain: [lo, hi], clamp: true },
            },
            // A stroke in the fill's colour closes the anti-aliasing seams between cells; from
            // a copy of the field, or Vega-Lite merges the two legends into symbols.
            stroke: {
              field: "zStroke",
              type: "quantitative",
              scale: { scheme: "viridis", domain: [lo, hi], clamp: true },
              legend: null,
            },
          },
        },
        {
          data: { values: segments },
          mark: { type: "rule", color: "white", strokeWidth: 1, opacity: 0.8, clip: true },
          encoding: {
            x: { field: "x", ...xs },
            y: { field: "y", ...ys },
            x2: { field: "x2" },
            y2: { field: "y2" },
          },
        },
        {
          data: { values: marked },
          mark: { type: "point", filled: true, size: 70, color: "#d62728", stroke: "white", strokeWidth: 1 },
          encoding: {
            x: { field: "x", ...xs },
            y: { field: "y", ...ys },
            tooltip: [{ field: "label" }, { field: "x" }, { field: "y" }],
          },
        },
        // Labels to the right of their point, except in the right third of the plot,
        // where they would run past the edge: there they end at the point.
        ...(["left", "right"] as const).map((align) => ({
          data: { values: marked.filter((p) => p.x > labelFlipX === (align === "right")) },
          mark: {
            type: "text",
            align,
            dx: align === "left" ? 7 : -7,
            dy: -7,
            fontSize: 11,
            fontWeight: "bold",
            color: "white",
          },
          encoding: { x: { field: "x", ...xs }, y: { field: "y", ...ys }, text: { field: "label" } },
        })),
      ],
    },
    { width: 420, height: 420, ...o },
  );
}
