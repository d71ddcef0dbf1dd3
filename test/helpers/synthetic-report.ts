/**
 * A lab report built from synthetic numbers, with one figure of every kind the lab
 * draws, claims of every verdict, and text that needs escaping in HTML and Markdown.
 */
import { barChart, contourPlot, heatmap, lineChart } from "../../src/report/figures.js";
import { meanSd } from "../../src/lab/mean-sd.js";
import type { LabReport } from "../../src/report/types.js";

export function syntheticReport(): LabReport {
  const tokens = Array.from({ length: 8 }, (_, i) => (i + 1) * 100_000);
  const curve = (base: number, spread: number) =>
    tokens.map((x, i) => ({
      x,
      y: base - 0.3 * Math.log(i + 1),
      lo: base - 0.3 * Math.log(i + 1) - spread,
      hi: base - 0.3 * Math.log(i + 1) + spread,
    }));
  const xs = Array.from({ length: 21 }, (_, i) => -0.5 + i * 0.1);
  const z = xs.map((y) => xs.map((x) => 4 + 3 * (x - 0.4) ** 2 + 2 * (y - 0.5) ** 2));
  const seeds = meanSd([4.123, 4.127, 4.119]);
  return {
    title: "PMA lab <report> & checks",
    summary: "Synthetic numbers standing in for the lab's measurements.",
    setup: { model: "Llama 0.8M", seeds: 3, "tokens per checkpoint": "100K" },
    generated: "2025-01-01T00:00:00.000Z",
    claims: [
      {
        id: "merge-beats-latest",
        paper: "Merging checkpoints of the constant-LR phase beats the latest checkpoint (Sec. 4.1).",
        measurement: "Merged loss is lower than the latest checkpoint's at every point.",
        verdict: "reproduced",
        numbers: [{ label: "merged loss", mean: seeds.mean, sd: seeds.sd!, n: seeds.n, unit: "nats" }],
        figures: ["raw-vs-merged"],
      },
      {
        id: "methods",
        paper: "WMA | EMA differences vanish late in training (Sec. 4.2).",
        measurement: "Differences shrink but stay above the seed spread.\nSecond line.",
        verdict: "partly",
        note: "Only 800K tokens; the paper trains for hundreds of billions.",
        figures: ["methods", "hessian"],
      },
      {
        id: "landscape",
        paper: "The merge sits nearer the basin centre (Sec. 4.5).",
        measurement: "The loss plane shows no basin at this scale.",
        verdict: "not at this scale",
        figures: ["plane"],
      },
    ],
    figures: [
      {
        id: "raw-vs-merged",
        title: "Raw vs merged validation loss",
        caption: "Mean over seeds; bands are +/- one standard deviation.",
        spec: lineChart(
          [
            { name: "raw", points: curve(5, 0.04) },
            { name: "merged", points: curve(4.95, 0.02) },
            { name: "annealed", points: curve(4.9, 0.01).map(({ x, y }) => ({ x, y })), dashed: true },
          ],
          { xTitle: "tokens seen", yTitle: "validation loss (nats)", seriesTitle: "model" },
        ),
      },
      {
        id: "methods",
        title: "Merge methods",
        caption: "Loss improvement over the latest checkpoint.",
        spec: barChart(
          ["SMA", "WMA", "EMA 0.2"].flatMap((g, i) =>
            ["dense", "MoE"].map((s, j) => ({
              group: g,
              series: s,
              value: 0.02 + 0.004 * i - 0.003 * j,
              error: 0.003,
            })),
          ),
          { xTitle: "method", yTitle: "loss improvement (nats)", seriesTitle: "model" },
        ),
      },
      {
        id: "hessian",
        title: "Hessian cross terms",
        caption: "delta_i' H delta_j between checkpoint deviations.",
        spec: heatmap(
          {
            rows: ["1", "2", "3"],
            cols: ["1", "2", "3"],
            values: [
              [1, -0.2, -0.1],
              [-0.2, 1.3, -0.3],
              [-0.1, -0.3, 1.6],
            ],
          },
          { xTitle: "checkpoint j", yTitle: "checkpoint i", colorTitle: "delta_i' H delta_j" },
        ),
      },
      {
        // A second figure with a gradient legend: inline SVGs must not share element ids.
        id: "hessian-moe",
        title: "Hessian cross terms (MoE)",
        caption: "As above, for the MoE model.",
        spec: heatmap(
          {
            rows: ["1", "2"],
            cols: ["1", "2"],
            values: [
              [0.8, 0.1],
              [0.1, 0.9],
            ],
          },
          { xTitle: "checkpoint j", yTitle: "checkpoint i", colorTitle: "delta_i' H delta_j" },
        ),
      },
      {
        id: "plane",
        title: "Loss plane",
        caption: "Validation loss on the plane through three checkpoints; the merge is marked.",
        spec: contourPlot(
          { xs, ys: xs, z },
          [
            { label: "merge", x: 0.33, y: 0.33 },
            { label: "ckpt 1", x: 0, y: 0 },
          ],
          { xTitle: "alpha", yTitle: "beta", zTitle: "loss" },
        ),
      },
    ],
    results: {
      runs: [
        { seed: 0, loss: 4.123 },
        { seed: 1, loss: 4.127 },
      ],
      note: "</script><b>not markup</b>",
    },
  };
}
