/**
 * Writes a lab report folder, complete or not at all (staged in a hidden sibling and
 * renamed into place):
 *
 *   index.html            self-contained page: claims table, inline SVG figures, results
 *   summary.md            one row per claim: paper's claim | our measurement | verdict
 *   results.json          claims, figure list and the raw results
 *   figures/<id>.svg      each figure as SVG ...
 *   figures/<id>.png      ... and as PNG
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { renderHtml, scopeSvgIds, type RenderedFigure } from "./html.js";
import { renderSvg, svgToPng } from "./render.js";
import { renderSummary } from "./summary.js";
import { VERDICTS, type LabReport } from "./types.js";

export const REPORT_FORMAT = "pma-lab-report";
export const REPORT_VERSION = 1;

export interface WriteReportOptions {
  /** Replace an existing folder (the new one is complete before the old one goes). */
  force?: boolean;
  /** PNG pixels per SVG unit; default 2. */
  pngScale?: number;
}

export interface WrittenReport {
  dir: string;
  /** Paths relative to dir. */
  files: string[];
  seconds: number;
}

const ID = /^[a-z0-9][a-z0-9-]*$/;

/** Refuses a report whose ids would collide as files or anchors, or whose claims point nowhere. */
export function validateReport(r: LabReport): void {
  const bad = (msg: string): PmaError => new PmaError("USAGE", `lab report: ${msg}`);
  const figureIds = new Set<string>();
  for (const f of r.figures) {
    if (!ID.test(f.id))
      throw bad(`figure id ${JSON.stringify(f.id)} must be lower-case letters, digits and dashes`);
    if (figureIds.has(f.id)) throw bad(`figure id "${f.id}" appears twice`);
    figureIds.add(f.id);
  }
  const claimIds = new Set<string>();
  for (const c of r.claims) {
    if (!ID.test(c.id))
      throw bad(`claim id ${JSON.stringify(c.id)} must be lower-case letters, digits and dashes`);
    if (claimIds.has(c.id)) throw bad(`claim id "${c.id}" appears twice`);
    claimIds.add(c.id);
    if (!VERDICTS.includes(c.verdict))
      throw bad(
        `claim "${c.id}": verdict ${JSON.stringify(c.verdict)} is not one of ${VERDICTS.map((v) => `"${v}"`).join(", ")}`,
      );
    for (const f of c.figures ?? [])
      if (!figureIds.has(f))
        throw bad(`claim "${c.id}" refers to figure "${f}", which the report does not have`);
  }
}

export async function writeReport(
  dir: string,
  report: LabReport,
  opts: WriteReportOptions = {},
): Promise<WrittenReport> {
  const t0 = performance.now();
  validateReport(report);
  const generated = report.generated ?? new Date().toISOString();
  // Render before touching the disk: a spec that fails leaves nothing behind.
  const rendered: (RenderedFigure & { png: Uint8Array })[] = [];
  for (const f of report.figures) {
    let svg: string;
    try {
      svg = scopeSvgIds(await renderSvg(f.spec), `${f.id}-`);
    } catch (e) {
      throw new PmaError("USAGE", `figure "${f.id}" does not render: ${(e as Error).message}`, { cause: e });
    }
    const png = svgToPng(svg, opts.pngScale !== undefined ? { scale: opts.pngScale } : {});
    rendered.push({
      id: f.id,
      title: f.title,
      caption: f.caption,
      svg,
      png,
      svgFile: `figures/${f.id}.svg`,
      pngFile: `figures/${f.id}.png`,
    });
  }
  const results = {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    pma_version: PMA_VERSION,
    title: report.title,
    generated,
    ...(report.summary !== undefined ? { summary: report.summary } : {}),
    setup: report.setup ?? {},
    claims: report.claims,
    figures: rendered.map((f) => ({
      id: f.id,
      title: f.title,
      caption: f.caption,
      svg: f.svgFile,
      png: f.pngFile,
    })),
    results: report.results,
  };
  const resultsJson = JSON.stringify(results, null, 2);
  const files: [string, string | Uint8Array][] = [
    ["index.html", renderHtml(report, rendered, generated, resultsJson)],
    ["summary.md", renderSummary(report, generated)],
    ["results.json", resultsJson + "\n"],
    ...rendered.flatMap((f): [string, string | Uint8Array][] => [
      [f.svgFile, f.svg],
      [f.pngFile, f.png],
    ]),
  ];
  const staged = await StagedDir.create(dir, opts.force === true);
  try {
    await mkdir(join(staged.staging, "figures"));
    // Each file fsynced (publish syncs the folder only), so a published report is on disk whole.
    for (const [name, data] of files) await writeFileAtomic(join(staged.staging, name), data);
    await staged.publish();
  } catch (e) {
    await staged.discard();
    throw e;
  }
  return { dir: staged.target, files: files.map(([n]) => n), seconds: (performance.now() - t0) / 1000 };
}
