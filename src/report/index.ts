/** The lab report: figure specs, rendering (SVG, PNG), the page, summary.md, and the writer. */
export * from "./types.js";
export {
  lineChart,
  barChart,
  heatmap,
  contourPlot,
  FONT,
  type LinePoint,
  type LineSeries,
  type LineChartOptions,
  type Bar,
  type BarChartOptions,
  type Matrix,
  type HeatmapOptions,
  type Grid,
  type MarkedPoint,
  type ContourOptions,
} from "./figures.js";
export { isoLines, type IsoGrid, type Segment } from "./contours.js";
export { renderSvg, svgToPng, toVega, type PngOptions } from "./render.js";
export { formatMeasured, formatNumber } from "./format.js";
export { meanSd, type MeanSd } from "../lab/mean-sd.js";
export { renderHtml, scopeSvgIds, escapeHtml, type RenderedFigure } from "./html.js";
export { renderSummary } from "./summary.js";
export {
  writeReport,
  validateReport,
  REPORT_FORMAT,
  REPORT_VERSION,
  type WriteReportOptions,
  type WrittenReport,
} from "./write.js";
