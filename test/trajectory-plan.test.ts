import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { isPmaError } from "../src/common/errors.js";
import { PAPER_INTERVALS, recommendInterval } from "../src/trajectory/interval.js";
import { planMerge } from "../src/trajectory/plan.js";
import { discoverRun, requireTokens, type RunCheckpoint } from "../src/trajectory/run.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { tempDir } from "./helpers/fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const model = { hiddenSize: 8, intermediateSize: 8, layers: 1, vocabSize: 10, heads: 2 };

function fakeRun(tokens: number[]): (RunCheckpoint & { tokens: number })[] {
  return tokens.map((t, i) => ({
    path: `/run/c${i}`,
    name: `checkpoint-${i}`,
    step: i,
    tokens: t,
    tokensFrom: "trainer_state",
    parameters: 1,
  }));
}

describe("planMerge", () => {
  const run = fakeRun(Array.from({ length: 40 }, (_, i) => (i + 1) * 1_000_000));

  test("picks the checkpoints at T, T-V, ..., T-(N-1)V, oldest first", () => {
    const plan = planMerge(run, { interval: 4_000_000, count: 5 });
    assert.deepEqual(
      plan.selected.map((c) => c.tokens),
      [24e6, 28e6, 32e6, 36e6, 40e6],
    );
    assert.deepEqual(
      plan.selected.map((c) => c.coefficient),
      [0.2, 0.2, 0.2, 0.2, 0.2],
    );
    assert.deepEqual(plan.missingTargets, []);
  });

  test("--at moves the window; the nearest checkpoint within tolerance is taken", () => {
    const plan = planMerge(run, { interval: 3_300_000, count: 3, at: 20_400_000 });
    assert.deepEqual(
      plan.selected.map((c) => c.tokens),
      [14e6, 17e6, 20e6],
    );
  });

  test("a run too short for N at V gets a smaller N, and says so", () => {
    const plan = planMerge(run, { interval: 8_000_000, count: 10 });
    assert.equal(plan.count, 5);
    assert.deepEqual(
      plan.selected.map((c) => c.tokens),
      [8e6, 16e6, 24e6, 32e6, 40e6],
    );
    assert.match(plan.notes.join(" "), /too short for 10 checkpoints/);
  });

  test("targets without a checkpoint nearby are reported", () => {
    const sparse = fakeRun([1e6, 2e6, 3e6, 10e6, 11e6, 12e6]);
    const plan = planMerge(sparse, { interval: 3e6, count: 4, tolerance: 400_000 });
    assert.deepEqual(
      plan.selected.map((c) => c.tokens),
      [3e6, 12e6],
    );
    assert.deepEqual(plan.missingTargets, [6e6, 9e6]);
  });

  test("the method's coefficients are attached", () => {
    const plan = planMerge(run, { interval: 1_000_000, count: 3, method: { method: "wma" } });
    assert.deepEqual(
      plan.selected.map((c) => c.coefficient),
      [1 / 6, 2 / 6, 3 / 6],
    );
  });
});

describe("recommendInterval", () => {
  test("returns the paper's V at the paper's model sizes", () => {
    for (const [kind, pts] of Object.entries(PAPER_INTERVALS)) {
      for (const p of pts) assert.equal(recommendInterval(p.parameters, kind === "moe").interval, p.interval);
    }
  });
  test("grows with model size and says when it extrapolates", () => {
    const small = recommendInterval(1e6, false);
    const mid = recommendInterval(1e9, false);
    assert.ok(small.interval < mid.interval && mid.interval < recommendInterval(30e9, false).interval);
    assert.ok(small.extrapolated && !mid.extrapolated);
    assert.match(small.basis, /extrapolated/);
  });
});

describe("discoverRun and pma plan on real run directories", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir();
    await writeSyntheticRun({
      dir: join(tmp.dir, "hf"),
      model,
      checkpoints: 6,
      stepInterval: 100,
      tokensPerStep: 1000,
      dtype: "F32",
    });
  });
  after(() => tmp.cleanup());

  test("Trainer layout: tokens from trainer_state.json; partial checkpoints are skipped with a reason", async () => {
    const run = join(tmp.dir, "hf");
    // A checkpoint whose weights are still being written, and one without trainer_state yet.
    await writeSyntheticRun({
      dir: join(tmp.dir, "tmp1"),
      model,
      checkpoints: 8,
      stepInterval: 100,
      tokensPerStep: 1000,
      dtype: "F32",
    });
    await mkdir(join(run, "checkpoint-700"));
    await writeFile(
      join(run, "checkpoint-700", "trainer_state.json"),
      JSON.stringify({ global_step: 700, num_input_tokens_seen: 700_000 }),
    );
    const { copyFile } = await import("node:fs/promises");
    await copyFile(
      join(tmp.dir, "tmp1/checkpoint-700/model.safetensors"),
      join(run, "checkpoint-700/model.safetensors"),
    );
    await truncate(join(run, "checkpoint-700/model.safetensors"), 200);
    await mkdir(join(run, "checkpoint-800"));
    await copyFile(
      join(tmp.dir, "tmp1/checkpoint-800/model.safetensors"),
      join(run, "checkpoint-800/model.safetensors"),
    );
    await mkdir(join(run, "not-a-checkpoint"));
    const scan = await discoverRun(run);
    assert.deepEqual(
      scan.checkpoints.map((c) => c.tokens),
      [100_000, 200_000, 300_000, 400_000, 500_000, 600_000],
    );
    assert.deepEqual(scan.skipped.map((s) => s.path.split("/").pop()).sort(), [
      "checkpoint-700",
      "checkpoint-800",
    ]);
    assert.match(scan.skipped.find((s) => s.path.endsWith("700"))!.reason, /incomplete/);
    assert.match(scan.skipped.find((s) => s.path.endsWith("800"))!.reason, /trainer_state/);
    await rm(join(run, "checkpoint-700"), { recursive: true });
    await rm(join(run, "checkpoint-800"), { recursive: true });
  });

  test("Megatron-style iter_N names with --step-pattern and --tokens-per-step", async () => {
    const run = join(tmp.dir, "megatron");
    const paths = await writeSyntheticRun({
      dir: join(tmp.dir, "tmp2"),
      model,
      checkpoints: 3,
      stepInterval: 50,
      tokensPerStep: 1,
      dtype: "F32",
    });
    const { cp } = await import("node:fs/promises");
    for (const [i, p] of paths.entries()) {
      await cp(
        join(p, "model.safetensors"),
        join(run, `iter_${String((i + 1) * 50).padStart(7, "0")}`, "model.safetensors"),
        { recursive: true },
      );
    }
    await assert.rejects(
      async () => requireTokens(await discoverRun(run)),
      (e) => isPmaError(e, "USAGE") && /--tokens-per-step/.test((e as Error).message),
    );
    const scan = await discoverRun(run, { stepPattern: /^iter_(\d+)$/, tokensPerStep: 4096 });
    assert.deepEqual(
      scan.checkpoints.map((c) => [c.step, c.tokens]),
      [
        [50, 204_800],
        [100, 409_600],
        [150, 614_400],
      ],
    );
  });

  test("pma plan prints the table and the merge command; pma merge --run runs it", () => {
    const run = join(tmp.dir, "hf");
    const plan = spawnSync(
      process.execPath,
      [PMA, "plan", run, "--interval", "200K", "--count", "3", "--json"],
      { encoding: "utf8" },
    );
    assert.equal(plan.status, 0, plan.stderr);
    const json = JSON.parse(plan.stdout);
    assert.deepEqual(
      json.selected.map((c: { tokens: number }) => c.tokens),
      [200_000, 400_000, 600_000],
    );
    assert.match(
      json.command,
      /^pma merge .*checkpoint-200 .*checkpoint-400 .*checkpoint-600 --out merged --keep-order --method sma$/,
    );
    const out = join(tmp.dir, "merged");
    const merged = spawnSync(
      process.execPath,
      [
        PMA,
        "merge",
        "--run",
        run,
        "--interval",
        "200K",
        "--count",
        "3",
        "--out",
        out,
        "--method",
        "wsm",
        "--json",
      ],
      { encoding: "utf8" },
    );
    assert.equal(merged.status, 0, merged.stderr);
    const record = JSON.parse(merged.stdout);
    assert.deepEqual(
      record.inputs.map((i: { tokens: number }) => i.tokens),
      [200_000, 400_000, 600_000],
    );
    assert.equal(record.method, "wsm");
    const bad = spawnSync(process.execPath, [PMA, "merge", "--interval", "8B", "--out", out], {
      encoding: "utf8",
    });
    assert.equal(bad.status, 2);
  });
});
