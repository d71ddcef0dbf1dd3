/**
 * The report page: one self-contained index.html that opens from disk with no network:
 * styles inline, every figure's SVG inline (their element ids scoped per figure by the
 * writer, see scopeSvgIds), the claims as a table, and the raw results embedded as JSON.
 * PNG and SVG files of each figure sit beside it and are linked for download.
 */
import { formatMeasured } from "./format.js";
import type { Claim, LabReport, Verdict } from "./types.js";

export interface RenderedFigure {
  id: string;
  title: string;
  caption: string;
  svg: string;
  /** Paths relative to index.html. */
  svgFile: string;
  pngFile: string;
}

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * Renames every id in an SVG to `${prefix}${k}` (k in order of first appearance) and
 * rewrites the references to them. Vega numbers clip paths and gradients with counters
 * global to the process ("clip7", "gradient_3"), so without this the same figure would
 * differ from run to run, and figures rendered apart could clash on one page.
 */
export function scopeSvgIds(svg: string, prefix: string): string {
  const ids = new Map<string, string>();
  for (const m of svg.matchAll(/\sid="([^"]+)"/g))
    if (!ids.has(m[1]!)) ids.set(m[1]!, `${prefix}${ids.size}`);
  if (ids.size === 0) return svg;
  const rename = (id: string): string => ids.get(id) ?? id;
  return svg
    .replace(/(\sid=")([^"]+)"/g, (_, a: string, id: string) => `${a}${rename(id)}"`)
    .replace(/url\(#([^)]+)\)/g, (_, id: string) => `url(#${rename(id)})`)
    .replace(/((?:xlink:)?href=")#([^"]+)"/g, (_, a: string, id: string) => `${a}#${rename(id)}"`);
}

const VERDICT_CLASS: Record<Verdict, string> = {
  reproduced: "yes",
  partly: "partly",
  "not at this scale": "no",
};

export const STYLE = `
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; margin: 0 auto; max-width: 1100px; padding: 24px; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 6px 9px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
table.setup { width: auto; }
table.numbers { margin: 0.4em 0 0; font-size: 0.9em; }
table.numbers td { border-color: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict { display: inline-block; padding: 2px 8px; border-radius: 10px; font-weight: bold; white-space: nowrap; }
.verdict.yes { background: #d9f2d9; color: #1d6b1d; }
.verdict.partly { background: #fff0c2; color: #7a5a00; }
.verdict.no { background: #f8d7d7; color: #8a1c1c; }
.note { color: #555; font-size: 0.92em; margin: 0.4em 0 0; }
figure { margin: 2em 0; }
figure h3 { margin-bottom: 0.4em; }
.chart svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #444; margin-top: 0.4em; }
pre { background: #f7f7f7; padding: 12px; overflow: auto; max-height: 480px; font-size: 0.85em; }
`;

export function renderHtml(
  report: LabReport,
  figures: readonly RenderedFigure[],
  generated: string,
  resultsJson: string,
): string {
  const e = escapeHtml;
  const parts: string[] = [];
  parts.push(
    `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">`,
  );
  parts.push(`<title>${e(report.title)}</title>\n<style>${STYLE}</style>\n</head>\n<body>`);
  parts.push(
    `<header>\n<h1>${e(report.title)}</h1>\n<p class="meta">Generated ${e(generated)} · ${report.claims.length} claims · ${figures.length} figures</p>`,
  );
  if (report.summary !== undefined) parts.push(`<p>${e(report.summary)}</p>`);
  parts.push(`</header>`);
  parts.push(
    `<nav><a href="#claims">Claims</a> · <a href="#figures">Figures</a> · <a href="#results">Raw results</a> · <a href="summary.md">summary.md</a> · <a href="results.json">results.json</a></nav>`,
  );
  if (report.setup !== undefined && Object.keys(report.setup).length > 0) {
    parts.push(`<section id="setup">\n<h2>Setup</h2>\n<table class="setup"><tbody>`);
    for (const [k, v] of Object.entries(report.setup))
      parts.push(`<tr><th>${e(k)}</th><td>${e(String(v))}</td></tr>`);
    parts.push(`</tbody></table>\n</section>`);
  }
  parts.push(`<section id="claims">\n<h2>Claims</h2>\n<table class="claims">`);
  parts.push(
    `<thead><tr><th>#</th><th>The paper's claim</th><th>Our measurement</th><th>Verdict</th></tr></thead>\n<tbody>`,
  );
  const titles = new Map(figures.map((f) => [f.id, f.title]));
  report.claims.forEach((c, i) => parts.push(claimRow(c, i + 1, titles)));
  parts.push(`</tbody></table>\n</section>`);
  parts.push(`<section id="figures">\n<h2>Figures</h2>`);
  for (const f of figures) {
    parts.push(`<figure id="fig-${e(f.id)}">\n<h3>${e(f.title)}</h3>`);
    parts.push(`<div class="chart">${stripProlog(f.svg)}</div>`);
    parts.push(
      `<figcaption>${e(f.caption)} <a href="${e(f.pngFile)}">PNG</a> · <a href="${e(f.svgFile)}">SVG</a></figcaption>\n</figure>`,
    );
  }
  parts.push(`</section>`);
  parts.push(
    `<section id="results">\n<h2>Raw results</h2>\n<details><summary>results.json (also beside this page)</summary><pre>${e(resultsJson)}</pre></details>\n</section>`,
  );
  // Machine-readable copy for scripts reading the page; "</" is escaped so no string in
  // the results can end the script element.
  parts.push(
    `<script type="application/json" id="results-data">${resultsJson.replace(/<\//g, "<\\/")}</script>`,
  );
  parts.push(`</body>\n</html>\n`);
  return parts.join("\n");
}

function claimRow(c: Claim, n: number, titles: ReadonlyMap<string, string>): string {
  const e = escapeHtml;
  let m = `<p>${e(c.measurement)}</p>`;
  if (c.numbers !== undefined && c.numbers.length > 0) {
    m += `<table class="numbers"><tbody>`;
    for (const x of c.numbers) {
      const text = formatMeasured(x);
      const value = text.slice(x.label.length + 2);
      m += `<tr><td>${e(x.label)}</td><td class="num">${e(value)}</td></tr>`;
    }
    m += `</tbody></table>`;
  }
  if (c.note !== undefined) m += `<p class="note">${e(c.note)}</p>`;
  if (c.figures !== undefined && c.figures.length > 0) {
    m += `<p class="note">Figures: ${c.figures.map((id) => `<a href="#fig-${e(id)}">${e(titles.get(id) ?? id)}</a>`).join(", ")}</p>`;
  }
  return `<tr id="claim-${e(c.id)}"><td>${n}</td><td>${e(c.paper)}</td><td>${m}</td><td><span class="verdict ${VERDICT_CLASS[c.verdict]}">${e(c.verdict)}</span></td></tr>`;
}

function stripProlog(svg: string): string {
  return svg.replace(/^\s*<\?xml[^>]*>\s*/, "").replace(/^\s*<!DOCTYPE[^>]*>\s*/i, "");
}
