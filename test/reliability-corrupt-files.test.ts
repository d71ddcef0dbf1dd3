/**
 * Files pma reads back that a crash, a bad copy or a hand edit can leave as valid JSON
 * of the wrong shape ("null", a number, an array): each gives pma's own error, naming
 * the file, where reading a property of null used to throw a TypeError.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { merge } from "../src/merge/merger.js";
import { PMA_STATE_FILE, readPmaState } from "../src/train/checkpoint.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { WatchJournal } from "../src/trajectory/watch-journal.js";
import { tempDir } from "./helpers/fixtures.js";

describe("corrupt JSON state files", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-corrupt-");
  });
  after(() => tmp.cleanup());

  test("pma_state.json holding null, a number or an array is CHECKPOINT_MISMATCH", async () => {
    for (const text of ["null", "7", "[1]"]) {
      await writeFile(join(tmp.dir, PMA_STATE_FILE), text);
      await assert.rejects(
        readPmaState(tmp.dir),
        (e) => isPmaError(e, "CHECKPOINT_MISMATCH") && e.message.includes(PMA_STATE_FILE),
        text,
      );
    }
  });

  test("a watch journal line that is not an object is LOG_INVALID naming the line", async () => {
    const path = join(tmp.dir, "watch.jsonl");
    await writeFile(path, '{"type":"merge","step":1}\nnull\n');
    await assert.rejects(
      WatchJournal.open(path),
      (e) => isPmaError(e, "LOG_INVALID") && e.message.includes("watch.jsonl:2"),
    );
  });

  test("merge --dtype with a config.json that is not a JSON object fails cleanly and leaves no output", async () => {
    const run = await writeSyntheticRun({
      dir: join(tmp.dir, "run"),
      model: { hiddenSize: 8, intermediateSize: 8, layers: 1, vocabSize: 10, heads: 2 },
      checkpoints: 2,
      stepInterval: 10,
      tokensPerStep: 10,
      dtype: "BF16",
    });
    for (const text of ["{not json", "null"]) {
      await writeFile(join(run[1]!, "config.json"), text);
      const out = join(tmp.dir, "merged");
      await assert.rejects(
        merge({ inputs: run, out, dtype: "F32", threads: 1 }),
        (e) => isPmaError(e, "CONFIG_INVALID") && e.message.includes("config.json"),
      );
      assert.equal(existsSync(out), false);
      assert.deepEqual(
        (await readdir(tmp.dir)).filter((n) => n.startsWith(".merged")),
        [],
      );
    }
  });
});
