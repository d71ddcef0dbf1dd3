/**
 * A Hugging Face Trainer run whose loss overflowed: trainer_state.json holds Python's
 * NaN / Infinity / -Infinity literals (json.dumps writes them). Every command that reads
 * the checkpoints' states must accept them instead of skipping those checkpoints.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readJsonObjectFile } from "../src/formats/json-file.js";
import { readTrainerState } from "../src/formats/trainer-state.js";
import { discoverRun } from "../src/trajectory/run.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { pythonJsonDumps } from "./helpers/python-json.js";
import { lossCurve, TOKENS_PER_STEP, writeSpikyRun } from "./helpers/spiky-run.js";

const pma = (...args: string[]) => spawnSync(process.execPath, [PMA_CLI, ...args], { encoding: "utf8" });

describe("trainer_state.json with Python's NaN / Infinity / -Infinity", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string;
  before(async () => {
    tmp = await tempDir("pma-pyjson-");
    run = join(tmp.dir, "run");
    const curve = lossCurve(600, { divergeAt: 420 });
    await writeSpikyRun({ dir: run, checkpoints: 6, stepInterval: 100, curve, log: "trainer-state" });
    // Rewrite every checkpoint's state as the Trainer would after the overflow: the loss
    // is NaN from step 430, the grad norm Infinity from 420, and a TRL-style metric -Infinity.
    for (let i = 1; i <= 6; i++) {
      const step = i * 100;
      const history = curve
        .filter((p) => p.step <= step)
        .map((p) => ({
          epoch: p.step / 1000,
          grad_norm: p.step >= 420 ? Number.POSITIVE_INFINITY : p.gradNorm,
          learning_rate: 3e-4,
          loss: p.step >= 430 ? Number.NaN : p.loss,
          "rewards/margins": p.step >= 420 ? Number.NEGATIVE_INFINITY : 0.5,
          num_input_tokens_seen: p.step * TOKENS_PER_STEP,
          step: p.step,
        }));
      const state = {
        global_step: step,
        max_steps: 10_000,
        num_input_tokens_seen: step * TOKENS_PER_STEP,
        best_metric: Number.NaN,
        log_history: history,
      };
      await writeFile(join(run, `checkpoint-${step}`, "trainer_state.json"), pythonJsonDumps(state));
    }
  });
  after(() => tmp.cleanup());

  test("the fixture is what Python writes: bare literals that JSON.parse rejects", async () => {
    const text = await readFile(join(run, "checkpoint-600", "trainer_state.json"), "utf8");
    assert.match(text, /"loss": NaN/);
    assert.match(text, /"grad_norm": Infinity/);
    assert.match(text, /"rewards\/margins": -Infinity/);
    assert.throws(() => JSON.parse(text));
  });

  test("the readers accept them: state file, trainer state, run discovery", async () => {
    const raw = await readJsonObjectFile(join(run, "checkpoint-600", "trainer_state.json"), {
      code: "LOG_INVALID",
      what: "a trainer state",
    });
    assert.ok(raw !== null && Number.isNaN(raw.best_metric as number));
    const state = await readTrainerState(join(run, "checkpoint-500"));
    assert.equal(state?.globalStep, 500);
    assert.equal(state?.tokensSeen, 500 * TOKENS_PER_STEP);
    const scan = await discoverRun(run);
    assert.deepEqual(scan.skipped, []);
    assert.deepEqual(
      scan.checkpoints.map((c) => c.step),
      [100, 200, 300, 400, 500, 600],
    );
  });

  test("plan, merge --run, init and watch use every checkpoint", async () => {
    const plan = pma("plan", run, "--interval", "100K", "--count", "6");
    assert.equal(plan.status, 0, plan.stderr);
    assert.doesNotMatch(plan.stdout + plan.stderr, /skip|not valid JSON/i);
    assert.match(plan.stdout, /checkpoint-600/);

    const merged = join(tmp.dir, "merged");
    const m = pma(
      "merge",
      "--run",
      run,
      "--interval",
      "100K",
      "--count",
      "6",
      "--out",
      merged,
      "--threads",
      "1",
      "--json",
    );
    assert.equal(m.status, 0, m.stderr);
    assert.doesNotMatch(m.stderr, /skip|not valid JSON/i);
    assert.equal(JSON.parse(m.stdout).inputs.length, 6);

    const init = pma("init", run, "--out", join(tmp.dir, "init"), "--threads", "1", "--json");
    assert.equal(init.status, 0, init.stderr);
    const rec = JSON.parse(init.stdout) as {
      reason: { kind: string; event?: { startStep: number } };
      checkpoints: { step: number }[];
    };
    assert.equal(rec.reason.kind, "spike");
    assert.equal(rec.reason.event?.startStep, 420);
    assert.deepEqual(
      rec.checkpoints.map((c) => c.step),
      [200, 300, 400],
    );

    const out = join(tmp.dir, "watch");
    const w = pma(
      "watch",
      run,
      "--interval",
      "100K",
      "--count",
      "2",
      "--backfill",
      "--once",
      "--no-init",
      "--out",
      out,
      "--settle",
      "0",
      "--threads",
      "1",
    );
    assert.equal(w.status, 0, w.stderr);
    assert.doesNotMatch(w.stdout + w.stderr, /not valid JSON|unreadable/i);
    const merges = (await readFile(join(out, "watch.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .filter((l) => l.includes('"type":"merge"'));
    assert.equal(merges.length, 6);
    assert.ok(existsSync(join(out, "merged")));
  });
});
