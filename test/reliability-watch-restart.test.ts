/**
 * `pma watch` as a real process beside a run that is still being written:
 *   - a checkpoint written slowly, the way the Hugging Face Trainer writes one (weights
 *     growing on disk, trainer_state.json last), is waited for and merged once, only
 *     when complete, with the same bytes as a merge of the finished files;
 *   - SIGKILL at random moments (mid-merge included), restarts, and checkpoints that
 *     arrive while no watcher runs: the journal ends with every checkpoint exactly once,
 *     OUT/merged is the complete merge of the last window, the run is untouched.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, cp, mkdir, open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { merge } from "../src/merge/merger.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { checksums } from "./helpers/checksums.js";
import { rng, tempDir } from "./helpers/fixtures.js";
import { startPma, waitFor, type Running } from "./helpers/processes.js";

const MODEL = { hiddenSize: 128, intermediateSize: 256, layers: 2, vocabSize: 2000, heads: 4 };
const KILLS = 6;

interface Entry {
  type: string;
  checkpoint: string;
  step: number;
  error?: string;
  inputs: { name: string }[];
}

async function journal(out: string): Promise<Entry[]> {
  const text = await readFile(join(out, "watch.jsonl"), "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Entry)
    .filter((e) => e.type === "merge");
}

/** Synchronous, for waitFor's predicate: has the journal a merge line for `step`? */
function journalHas(out: string, step: number): boolean {
  const path = join(out, "watch.jsonl");
  return (
    existsSync(path) &&
    readFileSync(path, "utf8")
      .split("\n")
      .some((l) => l.includes(`"type":"merge"`) && l.includes(`"step":${step},`))
  );
}

function content(sums: Record<string, string>): Record<string, string> {
  const { ["pma_merge.json"]: _record, ...rest } = sums;
  return rest;
}

describe("pma watch killed and restarted beside a live run", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  /** Every checkpoint the run will have, written complete ahead of time (steps 10..100). */
  let source: string;
  let run: string;
  let out: string;
  let watcher: Running | null = null;
  const watch = () =>
    startPma([
      "watch",
      run,
      "--interval",
      "1000",
      "--count",
      "3",
      "--out",
      out,
      "--poll",
      "0.1",
      "--settle",
      "0.4",
      "--no-init",
      "--threads",
      "1",
      "--json",
    ]);

  before(async () => {
    tmp = await tempDir("pma-watch-restart-");
    source = join(tmp.dir, "source");
    await writeSyntheticRun({
      dir: source,
      model: MODEL,
      checkpoints: 10,
      stepInterval: 10,
      tokensPerStep: 100,
      dtype: "BF16",
    });
    run = join(tmp.dir, "run");
    out = join(tmp.dir, "out");
    for (const s of [10, 20, 30])
      await cp(join(source, `checkpoint-${s}`), join(run, `checkpoint-${s}`), { recursive: true });
  });
  after(async () => {
    watcher?.child.kill("SIGKILL");
    await watcher?.exited;
    await tmp.cleanup();
  });

  /** The merge the watcher should publish for the window ending at `step`. */
  async function reference(step: number): Promise<Record<string, string>> {
    const dir = join(tmp.dir, `ref-${step}`);
    await merge({
      inputs: [step - 20, step - 10, step].map((s) => join(source, `checkpoint-${s}`)),
      out: dir,
      threads: 1,
    });
    return content(await checksums(dir));
  }

  test("a checkpoint written slowly is merged once, only when complete", { timeout: 120_000 }, async () => {
    watcher = watch();
    // The journal line, not the file: the file exists a moment before its first line is in it.
    await waitFor("the first merge", () => journalHas(out, 30));
    assert.deepEqual(
      (await journal(out)).map((e) => e.checkpoint),
      ["checkpoint-30"],
    );

    // checkpoint-40 appears as the Trainer writes it: the weights in pieces, then the
    // config, then trainer_state.json, with pauses longer than the watcher's poll.
    const dir = join(run, "checkpoint-40");
    await mkdir(dir);
    const weights = await readFile(join(source, "checkpoint-40", "model.safetensors"));
    const fh = await open(join(dir, "model.safetensors"), "w");
    for (let i = 0; i < 4; i++) {
      await fh.write(weights.subarray((i * weights.length) / 4, ((i + 1) * weights.length) / 4));
      await sleep(300);
      assert.deepEqual(
        (await journal(out)).map((e) => e.checkpoint),
        ["checkpoint-30"],
        `merged while ${i + 1}/4 of the weights were written`,
      );
    }
    await fh.close();
    await copyFile(join(source, "checkpoint-40", "config.json"), join(dir, "config.json"));
    await sleep(600);
    assert.deepEqual(
      (await journal(out)).map((e) => e.checkpoint),
      ["checkpoint-30"],
      "merged before trainer_state.json was written",
    );
    await copyFile(join(source, "checkpoint-40", "trainer_state.json"), join(dir, "trainer_state.json"));
    await waitFor("checkpoint-40 to be merged", () => journalHas(out, 40));
    const entries = await journal(out);
    assert.deepEqual(
      entries.map((e) => e.checkpoint),
      ["checkpoint-30", "checkpoint-40"],
    );
    assert.equal(entries[1]!.error, undefined);
    assert.deepEqual(
      entries[1]!.inputs.map((i) => i.name),
      ["checkpoint-20", "checkpoint-30", "checkpoint-40"],
    );
    assert.deepEqual(content(await checksums(join(out, "merged"))), await reference(40));
  });

  test(
    `${KILLS} SIGKILLs at random moments and restarts: every checkpoint merged exactly once, the last merge complete`,
    { timeout: 240_000 },
    async () => {
      const r = rng(17);
      let next = 50;
      for (let k = 0; k < KILLS; k++) {
        // One or two checkpoints arrive (atomically, as pma's trainer writes them) ...
        const arriving = next <= 100 ? (k % 3 === 2 && next + 10 <= 100 ? [next, next + 10] : [next]) : [];
        for (const s of arriving)
          await cp(join(source, `checkpoint-${s}`), join(run, `checkpoint-${s}`), { recursive: true });
        next += arriving.length * 10;
        // ... and the watcher is killed while merging them, or just after.
        const lockOrDone = () =>
          existsSync(join(out, ".merged.pma-lock")) || watcher!.child.exitCode !== null;
        await waitFor("a merge to start", lockOrDone, 30_000).catch(() => undefined);
        await sleep(r() * 250);
        watcher!.child.kill("SIGKILL");
        await watcher!.exited;
        const names = (await journal(out)).map((e) => e.checkpoint);
        assert.equal(
          new Set(names).size,
          names.length,
          `kill ${k}: a checkpoint journalled twice: ${names.join(", ")}`,
        );
        assert.ok(
          !existsSync(join(out, "merged")) || existsSync(join(out, "merged", "pma_merge.json")),
          `kill ${k}: OUT/merged is partial`,
        );
        watcher = watch();
      }
      // No checkpoint arrives from here on: the run must stay exactly as it is.
      const before = await checksums(run);
      const last = next - 10;
      await waitFor(`checkpoint-${last} to be merged`, () => journalHas(out, last), 60_000);
      watcher!.child.kill("SIGTERM");
      assert.equal((await watcher!.exited).code, 0);
      watcher = null;
      const names = (await journal(out)).map((e) => e.step);
      assert.deepEqual(
        names,
        Array.from({ length: (last - 30) / 10 + 1 }, (_, i) => 30 + 10 * i),
        "each checkpoint once, in order",
      );
      assert.ok((await journal(out)).every((e) => e.error === undefined));
      assert.deepEqual(content(await checksums(join(out, "merged"))), await reference(last));
      assert.deepEqual(await checksums(run), before, "the run is read, never written");
      assert.equal(existsSync(join(out, ".watch.lock")), false);
    },
  );
});
