// pma lab over seeds on the micro profile (seconds): stable-merge, methods and
// interval-count report the mean and sample sd of per-seed differences, and the spread
// is the one the per-seed numbers in the results give; one seed is the single-seed lab,
// bit for bit, and its runs keep the folders (config hashes) they had before seeds existed.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { command as labCommand } from "../src/cli/lab.js";
import { buildLabReport, writeLabReport } from "../src/report/lab-report.js";
import { isPmaError } from "../src/common/errors.js";
import { experimentKey, runLab, type LabResult } from "../src/lab/lab.js";
import { labProfile } from "../src/lab/profile.js";
import type { BarFigure, ExperimentResult, LineFigure, Table } from "../src/lab/result.js";
import { hashOf, LAB_VERSION } from "../src/lab/store.js";
import { validateReport } from "../src/report/index.js";
import { tempDir } from "./helpers/fixtures.js";

/** Sample sd, written out independently of the lab's helper: sqrt(sum (x - mean)^2 / (n - 1)). */
function sampleSd(xs: number[]): number {
  let sum = 0;
  for (const x of xs) sum += x;
  const m = sum / xs.length;
  let ss = 0;
  for (const x of xs) ss += (x - m) ** 2;
  return Math.sqrt(ss / (xs.length - 1));
}

function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

function table(e: ExperimentResult, id: string): Table {
  const t = e.tables.find((x) => x.id === id);
  assert.ok(t !== undefined, `${e.id}: no table ${id}`);
  return t;
}

function col(t: Table, name: string): number {
  const i = t.columns.indexOf(name);
  assert.ok(i >= 0, `${t.id}: no column ${name}`);
  return i;
}

describe("pma lab over seeds (micro profile)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let two: LabResult;
  const dir = () => join(tmp.dir, "lab");
  const cacheDir = () => join(tmp.dir, "cache");
  const exp = (r: LabResult, id: string) => r.experiments.find((e) => e.id === id)!;

  before(async () => {
    tmp = await tempDir("pma-lab-seeds-");
    two = await runLab({
      dir: dir(),
      profile: "micro",
      experiments: ["stable-merge", "methods", "interval-count"],
      seeds: 2,
      cacheDir: cacheDir(),
    });
  });
  after(async () => tmp.cleanup());

  test("stable-merge reports mean ± sample sd, the sd of the per-seed numbers in the results", () => {
    assert.deepEqual(two.failed, []);
    assert.equal(two.profile.seeds, 2);
    const e = exp(two, "stable-merge");
    for (const f of e.findings.slice(0, 2)) {
      assert.match(f.measured, /[-+]\d\.\d{4} ± \d\.\d{4}/);
      assert.match(f.measured, /mean ± sample sd over 2 seeds/);
    }
    const per = table(e, "stable-merge");
    const spread = table(e, "stable-merge-seeds");
    const [m, s, tok, lat, mer] = ["model", "seed", "tokens", "latest", "merged"].map((c) => col(per, c));
    assert.ok(spread.rows.length > 0);
    for (const row of spread.rows) {
      const mine = per.rows.filter(
        (r) => r[m!] === row[col(spread, "model")] && r[tok!] === row[col(spread, "tokens")],
      );
      assert.deepEqual(
        mine.map((r) => r[s!]),
        [0, 1],
      );
      const diffs = mine.map((r) => (r[mer!] as number) - (r[lat!] as number));
      const what = `${String(row[0])} at ${String(row[1])}`;
      close(
        row[col(spread, "merged - latest (mean)")] as number,
        (diffs[0]! + diffs[1]!) / 2,
        `${what} mean`,
      );
      close(row[col(spread, "merged - latest (sample sd)")] as number, sampleSd(diffs), `${what} sd`);
      // Two seeds: the sample sd is |a - b| / sqrt(2).
      close(
        row[col(spread, "merged - latest (sample sd)")] as number,
        Math.abs(diffs[0]! - diffs[1]!) / Math.SQRT2,
        `${what} sd of two`,
      );
    }
    // The difference figure: mean with a band of mean -/+ sd.
    const fig = e.figures.find((f) => f.id === "stable-merge-seeds") as LineFigure;
    const dense = fig.series.find((x) => x.name === "dense")!;
    const rows = spread.rows.filter((r) => r[0] === "dense");
    assert.equal(dense.points.length, rows.length);
    for (const [i, p] of dense.points.entries()) {
      const mean = rows[i]![col(spread, "merged - latest (mean)")] as number;
      const sd = rows[i]![col(spread, "merged - latest (sample sd)")] as number;
      assert.equal(p.y, mean);
      close(p.lo!, mean - sd, "band lo");
      close(p.hi!, mean + sd, "band hi");
    }
  });

  test("methods bars carry the sample sd of the per-seed differences as error bars", () => {
    const e = exp(two, "methods");
    const t = table(e, "methods");
    const bars = (e.figures[0] as BarFigure).groups;
    for (const [g, point] of ["early", "late"].entries()) {
      const rows = t.rows.filter((r) => r[0] === point && typeof r[1] === "number");
      assert.equal(rows.length, 2);
      for (const b of bars[g]!.bars) {
        const diffs = rows.map((r) => (r[col(t, b.name)] as number) - (r[col(t, "latest")] as number));
        close(b.value, (diffs[0]! + diffs[1]!) / 2, `${point} ${b.name} mean`);
        close(b.error!, sampleSd(diffs), `${point} ${b.name} sd`);
      }
    }
  });

  test("interval-count bars carry the sample sd of the per-seed differences as error bars", () => {
    const e = exp(two, "interval-count");
    // The pma tune finding is measured on seed 0's run only, and says so.
    for (const f of e.findings)
      assert.match(
        f.measured,
        f.id === "tune-beats-fixed-recipes" ? /on seed 0's run/ : /mean ± sample sd over 2 seeds/,
      );
    assert.match(e.findings[0]!.measured, /[-+]\d\.\d{4} ± \d\.\d{4}/);
    const t = table(e, "interval-count");
    const [pt, sd, sw, mer, lat] = ["point", "seed", "sweep", "merged", "latest"].map((c) => col(t, c));
    const rowsOf = (point: string, sweep: string, seed: number | string) =>
      t.rows.filter((r) => r[pt!] === point && r[sw!] === sweep && r[sd!] === seed);
    for (const [id, sweep] of [
      ["interval", "V"],
      ["count", "N"],
    ] as const) {
      const groups = (e.figures.find((f) => f.id === id) as BarFigure).groups;
      for (const [j, point] of ["early", "late"].entries()) {
        const [a, b] = [rowsOf(point, sweep, 0), rowsOf(point, sweep, 1)];
        assert.equal(a.length, groups.length);
        assert.equal(b.length, groups.length);
        for (const [i, g] of groups.entries()) {
          const diffs = [a[i]!, b[i]!].map((r) => (r[mer!] as number) - (r[lat!] as number));
          const what = `${point} ${g.name}`;
          close(g.bars[j]!.value, (diffs[0]! + diffs[1]!) / 2, `${what} mean`);
          close(g.bars[j]!.error!, sampleSd(diffs), `${what} sd`);
          // The mean rows average the seeds' losses.
          close(
            rowsOf(point, sweep, "mean")[i]![mer!] as number,
            ((a[i]![mer!] as number) + (b[i]![mer!] as number)) / 2,
            `${what} mean row`,
          );
        }
      }
    }
  });

  test("the report says which experiments use how many seeds and renders bands and error bars", async () => {
    const report = buildLabReport(two);
    validateReport(report);
    const layers = (id: string) => JSON.stringify(report.figures.find((f) => f.id === id)!.spec);
    assert.match(layers("stable-merge"), /"area"/);
    assert.match(layers("stable-merge-seeds"), /"area"/);
    assert.match(layers("methods"), /"rule"/);
    assert.match(layers("interval"), /"rule"/);
    assert.match(layers("count"), /"rule"/);
    const written = await writeLabReport(two);
    assert.ok(readdirSync(join(written.dir, "figures")).includes("stable-merge-seeds.svg"));
    assert.match(report.summary!, /stable-merge, methods and interval-count use 2 seeds/);
    assert.equal(
      report.setup!["seeds"],
      "2 (seeds 0-1) for stable-merge, methods, interval-count; seed 0 only for the others",
    );
  });

  test("one seed is the single-seed lab: same cache keys, same run folders, seed 0's numbers", async () => {
    const runsBefore = readdirSync(join(dir(), "runs")).sort();
    // Folders the lab named its micro runs before seeds existed: cached runs stay valid.
    assert.ok(
      runsBefore.includes("dense-56b8c2d793a0") && runsBefore.includes("moe-2d67548549f2"),
      runsBefore.join(", "),
    );
    const micro = labProfile("micro");
    const { seeds: _, ...unseeded } = micro;
    for (const id of ["stable-merge", "methods", "interval-count", "anneal"] as const)
      assert.equal(experimentKey(micro, id), hashOf({ v: LAB_VERSION, id, profile: unseeded }), id);
    for (const id of ["stable-merge", "methods", "interval-count"] as const)
      assert.notEqual(experimentKey({ ...micro, seeds: 2 }, id), experimentKey(micro, id), id);
    assert.equal(
      experimentKey({ ...micro, seeds: 2 }, "anneal"),
      experimentKey(micro, "anneal"),
      "unseeded experiments ignore --seeds",
    );

    // The merges and scores of seed 0 are cached from the two-seed run: this adds little time.
    const one = await runLab({
      dir: dir(),
      profile: "micro",
      experiments: ["stable-merge", "interval-count"],
      seeds: 1,
      cacheDir: cacheDir(),
    });
    assert.deepEqual(readdirSync(join(dir(), "runs")).sort(), runsBefore, "no run trained");
    const e = exp(one, "stable-merge");
    assert.ok(e.findings.every((f) => !f.measured.includes("±") && !/seed/.test(f.measured)));
    assert.deepEqual(
      e.figures.map((f) => f.id),
      ["stable-merge"],
    );
    assert.ok(
      (e.figures[0] as LineFigure).series.every((s) =>
        s.points.every((p) => p.lo === undefined && p.hi === undefined),
      ),
    );
    // Seed 0's rows of the two-seed run are the one-seed table, number for number.
    const per = table(exp(two, "stable-merge"), "stable-merge");
    const seed0 = per.rows.filter((r) => r[1] === 0).map((r) => [r[0], ...r.slice(2)]);
    assert.deepEqual(table(e, "stable-merge").rows, seed0);
    const ic = exp(one, "interval-count");
    assert.ok(ic.findings.every((f) => !f.measured.includes("±") && !/seed/.test(f.measured)));
    assert.ok(
      ic.figures.every((f) =>
        (f as BarFigure).groups.every((g) => g.bars.every((b) => b.error === undefined)),
      ),
    );
    const icTwo = table(exp(two, "interval-count"), "interval-count");
    assert.deepEqual(
      table(ic, "interval-count").columns,
      icTwo.columns.filter((c) => c !== "seed"),
    );
    assert.deepEqual(
      table(ic, "interval-count").rows,
      icTwo.rows.filter((r) => r[1] === 0).map((r) => [r[0], ...r.slice(2)]),
    );
    assert.match(
      buildLabReport(one).summary!,
      /One seed per setting: differences below 0.005 nats are treated as noise\./,
    );
  });

  test("--seeds takes a whole number >= 1", async () => {
    for (const bad of ["0", "-1", "1.5", "x", ""]) {
      await assert.rejects(
        labCommand.run(["--profile", "micro", "--dir", join(tmp.dir, "never"), "--seeds", bad]),
        (e: unknown) => isPmaError(e, "USAGE") && /--seeds/.test(e.message),
        bad,
      );
    }
    await assert.rejects(runLab({ dir: join(tmp.dir, "never"), profile: "micro", seeds: 0 }), (e: unknown) =>
      isPmaError(e, "USAGE"),
    );
  });
});
