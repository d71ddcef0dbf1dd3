// pma lab end to end on the micro profile (a 30k-parameter model, seconds of training):
// every experiment runs and reports, the report renders, a rerun recomputes nothing,
// and a changed setting recomputes the experiment but not the training runs.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildLabReport, writeLabReport } from "../src/report/lab-report.js";
import { runLab, type LabResult } from "../src/lab/lab.js";
import { labProfile } from "../src/lab/profile.js";
import { EXPERIMENT_IDS, type Figure } from "../src/lab/result.js";
import { validateReport, VERDICTS } from "../src/report/index.js";
import { tempDir } from "./helpers/fixtures.js";

function numbersOf(f: Figure): number[] {
  switch (f.kind) {
    case "line":
      return f.series.flatMap((s) => s.points.flatMap((p) => [p.x, p.y]));
    case "bar":
      return f.groups.flatMap((g) => g.bars.map((b) => b.value));
    case "heatmap":
      return f.values.flat();
    case "contour":
      return [...f.z.flat(), ...f.points.flatMap((p) => [p.x, p.y])];
  }
}

describe("pma lab (micro profile)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let first: LabResult;
  const dir = () => join(tmp.dir, "lab");
  const cacheDir = () => join(tmp.dir, "cache");

  before(async () => {
    tmp = await tempDir("pma-lab-");
    first = await runLab({ dir: dir(), profile: "micro", cacheDir: cacheDir() });
  });
  after(async () => tmp.cleanup());

  test("every experiment runs and reports claims, measurements and finite figure data", () => {
    assert.deepEqual(first.failed, []);
    assert.deepEqual(
      first.experiments.map((e) => e.id),
      [...EXPERIMENT_IDS],
    );
    for (const e of first.experiments) {
      assert.equal(e.cached, false);
      assert.ok(e.findings.length >= 2, `${e.id}: ${e.findings.length} findings`);
      for (const f of e.findings) {
        assert.ok(VERDICTS.includes(f.verdict), `${e.id}: verdict ${f.verdict}`);
        assert.ok(
          f.measured.length > 20 && !/NaN|undefined/.test(f.measured),
          `${e.id}/${f.id}: ${f.measured}`,
        );
      }
      assert.ok(e.figures.length >= 1);
      for (const f of e.figures)
        for (const x of numbersOf(f)) assert.ok(Number.isFinite(x), `${e.id}/${f.id}: ${x}`);
    }
    assert.equal(first.models.length, 2);
    assert.ok(first.models.every((m) => m.parameters > m.nonEmbedding && m.nonEmbedding > 0));
    assert.ok(first.cpuSeconds > first.parentCpuSeconds);
  });

  test("the report validates and renders: index.html, summary.md, results.json, an SVG and a PNG per figure", async () => {
    const report = buildLabReport(first);
    validateReport(report);
    assert.equal(
      report.claims.length,
      first.experiments.reduce((s, e) => s + e.findings.length, 0),
    );
    const written = await writeLabReport(first);
    for (const f of ["index.html", "summary.md", "results.json"])
      assert.ok(existsSync(join(written.dir, f)), f);
    const files = readdirSync(join(written.dir, "figures"));
    for (const fig of report.figures) {
      assert.ok(files.includes(`${fig.id}.svg`) && files.includes(`${fig.id}.png`), fig.id);
    }
  });

  test("a rerun recomputes nothing and returns the same results", async () => {
    const runs = readdirSync(join(dir(), "runs")).sort();
    const again = await runLab({ dir: dir(), profile: "micro", cacheDir: cacheDir() });
    assert.ok(again.experiments.every((e) => e.cached));
    assert.deepEqual(
      again.experiments.map((e) => e.findings),
      first.experiments.map((e) => e.findings),
    );
    assert.deepEqual(readdirSync(join(dir(), "runs")).sort(), runs);
    assert.ok(
      again.cpuSeconds < 0.2 * first.cpuSeconds,
      `rerun used ${again.cpuSeconds} s CPU, the first ${first.cpuSeconds} s`,
    );
  });

  test("a changed scoring setting recomputes the experiment from the same runs", async () => {
    const runs = readdirSync(join(dir(), "runs")).sort();
    const changed = { ...labProfile("micro"), evalTokens: 1024 };
    const r = await runLab({
      dir: dir(),
      profile: changed,
      experiments: ["stable-merge"],
      cacheDir: cacheDir(),
    });
    assert.equal(r.experiments.length, 1);
    assert.equal(r.experiments[0]!.cached, false);
    assert.deepEqual(readdirSync(join(dir(), "runs")).sort(), runs, "no run was retrained");
    const before = first.experiments[0]!.tables[0]!.rows;
    const now = r.experiments[0]!.tables[0]!.rows;
    assert.equal(now.length, before.length);
    assert.notDeepEqual(now, before, "scores on other windows differ");
  });
});
