/**
 * The `pma tune` page: one self-contained index.html in the style of the lab report:
 * loss over V x N (SMA windows), the methods side by side on the best window, the
 * search's progress, every candidate in a table, and the merge command for the winner.
 */
import type { TuneEvaluation, TuneResult } from "../tune/tune.js";
import { barChart, lineChart, type LineSeries } from "./figures.js";
import { escapeHtml as e, scopeSvgIds, STYLE } from "./html.js";
import { renderSvg } from "./render.js";
import type { FigureSpec } from "./types.js";

function vLabel(x: TuneEvaluation): string {
  return x.intervalTokens !== null
    ? `V=${x.intervalTokens.toLocaleString("en-US")}`
    : `every ${x.candidate.stride}`;
}

function methodLabel(x: TuneEvaluation): string {
  return x.candidate.method === "ema" ? `ema ${x.candidate.alpha}` : x.candidate.method;
}

export async function renderTunePage(r: TuneResult): Promise<string> {
  const figs: { id: string; title: string; caption: string; spec: FigureSpec }[] = [];
  const base = r.baseline.loss;
  const windows = r.evaluations.filter((x) => x.phase === "window" && x.candidate.method === "sma");
  if (windows.length > 0) {
    const byV = new Map<string, LineSeries>();
    for (const x of [...windows].sort(
      (a, b) => a.candidate.stride - b.candidate.stride || a.candidate.count - b.candidate.count,
    )) {
      const k =
        vLabel(x) +
        (x.candidate.end !== r.checkpoints.length - 1
          ? ` (end ${r.checkpoints[x.candidate.end]!.name})`
          : "");
      if (!byV.has(k)) byV.set(k, { name: k, points: [] });
      byV.get(k)!.points.push({ x: x.candidate.count, y: x.loss });
    }
    byV.set("newest checkpoint", {
      name: "newest checkpoint",
      dashed: true,
      points: [
        { x: 2, y: base },
        { x: Math.max(...windows.map((w) => w.candidate.count)), y: base },
      ],
    });
    figs.push({
      id: "vn",
      title: "Held-out loss over V x N (SMA)",
      caption: `Each line is one interval V; x is the number of checkpoints N merged with SMA, ending at the newest. Dashed: the newest checkpoint alone (${base.toFixed(4)}).`,
      spec: lineChart([...byV.values()], {
        xTitle: "N (checkpoints merged)",
        yTitle: "held-out loss (nats)",
        seriesTitle: "interval",
      }),
    });
  }
  const methods = r.evaluations.filter((x) => x.phase === "method" || x.phase === "ema" || x === r.best);
  if (methods.length > 0) {
    const bars = methods.map((x) => ({
      group: methodLabel(x),
      series: `N=${x.candidate.count}, ${vLabel(x)}`,
      value: x.loss - base,
    }));
    figs.push({
      id: "methods",
      title: "Methods side by side",
      caption:
        "Loss minus the newest checkpoint's (below zero: the merge is better), for the methods tried on the best window and for EMA's alphas.",
      spec: barChart(bars, {
        xTitle: "method",
        yTitle: "loss - newest checkpoint (nats)",
        seriesTitle: "window",
        yZero: true,
      }),
    });
  }
  let runningBest = Infinity;
  const progress = r.evaluations.map((x, i) => ({
    x: i + 1,
    y: (runningBest = Math.min(runningBest, x.loss)),
  }));
  figs.push({
    id: "progress",
    title: "The search's progress",
    caption: `Loss of each evaluation and the best so far; the best was first reached at evaluation ${r.bestAt} of ${r.evaluations.length}.`,
    spec: lineChart(
      [
        { name: "evaluated", points: r.evaluations.map((x, i) => ({ x: i + 1, y: x.loss })) },
        { name: "best so far", points: progress },
      ],
      { xTitle: "evaluation", yTitle: "held-out loss (nats)" },
    ),
  });
  const svgs = await Promise.all(figs.map(async (f) => scopeSvgIds(await renderSvg(f.spec), `${f.id}-`)));
  const b = r.best;
  const rows = [
    ...r.evaluations.map((x, i) => [String(i + 1), x] as const),
    ...r.compared.map((x) => [`${x.label}`, x] as const),
  ]
    .sort((p, q) => p[1].loss - q[1].loss)
    .map(
      ([n, x]) =>
        `<tr${x === b ? ' style="background:#d9f2d9"' : ""}><td>${e(n)}</td><td>${e(x.phase)}</td><td>${e(methodLabel(x))}</td><td>${e(vLabel(x))}</td><td class="num">${x.candidate.count}</td>` +
        `<td>${e(r.checkpoints[x.candidate.end]!.name)}</td><td class="num">${x.loss.toFixed(5)}</td><td class="num">${(x.loss - base).toFixed(5)}</td><td class="num">${x.bitsPerByte.toFixed(4)}</td><td>${e(x.path)}${x.reused ? " (cached)" : ""}</td></tr>`,
    );
  const parts = [
    `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>pma tune: ${e(r.run)}</title>\n<style>${STYLE}</style>\n</head>\n<body>`,
    `<header><h1>pma tune</h1><p class="meta">${e(r.run)} · ${r.checkpoints.length} checkpoints · data ${e(r.data)} (sha256 ${e(r.dataSha256.slice(0, 16))}) · ${r.tokensScored.toLocaleString("en-US")} tokens scored per candidate · ${r.evaluations.length} evaluations (${r.computed} computed) · ${r.seconds.toFixed(1)} s on ${e(r.backend)}</p></header>`,
    `<section><h2>Winner</h2><p><b>${e(methodLabel(b))}</b>, N=${b.candidate.count}, ${e(vLabel(b))}, ending at ${e(r.checkpoints[b.candidate.end]!.name)}: loss ${b.loss.toFixed(5)} (${b.bitsPerByte.toFixed(4)} bits per byte), ` +
      `${(base - b.loss).toFixed(5)} below the newest checkpoint alone; first reached at evaluation ${r.bestAt}.</p><p>Reproduce it:</p><pre>${e(r.mergeCommand)}</pre><p class="note">${e(r.precision)}</p></section>`,
    `<section id="figures"><h2>Figures</h2>`,
    ...figs.map(
      (f, i) =>
        `<figure id="${f.id}"><h3>${e(f.title)}</h3><div class="chart">${svgs[i]}</div><figcaption>${e(f.caption)}</figcaption></figure>`,
    ),
    `</section>`,
    `<section id="candidates"><h2>Every candidate</h2><table class="numbers"><thead><tr><th>#</th><th>phase</th><th>method</th><th>V</th><th>N</th><th>end</th><th>loss</th><th>vs newest</th><th>bits/byte</th><th>scored by</th></tr></thead><tbody>`,
    ...rows,
    `</tbody></table></section>\n</body>\n</html>\n`,
  ];
  return parts.join("\n");
}
