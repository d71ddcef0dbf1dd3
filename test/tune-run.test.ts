/**
 * `pma tune` end to end on a tiny real pma run: prefix-sum windows against the exact
 * merger, the winner written by the merger scoring what the search scored, the
 * evaluation cache, the outputs, and the errors.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync, mkdirSync, cpSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { evaluateOnData } from "../src/eval/data-eval.js";
import { merge } from "../src/merge/merger.js";
import { brownCorpus } from "../src/data/brown.js";
import { readWeights } from "../src/train/weights-io.js";
import { discoverRun } from "../src/trajectory/run.js";
import { candidateCoefficients, windowIndices, type Candidate } from "../src/tune/candidates.js";
import { CheckpointSet, PrefixSums } from "../src/tune/checkpoint-sums.js";
import { tuneRun } from "../src/tune/tune.js";
import { renderTunePage } from "../src/report/tune-page.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { trainTinyRun } from "./helpers/tiny-run.js";

/** Distance in float32 units in the last place between two float32 values of the same sign. */
function ulps(a: number, b: number): number {
  const f = new Float32Array([a, b]);
  const i = new Int32Array(f.buffer);
  return Math.abs(i[0]! - i[1]!);
}

describe("pma tune on a tiny pma run", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string;
  let cache: string;
  let data: string;
  before(async () => {
    tmp = await tempDir("pma-tune-");
    cache = join(tmp.dir, "cache");
    run = trainTinyRun(tmp.dir, cache);
    data = join(tmp.dir, "heldout.txt");
    writeFileSync(
      data,
      [...brownCorpus().documents("test")]
        .slice(0, 8)
        .map((d) => d.text.trim().replace(/\n\s*\n/g, "\n"))
        .join("\n\n"),
    );
  });
  after(async () => tmp?.cleanup());

  test("prefix-sum windows agree with the exact float64 merger to within 1 ulp of float32; weighted reads are bit-identical to it", async () => {
    const paths = (await discoverRun(run)).checkpoints.map((c) => c.path);
    assert.equal(paths.length, 12);
    const set = await CheckpointSet.open(paths);
    try {
      let worst = 0;
      let differing = 0;
      let total = 0;
      for (const c of [
        { method: "sma", stride: 1, count: 12, end: 11 },
        { method: "sma", stride: 3, count: 3, end: 10 },
        { method: "wma", stride: 1, count: 5, end: 11 },
        { method: "wma", stride: 2, count: 6, end: 11 },
      ] as Candidate[]) {
        const prefix = await PrefixSums.open(set, join(tmp.dir, "prefix"), c.stride, c.end % c.stride);
        const got = await prefix.window(c.end, c.count, c.method === "sma" ? "uniform" : "linear");
        const out = join(tmp.dir, `exact-${c.method}-${c.stride}-${c.count}`);
        const idx = windowIndices(c);
        await merge({
          inputs: idx.map((i) => paths[i]!),
          out,
          method: { method: c.method as "sma" | "wma" },
          accumulate: "f64",
          keepOrder: true,
        });
        const exact = (await readWeights(out)).tensors;
        const direct = await set.weightedSum(idx, candidateCoefficients(c));
        for (const [name, t] of exact) {
          const g = got.get(name)!;
          assert.deepEqual(direct.get(name), t.data, `${name}: weighted read vs merger`);
          for (let x = 0; x < t.data.length; x++) {
            const u = ulps(g[x]!, t.data[x]!);
            worst = Math.max(worst, u);
            if (u > 0) differing++;
          }
          total += t.data.length;
        }
      }
      assert.ok(worst <= 1, `largest difference ${worst} ulps`);
      assert.ok(differing / total < 0.01, `${differing} of ${total} values differ`);
    } finally {
      await set.close();
    }
  });

  test("tune writes the winner with the exact merger, scores what it searched, and reuses its cache", async () => {
    const out = join(tmp.dir, "tuned");
    const r = await tuneRun({
      run,
      data,
      budget: 12,
      out,
      cacheDir: cache,
      maxTokens: 1024,
      renderPage: renderTunePage,
    });
    assert.equal(r.evaluations.length, 12);
    assert.equal(r.computed, 12);
    assert.equal(r.best.loss, Math.min(...r.evaluations.map((e) => e.loss)));
    assert.ok(r.best.loss <= r.baseline.loss);
    assert.equal(r.baseline.candidate.count, 1);
    assert.equal(r.baseline.checkpoints[0], "checkpoint-192");
    const best = await evaluateOnData(join(out, "best"), {
      data,
      cacheDir: cache,
      maxTokens: 1024,
      seq: r.seq,
    });
    assert.ok(
      Math.abs(best.loss - r.best.loss) < 1e-6,
      `best/ scores ${best.loss}, the search scored ${r.best.loss}`,
    );
    const record = JSON.parse(readFileSync(join(out, "best", "pma_merge.json"), "utf8")) as {
      accumulate: string;
      inputs: { path: string }[];
    };
    assert.equal(record.accumulate, "f64");
    assert.deepEqual(
      record.inputs.map((i) => i.path.split("/").pop()),
      r.best.checkpoints,
    );
    const tsv = readFileSync(join(out, "candidates.tsv"), "utf8").trim().split("\n");
    assert.equal(tsv.length, 13);
    assert.match(
      readFileSync(join(out, "merge-command.txt"), "utf8"),
      /^pma merge .*checkpoint-192 --out .*best --method \S+.* --accumulate f64\n$/,
    );
    const html = readFileSync(join(out, "index.html"), "utf8");
    assert.equal((html.match(/<svg/g) ?? []).length, 3);
    assert.ok(html.includes(r.mergeCommand.replace(/'/g, "&#39;")));

    // Same budget again: nothing is computed. A larger one reuses what it can.
    const again = await tuneRun({
      run,
      data,
      budget: 12,
      out,
      force: true,
      cacheDir: cache,
      maxTokens: 1024,
    });
    assert.equal(again.computed, 0);
    assert.deepEqual(
      again.evaluations.map((e) => e.key),
      r.evaluations.map((e) => e.key),
    );
    const more = await tuneRun({ run, data, budget: 20, out, force: true, cacheDir: cache, maxTokens: 1024 });
    const reused = more.evaluations.filter((e) => e.reused).length;
    assert.equal(reused + more.computed, 20);
    assert.ok(reused >= 6, `reused ${reused}`);
    assert.ok(more.best.loss <= r.best.loss + 1e-12);
  });

  test("the CLI: usage errors exit 2, bad input exits 1 with the file named, a run of one checkpoint is refused (exit 2)", () => {
    const env = { ...process.env, PMA_CACHE_DIR: cache };
    const pma = (...args: string[]) =>
      spawnSync(process.execPath, [PMA_CLI, "tune", ...args], { encoding: "utf8", env });
    const noData = pma(run);
    assert.equal(noData.status, 2);
    assert.match(noData.stderr, /--data FILE is required/);
    const empty = join(tmp.dir, "empty.txt");
    writeFileSync(empty, "\n\n");
    const e1 = pma(run, "--data", empty, "--out", join(tmp.dir, "x"));
    assert.equal(e1.status, 1);
    assert.match(e1.stderr, /empty\.txt: no text in the held-out data/);
    assert.doesNotMatch(e1.stderr, /\n\s+at /);
    assert.equal(existsSync(join(tmp.dir, "x")), false);
    const one = join(tmp.dir, "one");
    mkdirSync(one);
    cpSync(join(run, "checkpoint-192"), join(one, "checkpoint-192"), { recursive: true });
    const e2 = pma(one, "--data", data);
    // As pma plan does for a run without checkpoints: a usage error (exit 2).
    assert.equal(e2.status, 2);
    assert.match(e2.stderr, /needs a run with at least 2 complete checkpoints \(found 1\)/);
    assert.equal(pma(run, "--data", data, "--methods", "sma,foo").status, 2);
  });

  test("pma watch --tune re-tunes every K merges on the run so far and journals the tuned and fixed-recipe losses", () => {
    const out = join(tmp.dir, "watched");
    const env = { ...process.env, PMA_CACHE_DIR: cache };
    const w = spawnSync(
      process.execPath,
      [
        PMA_CLI,
        "watch",
        run,
        "--interval",
        "2048",
        "--count",
        "3",
        "--out",
        out,
        "--backfill",
        "--once",
        "--no-init",
        "--tune",
        "--tune-data",
        data,
        "--tune-every",
        "6",
        "--tune-budget",
        "6",
        "--tune-tokens",
        "512",
        "--json",
      ],
      { encoding: "utf8", env },
    );
    assert.equal(w.status, 0, w.stderr);
    const lines = readFileSync(join(out, "watch.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            type: string;
            step: number;
            tuned_loss: number;
            fixed_loss: number | null;
            command: string;
            error?: string;
          },
      );
    const tunes = lines.filter((l) => l.type === "tune");
    assert.deepEqual(
      tunes.map((t) => t.step),
      [96, 192],
    );
    for (const t of tunes) {
      assert.equal(t.error, undefined);
      assert.ok(
        t.fixed_loss !== null && t.tuned_loss <= t.fixed_loss,
        `step ${t.step}: tuned ${t.tuned_loss}, fixed ${t.fixed_loss}`,
      );
    }
    // The first tune saw only the checkpoints up to step 96.
    assert.match(tunes[0]!.command, /checkpoint-96 /);
    assert.doesNotMatch(tunes[0]!.command, /checkpoint-1\d\d /);
    assert.equal(lines.filter((l) => l.type === "merge").length, 12);
    assert.ok(existsSync(join(out, "tuned", "best", "pma_merge.json")));
    assert.ok(existsSync(join(out, "merged")));
    assert.equal(
      spawnSync(process.execPath, [PMA_CLI, "watch", run, "--interval", "2048", "--tune-data", data], {
        encoding: "utf8",
        env,
      }).status,
      2,
    );
  });
});
