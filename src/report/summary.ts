/**
 * summary.md: the report as one Markdown table, a row per claim (the paper's claim, our
 * measurement with its spread, the verdict), for reading in a terminal or a pull
 * request without opening the page.
 */
import { formatMeasured } from "./format.js";
import type { LabReport } from "./types.js";

/** Text safe inside a Markdown table cell: pipes escaped, line breaks as <br>. */
export function cell(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, "<br>").trim();
}

export function renderSummary(report: LabReport, generated: string): string {
  const lines: string[] = [`# ${report.title.replace(/\r?\n/g, " ")}`, "", `Generated ${generated}.`];
  if (report.summary !== undefined) lines.push("", report.summary);
  const counts = new Map<string, number>();
  for (const c of report.claims) counts.set(c.verdict, (counts.get(c.verdict) ?? 0) + 1);
  lines.push(
    "",
    `Verdicts: ${[...counts].map(([v, k]) => `${k} ${v}`).join(", ") || "none"}. Figures and raw numbers: index.html, results.json.`,
  );
  lines.push("", "| # | The paper's claim | Our measurement | Verdict |", "|---|---|---|---|");
  report.claims.forEach((c, i) => {
    let m = c.measurement;
    if (c.numbers !== undefined && c.numbers.length > 0)
      m += ` (${c.numbers.map(formatMeasured).join("; ")})`;
    if (c.note !== undefined) m += `\n_${c.note}_`;
    lines.push(`| ${i + 1} | ${cell(c.paper)} | ${cell(m)} | ${cell(c.verdict)} |`);
  });
  return lines.join("\n") + "\n";
}
