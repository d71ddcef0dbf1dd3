import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { tempDir } from "./helpers/fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

function pma(...args: string[]) {
  return spawnSync(process.execPath, [PMA, ...args], { encoding: "utf8" });
}

describe("pma CLI end to end", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string[];
  before(async () => {
    tmp = await tempDir();
    run = await writeSyntheticRun({
      dir: join(tmp.dir, "run"),
      model: { hiddenSize: 16, intermediateSize: 24, layers: 2, vocabSize: 50, heads: 2 },
      checkpoints: 3,
      stepInterval: 10,
      tokensPerStep: 100,
      dtype: "BF16",
    });
  });
  after(() => tmp.cleanup());

  test("pma merge writes a merge and a record, and --json prints it", () => {
    const out = join(tmp.dir, "merged");
    const r = pma(
      "merge",
      run[2]!,
      run[0]!,
      run[1]!,
      "--out",
      out,
      "--method",
      "ema",
      "--alpha",
      "0.5",
      "--json",
    );
    assert.equal(r.status, 0, r.stderr);
    const record = JSON.parse(r.stdout);
    assert.equal(record.method, "ema");
    assert.deepEqual(record.coefficients, [0.25, 0.25, 0.5]);
    assert.deepEqual(
      record.inputs.map((i: { step: number }) => i.step),
      [10, 20, 30],
    );
    assert.ok(existsSync(join(out, "model.safetensors")));
    assert.ok(existsSync(join(out, "config.json")));
  });

  test("pma merge --dtype f32 --shard-size writes shards and says the dtype in config.json", async () => {
    const out = join(tmp.dir, "merged-f32");
    const r = pma("merge", ...run, "--out", out, "--dtype", "f32", "--shard-size", "4KB");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /merged 3 checkpoint\(s\) with SMA, ordered by tokens/);
    const files = await readdir(out);
    assert.ok(files.includes("model.safetensors.index.json"));
    assert.ok(files.some((f) => /^model-00001-of-000\d\d\.safetensors$/.test(f)));
    assert.equal(JSON.parse(await readFile(join(out, "config.json"), "utf8")).torch_dtype, "float32");
  });

  test("usage errors exit 2, input errors exit 1 without a stack trace", () => {
    const usage = pma("merge", run[0]!);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--out DIR is required/);
    const bad = pma("merge", run[0]!, "--out", join(tmp.dir, "x"), "--method", "median");
    assert.equal(bad.status, 2);
    const missing = pma("merge", join(tmp.dir, "nope"), "--out", join(tmp.dir, "y"));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /nope/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);
    const exists = pma("merge", run[0]!, "--out", run[1]!);
    assert.equal(exists.status, 1);
    assert.match(exists.stderr, /already exists.*--force/);
    const unknown = pma("frobnicate");
    assert.equal(unknown.status, 2);
  });

  test("pma inspect lists tensors and totals; --stats --json adds statistics", () => {
    const r = pma("inspect", run[0]!);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /model\.embed_tokens\.weight\s+BF16\s+\[50, 16\]/);
    assert.match(r.stdout, /total: [\d,]+ parameters/);
    const j = pma("inspect", join(run[0]!, "model.safetensors"), "--stats", "--json");
    assert.equal(j.status, 0, j.stderr);
    const summary = JSON.parse(j.stdout);
    const norm = summary.tensors.find((t: { name: string }) => t.name === "model.norm.weight");
    assert.ok(norm.stats.min > 0.8 && norm.stats.max < 1.2, "norm weights sit near 1");
    assert.equal(norm.stats.nan, 0);
    assert.equal(
      summary.parameters,
      summary.tensors.reduce((s: number, t: { parameters: number }) => s + t.parameters, 0),
    );
  });

  test("pma demo runs and shows the merge is closer to the optimum", () => {
    const r = pma("demo", "--dir", join(tmp.dir, "demo"), "--checkpoints", "4");
    assert.equal(r.status, 0, r.stderr);
    const m = /newest checkpoint ([\d.e+-]+), SMA merge ([\d.e+-]+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Number(m[2]) < Number(m[1]));
    assert.ok(!existsSync(join(tmp.dir, "demo")), "demo cleans up without --keep");
  });
});
