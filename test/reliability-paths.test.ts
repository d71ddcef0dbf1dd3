/**
 * Paths that come from files are untrusted: shard names in an index, companion files
 * copied into a merge, and everything a run directory holds when `plan`, `watch` or
 * `init` scan it. None may take pma outside the directory it belongs to, by "..", an
 * absolute path, or a symlink. Each case puts a readable bait file outside and checks
 * that it is refused or left alone, never read or copied.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile, cp, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { SafetensorsWriter } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { readTrainingLog } from "../src/trajectory/logs.js";
import { discoverRun } from "../src/trajectory/run.js";
import { llamaTensorSpecs, writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { watchRun } from "../src/trajectory/watch.js";
import { checksums } from "./helpers/checksums.js";
import { tempDir } from "./helpers/fixtures.js";

const MODEL = { hiddenSize: 8, intermediateSize: 8, layers: 1, vocabSize: 10, heads: 2 };
const SECRET = "secret: this file is outside every checkpoint\n";

describe("untrusted paths", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let outside: string;
  let sharded: string;
  before(async () => {
    tmp = await tempDir("pma-paths-");
    outside = join(tmp.dir, "outside");
    await mkdir(outside);
    await writeFile(join(outside, "secret.txt"), SECRET);
    sharded = join(tmp.dir, "sharded");
    await mkdir(sharded);
    const w = await SafetensorsWriter.create(sharded, llamaTensorSpecs(MODEL, "F32"), { shardSize: 600 });
    await w.finish();
    // A valid shard outside: the bait an index might name.
    const first = (await readdir(sharded)).find((f) => f.startsWith("model-00001"))!;
    await copyFile(join(sharded, first), join(outside, "shard.safetensors"));
  });
  after(() => tmp.cleanup());

  async function withIndexEntry(file: string): Promise<string> {
    const dir = join(tmp.dir, `idx-${Math.random().toString(36).slice(2)}`);
    await cp(sharded, dir, { recursive: true });
    const indexPath = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8")) as { weight_map: Record<string, string> };
    const first = Object.keys(index.weight_map)[0]!;
    index.weight_map[first] = file;
    await writeFile(indexPath, JSON.stringify(index));
    return dir;
  }

  test('an index naming a shard by ".." is refused', async () => {
    for (const name of [
      "../outside/shard.safetensors",
      "sub/../../outside/shard.safetensors",
      "./../outside/shard.safetensors",
    ]) {
      const dir = await withIndexEntry(name);
      await assert.rejects(
        openCheckpointTensors(dir),
        (e) => isPmaError(e, "PATH_UNSAFE") && /"\.\."/.test(e.message),
        name,
      );
    }
  });

  test("an index naming a shard by an absolute path (POSIX or Windows) is refused", async () => {
    for (const name of [
      join(outside, "shard.safetensors"),
      "C:\\outside\\shard.safetensors",
      "\\\\server\\share\\shard.safetensors",
    ]) {
      const dir = await withIndexEntry(name);
      await assert.rejects(openCheckpointTensors(dir), (e) => isPmaError(e, "PATH_UNSAFE"), name);
    }
  });

  test("an index naming a shard that is a symlink leading outside is refused", async () => {
    const dir = await withIndexEntry("link.safetensors");
    await symlink(join(outside, "shard.safetensors"), join(dir, "link.safetensors"));
    await assert.rejects(
      openCheckpointTensors(dir),
      (e) => isPmaError(e, "PATH_UNSAFE") && e.message.includes("symlink"),
    );
  });

  test("companion files that are symlinks leading outside are not copied into a merge", async () => {
    const run = await writeSyntheticRun({
      dir: join(tmp.dir, "comp-run"),
      model: MODEL,
      checkpoints: 2,
      stepInterval: 10,
      tokensPerStep: 10,
      dtype: "BF16",
    });
    await symlink(join(outside, "secret.txt"), join(run[1]!, "tokenizer.json"));
    await symlink(join(outside, "secret.txt"), join(run[1]!, "special_tokens_map.json"));
    const out = join(tmp.dir, "comp-merged");
    await merge({ inputs: run, out, threads: 1 });
    const files = await readdir(out);
    assert.ok(files.includes("config.json"), "the real config.json is copied");
    assert.ok(
      !files.includes("tokenizer.json") && !files.includes("special_tokens_map.json"),
      files.join(", "),
    );
    for (const f of files)
      assert.ok(!(await readFile(join(out, f), "utf8").catch(() => "")).includes("secret:"), f);
  });

  describe("a run directory scanned by plan/watch/init", () => {
    let run: string;
    before(async () => {
      run = join(tmp.dir, "run");
      await writeSyntheticRun({
        dir: run,
        model: MODEL,
        checkpoints: 5,
        stepInterval: 10,
        tokensPerStep: 100,
        dtype: "BF16",
      });
      // checkpoint-60: a symlinked directory leading outside.
      const elsewhere = join(outside, "checkpoint-60");
      await cp(join(run, "checkpoint-50"), elsewhere, { recursive: true });
      await symlink(elsewhere, join(run, "checkpoint-60"));
      // checkpoint-40: its weights are a link to a valid file outside.
      await copyFile(join(run, "checkpoint-40", "model.safetensors"), join(outside, "weights.safetensors"));
      await rm(join(run, "checkpoint-40", "model.safetensors"));
      await symlink(join(outside, "weights.safetensors"), join(run, "checkpoint-40", "model.safetensors"));
      // checkpoint-50: its trainer_state.json is a link to one outside (claiming more tokens).
      await writeFile(
        join(outside, "trainer_state.json"),
        JSON.stringify({ global_step: 50, num_input_tokens_seen: 999_999, log_history: [] }),
      );
      await rm(join(run, "checkpoint-50", "trainer_state.json"));
      await symlink(join(outside, "trainer_state.json"), join(run, "checkpoint-50", "trainer_state.json"));
    });

    test("symlinked checkpoint folders are not discovered; checkpoints whose files link outside are skipped, saying why", async () => {
      const scan = await discoverRun(run);
      assert.deepEqual(
        scan.checkpoints.map((c) => c.name),
        ["checkpoint-10", "checkpoint-20", "checkpoint-30"],
      );
      const reasons = Object.fromEntries(scan.skipped.map((s) => [s.path.slice(run.length + 1), s.reason]));
      assert.deepEqual(Object.keys(reasons).sort(), ["checkpoint-40", "checkpoint-50"]);
      assert.match(reasons["checkpoint-40"]!, /model\.safetensors is a link leading outside/);
      assert.match(reasons["checkpoint-50"]!, /trainer_state\.json is a link leading outside/);
    });

    test("log files that are symlinks in the run are not read (log.jsonl, event files, CSV)", async () => {
      const logRun = join(tmp.dir, "log-run");
      await mkdir(join(logRun, "runs", "stamp"), { recursive: true });
      await writeFile(join(outside, "log.jsonl"), '{"type":"step","step":1,"loss":1}\n');
      await writeFile(join(outside, "metrics.csv"), "step,loss\n1,1\n");
      await symlink(join(outside, "log.jsonl"), join(logRun, "log.jsonl"));
      await symlink(join(outside, "metrics.csv"), join(logRun, "metrics.csv"));
      await symlink(join(outside, "log.jsonl"), join(logRun, "runs", "stamp", "events.out.tfevents.1.host"));
      await assert.rejects(
        readTrainingLog(logRun),
        (e) => isPmaError(e, "LOG_INVALID") && /no training log found/.test(e.message),
      );
      // The same file named directly is the user's choice, and is read.
      assert.equal((await readTrainingLog(join(logRun, "log.jsonl"))).points.length, 1);
    });

    test("pma watch merges only the confined checkpoints and leaves the run and the outside untouched", async () => {
      const before = { run: await checksums(run), outside: await checksums(outside) };
      const events: string[] = [];
      const out = join(tmp.dir, "watch-out");
      const summary = await watchRun({
        run,
        out,
        interval: 1000,
        count: 3,
        once: true,
        settleMs: 0,
        init: false,
        threads: 1,
        onEvent: (e) =>
          events.push(e.type === "waiting" ? `waiting ${e.path.slice(run.length + 1)}` : e.type),
      });
      assert.equal(summary.lastStep, 30);
      assert.ok(
        events.includes("waiting checkpoint-40") && events.includes("waiting checkpoint-50"),
        events.join(", "),
      );
      const record = JSON.parse(await readFile(join(out, "merged", "pma_merge.json"), "utf8")) as {
        inputs: { path: string }[];
      };
      assert.deepEqual(
        record.inputs.map((i) => i.path.slice(run.length + 1)),
        ["checkpoint-10", "checkpoint-20", "checkpoint-30"],
      );
      assert.deepEqual(await checksums(run), before.run);
      assert.deepEqual(await checksums(outside), before.outside);
      assert.equal(existsSync(join(outside, ".watch.lock")), false);
    });
  });
});
