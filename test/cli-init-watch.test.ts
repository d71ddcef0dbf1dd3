import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/fixtures.js";
import { lossCurve, writeSpikyRun } from "./helpers/spiky-run.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

function pma(...args: string[]) {
  return spawnSync(process.execPath, [PMA, ...args], { encoding: "utf8" });
}

async function until(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("pma init and pma watch from the command line", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string;
  before(async () => {
    tmp = await tempDir("pma-cli-init-");
    run = join(tmp.dir, "run");
    await writeSpikyRun({
      dir: run,
      checkpoints: 6,
      stepInterval: 100,
      curve: lossCurve(600, { divergeAt: 420 }),
      log: "pma-jsonl",
    });
  });
  after(() => tmp.cleanup());

  test("pma init explains the spike and the merge; --json prints the record; the default output is RUN-pma-init", async () => {
    const r = pma("init", run, "--threads", "1");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /why: loss divergence at step 420/);
    assert.match(r.stdout, /merged 3 checkpoint\(s\) with SMA/);
    assert.match(r.stdout, /0\.333333 {2}checkpoint-400/);
    assert.ok(existsSync(join(`${run}-pma-init`, "checkpoint-400", "pma_init.json")));

    const j = pma(
      "init",
      run,
      "--before",
      "250",
      "--count",
      "2",
      "--optimizer",
      "reset",
      "--out",
      join(tmp.dir, "b"),
      "--json",
      "--threads",
      "1",
    );
    assert.equal(j.status, 0, j.stderr);
    const rec = JSON.parse(j.stdout);
    assert.deepEqual(
      rec.checkpoints.map((c: { step: number }) => c.step),
      [100, 200],
    );
    assert.equal(rec.optimizer, "reset");
    assert.equal(
      JSON.stringify(rec),
      JSON.stringify(
        JSON.parse(await readFile(join(tmp.dir, "b", "checkpoint-200", "pma_init.json"), "utf8")),
      ),
    );
  });

  test("pma init usage errors exit 2 and say what to do", async () => {
    const quiet = join(tmp.dir, "quiet");
    await writeSpikyRun({
      dir: quiet,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(300, {}),
      log: "pma-jsonl",
    });
    const r = pma("init", quiet, "--out", join(tmp.dir, "q"));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no unrecovered loss spike.*--before STEP/s);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, "no stack trace");
    assert.equal(pma("init", run, "--optimizer", "keep").status, 2);
    assert.equal(pma("init", run, "--before", "soon").status, 2);
  });

  test("pma watch --interval auto --backfill --once prints V's basis and merges at every checkpoint", async () => {
    const out = join(tmp.dir, "watch-backfill");
    const r = pma(
      "watch",
      run,
      "--interval",
      "auto",
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
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /note: --interval auto: V=1M tokens, from checkpoint-600 \(dense model with/);
    assert.match(r.stdout, /note: backfilling the 6 checkpoints already in the run, oldest first/);
    assert.match(r.stdout, /stopped \(once\): 6 merge\(s\), 0 spike\(s\), 0 error\(s\); last step 600/);
    const lines = (await readFile(join(out, "watch.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; step?: number });
    assert.deepEqual(
      lines.map((l) => l.type),
      ["interval", ...Array(6).fill("merge")],
    );
    assert.deepEqual(
      lines.slice(1).map((l) => l.step),
      [100, 200, 300, 400, 500, 600],
    );
    assert.equal(pma("watch", run, "--interval", "soon").status, 2);
  });

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    test(`pma watch runs until ${signal} and exits cleanly`, async () => {
      const out = join(tmp.dir, `watch-${signal}`);
      const child = spawn(
        process.execPath,
        [
          PMA,
          "watch",
          run,
          "--interval",
          "100K",
          "--count",
          "2",
          "--out",
          out,
          "--poll",
          "0.05",
          "--settle",
          "0",
          "--threads",
          "1",
        ],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      // The first poll handles the spike and merges the newest window.
      await until(
        async () =>
          (await readFile(join(out, "watch.jsonl"), "utf8").catch(() => "")).includes('"type":"merge"'),
        20_000,
      );
      child.kill(signal);
      const code = await exited;
      assert.equal(code, 0, stderr);
      assert.match(stdout, /spike at step 420 \(divergence.*wrote a PMA-init checkpoint/);
      assert.match(stdout, /step 600 \(600K tokens\): merged checkpoint-500, checkpoint-600/);
      assert.match(stdout, /stopped \(signal\): 1 merge\(s\), 1 spike\(s\), 0 error\(s\); last step 600/);
      assert.deepEqual(
        (await readdir(out)).sort(),
        ["merged", "pma-init-420", "watch.jsonl"],
        "no lock or temporaries left",
      );
    });
  }
});
