// Report pieces without a browser: iso-lines against an analytic function, numbers with
// their spread, SVG id prefixing, every figure kind rendered to SVG (re-parsed by resvg,
// an independent XML/SVG parser) and PNG (signature, IHDR size, plausible bytes), and
// the report folder: files, results.json, one summary.md row per claim, atomic refusal.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Resvg } from "@resvg/resvg-js";
import { isPmaError } from "../src/common/errors.js";
import { isoLines } from "../src/report/contours.js";
import { meanSd } from "../src/lab/mean-sd.js";
import { formatMeasured } from "../src/report/format.js";
import { scopeSvgIds } from "../src/report/html.js";
import { renderSvg, svgToPng } from "../src/report/render.js";
import { writeReport } from "../src/report/write.js";
import { tempDir } from "./helpers/fixtures.js";
import { syntheticReport } from "./helpers/synthetic-report.js";

test("iso-lines of x^2 + y^2 lie on circles and close up to their circumference", () => {
  const xs = Array.from({ length: 41 }, (_, i) => -1 + i * 0.05);
  const z = xs.map((y) => xs.map((x) => x * x + y * y));
  for (const r of [0.3, 0.55, 0.8]) {
    const segs = isoLines({ xs, ys: xs, z }, [r * r]);
    let length = 0;
    for (const s of segs) {
      assert.equal(s.level, r * r);
      // Linear interpolation along a cell edge of width h errs by at most ~h^2/(2r) in radius.
      for (const [x, y] of [
        [s.x1, s.y1],
        [s.x2, s.y2],
      ])
        assert.ok(Math.abs(Math.hypot(x!, y!) - r) < 0.005, `(${x}, ${y}) off the circle of radius ${r}`);
      length += Math.hypot(s.x2 - s.x1, s.y2 - s.y1);
    }
    assert.ok(
      Math.abs(length - 2 * Math.PI * r) < 0.01 * 2 * Math.PI * r,
      `length ${length} vs ${2 * Math.PI * r}`,
    );
  }
  // A level outside the range crosses nothing; a saddle cell gives two segments, not crossing lines.
  assert.equal(isoLines({ xs, ys: xs, z }, [5]).length, 0);
  const saddle = isoLines(
    {
      xs: [0, 1],
      ys: [0, 1],
      z: [
        [1, 0],
        [0, 1],
      ],
    },
    [0.5],
  );
  assert.equal(saddle.length, 2);
});

test("mean and sample sd across seeds, written with the spread's precision", () => {
  const m = meanSd([4.123, 4.127, 4.119]);
  assert.ok(Math.abs(m.mean - 4.123) < 1e-12);
  assert.ok(Math.abs(m.sd! - 0.004) < 1e-12);
  assert.equal(m.n, 3);
  assert.equal(meanSd([2]).sd, undefined);
  assert.equal(
    formatMeasured({ label: "loss", mean: m.mean, sd: m.sd!, n: 3, unit: "nats" }),
    "loss: 4.1230 ± 0.0040 nats (n=3)",
  );
  assert.equal(formatMeasured({ label: "accuracy", mean: 0.61234 }), "accuracy: 0.6123");
});

test("SVG ids are renamed in order of appearance under a prefix, and every reference follows", () => {
  const svg = `<svg><defs><clipPath id="clip7"><rect/></clipPath><linearGradient id="gradient_3"/></defs><g clip-path="url(#clip7)"><rect fill="url(#gradient_3)"/><use href="#clip7"/><a href="https://example.org/#x"/></g></svg>`;
  const out = scopeSvgIds(svg, "plane-");
  assert.equal(
    out,
    `<svg><defs><clipPath id="plane-0"><rect/></clipPath><linearGradient id="plane-1"/></defs><g clip-path="url(#plane-0)"><rect fill="url(#plane-1)"/><use href="#plane-0"/><a href="https://example.org/#x"/></g></svg>`,
  );
});

function pngSize(png: Uint8Array): { width: number; height: number } {
  assert.deepEqual(
    [...png.subarray(0, 8)],
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
    "PNG signature",
  );
  assert.equal(Buffer.from(png.subarray(12, 16)).toString("latin1"), "IHDR");
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  assert.ok(m !== null, "the SVG states its size");
  return { width: Number(m[1]), height: Number(m[2]) };
}

test("every figure renders to an SVG that parses and a PNG of twice its size", async () => {
  for (const f of syntheticReport().figures) {
    const svg = await renderSvg(f.spec);
    const size = svgSize(svg);
    assert.ok(size.width > 200 && size.height > 150, `${f.id}: ${size.width} x ${size.height}`);
    // Axis titles and legend text made it into the drawing.
    assert.ok((svg.match(/<text/g) ?? []).length >= 5, `${f.id}: too little text`);
    const parsed = new Resvg(svg);
    assert.equal(Math.round(parsed.width), Math.round(size.width));
    const png = svgToPng(svg);
    const p = pngSize(png);
    assert.equal(p.width, Math.round(size.width * 2));
    assert.equal(p.height, Math.round(size.height * 2));
    assert.ok(png.length > 10_000 && png.length < 5_000_000, `${f.id}: PNG of ${png.length} bytes`);
  }
});

test("writeReport: every file, results.json round trip, a summary row per claim, refusals leave nothing", async () => {
  const tmp = await tempDir("pma-report-");
  try {
    const report = syntheticReport();
    const dir = join(tmp.dir, "lab-report");
    const w = await writeReport(dir, report);
    const figs = report.figures.map((f) => f.id);
    assert.deepEqual((await readdir(dir)).sort(), ["figures", "index.html", "results.json", "summary.md"]);
    assert.deepEqual(
      (await readdir(join(dir, "figures"))).sort(),
      figs.flatMap((id) => [`${id}.png`, `${id}.svg`]).sort(),
    );
    assert.equal(w.files.length, 3 + 2 * figs.length);

    const results = JSON.parse(await readFile(join(dir, "results.json"), "utf8")) as {
      results: unknown;
      claims: unknown;
      figures: { id: string }[];
    };
    assert.deepEqual(results.results, report.results);
    assert.deepEqual(results.claims, report.claims);
    assert.deepEqual(
      results.figures.map((f) => f.id),
      figs,
    );

    const md = await readFile(join(dir, "summary.md"), "utf8");
    const rows = md.split("\n").filter((l) => /^\| \d+ \|/.test(l));
    assert.equal(rows.length, report.claims.length);
    report.claims.forEach((c, i) => {
      // A row has exactly four cells: pipes inside the text are escaped.
      const cells = rows[i]!.replace(/\\\|/g, "").split("|").slice(1, -1);
      assert.equal(cells.length, 4, rows[i]);
      assert.equal(cells[3]!.trim(), c.verdict);
    });
    assert.match(rows[0]!, /merged loss: 4\.1230 ± 0\.0040 nats \(n=3\)/);

    const html = await readFile(join(dir, "index.html"), "utf8");
    assert.equal((html.match(/<svg/g) ?? []).length, figs.length, "every figure inline");
    assert.ok(
      !/<(script|img|link|iframe)[^>]*\s(src|href)="https?:/i.test(html),
      "nothing loaded from the network",
    );
    assert.ok(!html.includes("</script><b>"), "results cannot close the script element");
    assert.ok(html.includes("PMA lab &lt;report&gt; &amp; checks"));

    await assert.rejects(writeReport(dir, report), (e) => isPmaError(e, "EXISTS"));
    const bad = { ...report, claims: [{ ...report.claims[0]!, figures: ["missing"] }] };
    await assert.rejects(
      writeReport(join(tmp.dir, "bad"), bad),
      (e) => isPmaError(e, "USAGE") && /figure "missing"/.test(e.message),
    );
    const badVerdict = { ...report, claims: [{ ...report.claims[0]!, verdict: "maybe" as "partly" }] };
    await assert.rejects(
      writeReport(join(tmp.dir, "bad"), badVerdict),
      (e) => isPmaError(e, "USAGE") && /verdict/.test(e.message),
    );
    assert.deepEqual((await readdir(tmp.dir)).sort(), ["lab-report"], "refused reports leave no folder");
    // Vega's id counters run on within a process; the files must not.
    const again = join(tmp.dir, "again");
    await writeReport(again, report);
    for (const name of w.files)
      assert.ok(
        Buffer.from(await readFile(join(again, name))).equals(await readFile(join(dir, name))),
        `${name} differs between two writes`,
      );
    await writeReport(dir, { ...report, title: "second" }, { force: true });
    assert.match(await readFile(join(dir, "summary.md"), "utf8"), /^# second/);
  } finally {
    await tmp.cleanup();
  }
});

test("a log y axis: a log scale in the spec, and values at or below 0 refused by name", async () => {
  const { lineChart } = await import("../src/report/figures.js");
  const series = [{ name: "run", points: [1, 10, 100].map((y, i) => ({ x: i, y })) }];
  const spec = JSON.stringify(lineChart(series, { title: "t", xTitle: "step", yTitle: "max", yLog: true }));
  assert.ok(spec.includes('"scale":{"type":"log"}'), spec);
  assert.ok(
    !JSON.stringify(lineChart(series, { title: "t", xTitle: "step", yTitle: "max" })).includes('"log"'),
  );
  const bad = [{ name: "run", points: [{ x: 0, y: 0 }] }];
  assert.throws(
    () => lineChart(bad, { title: "t", xTitle: "step", yTitle: "max", yLog: true }),
    /run: y is 0/,
  );
});
