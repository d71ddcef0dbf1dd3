import assert from "node:assert/strict";
import { appendFile, cp, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { bf16ToNumber, numberToBf16 } from "../src/tensor/bf16.js";
import { autoInterval } from "../src/trajectory/auto-interval.js";
import { recommendInterval } from "../src/trajectory/interval.js";
import { planMerge } from "../src/trajectory/plan.js";
import { discoverRun, requireTokens } from "../src/trajectory/run.js";
import { optimumValue, tensorGenerator, writeSyntheticRun } from "../src/trajectory/synthetic.js";
import type { IntervalEntry, MergeEntry, SpikeEntry } from "../src/trajectory/watch-journal.js";
import {
  watchRun,
  WATCH_JOURNAL_FILE,
  WATCH_MERGED_DIR,
  type WatchEvent,
  type WatchOptions,
} from "../src/trajectory/watch.js";
import { tempDir } from "./helpers/fixtures.js";
import {
  addTrainerFiles,
  lossCurve,
  readTensors,
  TINY_MODEL,
  TOKENS_PER_STEP,
  writeRunLog,
  writeSpikyRun,
} from "./helpers/spiky-run.js";

const V = 100 * TOKENS_PER_STEP; // one save interval

type Entry = MergeEntry | SpikeEntry | IntervalEntry;
async function journal(out: string): Promise<Entry[]> {
  const text = await readFile(join(out, WATCH_JOURNAL_FILE), "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Entry);
}
const merges = (j: Entry[]) => j.filter((e): e is MergeEntry => e.type === "merge");
const spikes = (j: Entry[]) => j.filter((e): e is SpikeEntry => e.type === "spike");
const intervals = (j: Entry[]) => j.filter((e): e is IntervalEntry => e.type === "interval");

/** The window planMerge chooses at each of `run`'s checkpoints, computed apart from the watcher. */
async function expectedWindows(run: string, interval: number, count: number): Promise<string[][]> {
  const all = requireTokens(await discoverRun(run));
  return all.map((c) =>
    planMerge(
      all.filter((x) => x.tokens <= c.tokens),
      { interval, count },
    ).selected.map((p) => p.name),
  );
}

/** Mean squared distance of a checkpoint's weights to the synthetic run's optimum (seed 3). */
async function distanceToOptimum(path: string): Promise<number> {
  let sum = 0;
  let n = 0;
  for (const [name, t] of await readTensors(path)) {
    const g = tensorGenerator(3, name);
    t.values.forEach((v, i) => {
      sum += (v - optimumValue(g, i)) ** 2;
      n++;
    });
  }
  return sum / n;
}

/** Adds checkpoint-<step> to `run`, written elsewhere and moved in complete (as the Trainer does). */
async function addCheckpoint(
  run: string,
  scratch: string,
  index: number,
  curve = lossCurve(600, {}),
  stepInterval = 100,
): Promise<string> {
  const step = (index + 1) * stepInterval;
  const paths = await writeSyntheticRun({
    dir: scratch,
    model: TINY_MODEL,
    checkpoints: index + 1,
    stepInterval,
    tokensPerStep: TOKENS_PER_STEP,
    dtype: "BF16",
    seed: 3,
  });
  await addTrainerFiles(paths[index]!, step, curve);
  await rename(paths[index]!, join(run, `checkpoint-${step}`));
  await rm(scratch, { recursive: true, force: true });
  return join(run, `checkpoint-${step}`);
}

describe("pma watch", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  const fresh = () => join(tmp.dir, `case-${n++}`);
  before(async () => {
    tmp = await tempDir("pma-watch-");
  });
  after(() => tmp.cleanup());

  const base = (run: string, out: string, extra: Partial<WatchOptions> = {}): WatchOptions => ({
    run,
    out,
    interval: V,
    count: 2,
    pollMs: 10,
    settleMs: 0,
    threads: 1,
    accumulate: "f64",
    once: true,
    ...extra,
  });

  test("merges the newest window, resumes after a restart with the checkpoints it missed, evaluates raw and merged", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 3,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    const events: WatchEvent[] = [];
    const s1 = await watchRun(
      base(run, out, {
        evaluate: async (raw, merged) => ({
          raw: await distanceToOptimum(raw),
          merged: await distanceToOptimum(merged),
        }),
        onEvent: (e) => events.push(e),
      }),
    );
    assert.deepEqual([s1.merged, s1.lastStep, s1.stopped], [1, 300, "once"]);
    let j = merges(await journal(out));
    assert.equal(j.length, 1, "a first start does not backfill");
    assert.deepEqual(
      j[0]!.inputs.map((i) => i.name),
      ["checkpoint-200", "checkpoint-300"],
    );
    assert.equal(j[0]!.tokens, 300 * TOKENS_PER_STEP);
    // The evaluator saw the raw checkpoint and the merge.
    assert.equal(j[0]!.raw_loss, await distanceToOptimum(join(run, "checkpoint-300")));
    assert.equal(typeof j[0]!.merged_loss, "number");
    assert.ok(
      (j[0]!.merged_loss as number) < (j[0]!.raw_loss as number),
      "averaging cancels the synthetic noise",
    );
    assert.equal(events[0]!.type, "started");

    for (const i of [3, 4]) await addCheckpoint(run, fresh(), i);
    const s2 = await watchRun(
      base(run, out, {
        evaluate: async (raw, merged) => ({
          raw: await distanceToOptimum(raw),
          merged: await distanceToOptimum(merged),
        }),
      }),
    );
    assert.equal(s2.merged, 2);
    j = merges(await journal(out));
    assert.deepEqual(
      j.map((e) => e.step),
      [300, 400, 500],
    );
    assert.deepEqual(
      j[2]!.inputs.map((i) => i.name),
      ["checkpoint-400", "checkpoint-500"],
    );

    // OUT/merged is the newest window: bit-exact float64 SMA of checkpoints 400 and 500.
    const a = await readTensors(join(run, "checkpoint-400"));
    const b = await readTensors(join(run, "checkpoint-500"));
    for (const [name, t] of await readTensors(join(out, WATCH_MERGED_DIR))) {
      t.values.forEach((v, i) =>
        assert.equal(
          v,
          bf16ToNumber(numberToBf16(0.5 * a.get(name)!.values[i]! + 0.5 * b.get(name)!.values[i]!)),
          name,
        ),
      );
    }
    assert.equal(j[2]!.merged_loss, await distanceToOptimum(join(out, WATCH_MERGED_DIR)));
    const entries = await readdir(out);
    assert.deepEqual(
      entries.sort(),
      [WATCH_JOURNAL_FILE, WATCH_MERGED_DIR].sort(),
      "no temporaries or lock left behind",
    );

    const s3 = await watchRun(base(run, out));
    assert.equal(s3.merged, 0, "nothing new, nothing done");
  });

  test("never merges a partial checkpoint: truncated weights or a missing trainer_state.json wait until complete", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    await watchRun(base(run, out));
    const ck = await addCheckpoint(run, fresh(), 2);
    const weights = await readFile(join(ck, "model.safetensors"));
    await truncate(join(ck, "model.safetensors"), weights.length - 10);
    const waits: string[] = [];
    const s = await watchRun(
      base(run, out, { onEvent: (e) => e.type === "waiting" && waits.push(`${e.path}: ${e.reason}`) }),
    );
    assert.equal(s.merged, 0);
    assert.ok(
      waits.some((w) => w.includes("checkpoint-300")),
      waits.join("\n"),
    );

    await writeFile(join(ck, "model.safetensors"), weights);
    const state = await readFile(join(ck, "trainer_state.json"));
    await rm(join(ck, "trainer_state.json"));
    assert.equal((await watchRun(base(run, out))).merged, 0, "the Trainer writes trainer_state.json last");
    await writeFile(join(ck, "trainer_state.json"), state);
    assert.equal((await watchRun(base(run, out))).merged, 1);
    assert.deepEqual(
      merges(await journal(out)).map((e) => e.step),
      [200, 300],
    );
  });

  test("a file still growing is not merged until its size settles", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    await watchRun(base(run, out));
    // The weights validate, but a shard of a sharded checkpoint or a late byte still lands:
    // model the writer appending to a validated file during the settle wait.
    const ck = await addCheckpoint(run, fresh(), 2);
    const path = join(ck, "model.safetensors");
    const bytes = await readFile(path);
    const timer = setInterval(() => void appendFile(path, " "), 5);
    try {
      const s = await watchRun(base(run, out, { settleMs: 60 }));
      assert.equal(s.merged, 0);
    } finally {
      clearInterval(timer);
    }
    await writeFile(path, bytes);
    assert.equal((await watchRun(base(run, out, { settleMs: 30 }))).merged, 1);
    assert.deepEqual(
      merges(await journal(out)).map((e) => e.step),
      [200, 300],
    );
  });

  test("a spike in the log gets one PMA-init checkpoint; a recovered one is only recorded", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 6,
      stepInterval: 100,
      curve: lossCurve(600, { divergeAt: 420, bumpAt: 250 }),
      log: "tensorboard",
    });
    const events: WatchEvent[] = [];
    await watchRun(base(run, out, { onEvent: (e) => events.push(e) }));
    const sp = spikes(await journal(out));
    assert.deepEqual(
      sp.map((s) => [s.start_step, s.kind, s.action]),
      [
        [250, "transient", "none: recovered"],
        [420, "divergence", "pma-init"],
      ],
    );
    assert.equal(sp[1]!.init_checkpoint, join(out, "pma-init-420", "checkpoint-400"));
    assert.deepEqual(
      sp[1]!.inputs.map((i) => i.step),
      [200, 300, 400],
    );
    assert.ok((await readdir(join(out, "pma-init-420", "checkpoint-400"))).includes("pma_init.json"));
    const ev = events.find((e) => e.type === "spike" && e.init !== null);
    assert.ok(ev !== undefined && ev.type === "spike" && ev.init?.step === 400);

    await watchRun(base(run, out));
    assert.equal(spikes(await journal(out)).length, 2, "a restart does not repeat spikes");
  });

  test("a checkpoint that cannot be merged is recorded with the error and the next one is merged", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    await watchRun(base(run, out));
    // A checkpoint of another model shape: its window cannot be merged.
    const other = fresh();
    const [odd] = await writeSyntheticRun({
      dir: other,
      model: { ...TINY_MODEL, hiddenSize: 4 },
      checkpoints: 1,
      stepInterval: 300,
      tokensPerStep: TOKENS_PER_STEP,
      dtype: "BF16",
    });
    await addTrainerFiles(odd!, 300, lossCurve(600, {}));
    await cp(odd!, join(run, "checkpoint-300"), { recursive: true });
    const s = await watchRun(base(run, out, { count: 1 }));
    assert.equal(s.merged, 1, "with N=1 the odd checkpoint merges alone");
    await addCheckpoint(run, fresh(), 3);
    const s2 = await watchRun(base(run, out));
    assert.equal(s2.errors, 1);
    const j = merges(await journal(out));
    assert.match(j[2]!.error ?? "", /checkpoint-300|shape|differ/i);
    await addCheckpoint(run, fresh(), 4);
    assert.equal((await watchRun(base(run, out))).merged, 1);
  });

  test("runs until aborted, picking up checkpoints as they appear; an interrupted step is redone after a restart", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    const ac = new AbortController();
    const seen: number[] = [];
    let added = false;
    const done = watchRun(
      base(run, out, {
        once: false,
        onEvent: (e) => {
          if (e.type !== "merge") return;
          seen.push(e.entry.step);
          if (!added) {
            added = true;
            void addCheckpoint(run, fresh(), 2);
          } else ac.abort();
        },
      }),
      ac.signal,
    );
    const s = await done;
    assert.equal(s.stopped, "signal");
    assert.deepEqual(seen, [200, 300]);
    assert.ok(!(await readdir(out)).includes(".watch.lock"));

    // Interrupted while evaluating checkpoint-400: no journal line, so the restart redoes it.
    await addCheckpoint(run, fresh(), 3);
    const ac2 = new AbortController();
    const s2 = await watchRun(
      base(run, out, {
        evaluate: async () => {
          ac2.abort();
          throw new Error("evaluation cut short");
        },
      }),
      ac2.signal,
    );
    assert.equal(s2.merged, 0);
    assert.deepEqual(
      merges(await journal(out)).map((e) => e.step),
      [200, 300],
    );
    assert.equal(
      (await watchRun(base(run, out, { evaluate: async () => ({ raw: 1.5, merged: 1.25 }) }))).merged,
      1,
    );
    const j = merges(await journal(out));
    assert.deepEqual([j[2]!.step, j[2]!.raw_loss, j[2]!.merged_loss], [400, 1.5, 1.25]);
  });

  test("a journal line cut short by a crash is dropped; a second watcher on the same output is refused", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    await watchRun(base(run, out));
    await appendFile(join(out, WATCH_JOURNAL_FILE), '{"type":"merge","step":9');
    await addCheckpoint(run, fresh(), 2);
    assert.equal((await watchRun(base(run, out))).merged, 1);
    assert.deepEqual(
      merges(await journal(out)).map((e) => e.step),
      [200, 300],
    );

    const ac = new AbortController();
    const first = watchRun(base(run, out, { once: false, pollMs: 5 }), ac.signal);
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(watchRun(base(run, out)), (e: unknown) => isPmaError(e, "LOCKED"));
    ac.abort();
    await first;
    assert.equal((await watchRun(base(run, out))).stopped, "once", "the lock is released on stop");
  });

  test("a run directory that does not exist yet is waited for", async () => {
    const run = fresh();
    const out = fresh();
    const notes: string[] = [];
    const s = await watchRun(base(run, out, { onEvent: (e) => e.type === "note" && notes.push(e.message) }));
    assert.equal(s.merged, 0);
    assert.ok(
      notes.some((m) => /waiting for the run/.test(m)),
      notes.join("\n"),
    );
    await writeSpikyRun({
      dir: run,
      checkpoints: 1,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    assert.equal((await watchRun(base(run, out))).merged, 1);
  });

  test("no log yet is not an error: spikes are looked for on later polls", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 2,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    await rm(join(run, "log.jsonl"));
    // Without a log the checkpoints' trainer_state.json is the log: remove those too.
    for (const c of ["checkpoint-100", "checkpoint-200"]) await rm(join(run, c, "trainer_state.json"));
    const notes: string[] = [];
    const s = await watchRun(
      base(run, out, {
        discover: { tokensPerStep: TOKENS_PER_STEP },
        onEvent: (e) => e.type === "note" && notes.push(e.message),
      }),
    );
    assert.equal(s.merged, 1);
    assert.ok(notes.some((m) => /no usable training log/.test(m)));
    await writeRunLog(run, "pma-jsonl", lossCurve(600, { divergeAt: 150 }));
    const s2 = await watchRun(base(run, out, { discover: { tokensPerStep: TOKENS_PER_STEP } }));
    assert.equal(s2.spikes, 1);
  });

  test("--interval auto: V from the model size at the first checkpoint, reported, journaled once and kept across restarts", async () => {
    const run = fresh();
    const out = fresh();
    const notes: string[] = [];
    const onEvent = (e: WatchEvent) => e.type === "note" && notes.push(e.message);
    // No checkpoint yet: nothing to resolve V from, nothing journaled.
    await mkdir(run);
    assert.equal((await watchRun(base(run, out, { interval: "auto", init: false, onEvent }))).merged, 0);
    assert.ok(!notes.some((m) => m.includes("--interval auto")));

    // Saves 600K tokens apart: the tiny model's auto V (1M) picks every other checkpoint.
    await writeSpikyRun({
      dir: run,
      checkpoints: 4,
      stepInterval: 600,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    const scan = requireTokens(await discoverRun(run));
    const rec = recommendInterval(scan[0]!.parameters, false);
    assert.ok(
      Math.abs(rec.interval - 1200 * TOKENS_PER_STEP) < 300 * TOKENS_PER_STEP &&
        rec.interval !== 600 * TOKENS_PER_STEP,
      `V=${rec.interval}`,
    );
    assert.equal((await watchRun(base(run, out, { interval: "auto", init: false, onEvent }))).merged, 1);
    let j = await journal(out);
    assert.deepEqual(
      intervals(j).map((e) => [e.interval, e.checkpoint, e.parameters, e.moe, e.basis]),
      [[rec.interval, "checkpoint-2400", scan[0]!.parameters, false, rec.basis]],
    );
    assert.equal(j[0]!.type, "interval", "journaled before the merge that uses it");
    assert.deepEqual(
      merges(j).map((e) => [e.interval, e.inputs.map((i) => i.name)]),
      [[rec.interval, (await expectedWindows(run, rec.interval, 2))[3]]],
    );
    assert.deepEqual(
      merges(j)[0]!.inputs.map((i) => i.name),
      ["checkpoint-1200", "checkpoint-2400"],
    );
    assert.equal(notes.filter((m) => m.includes("--interval auto")).length, 1, notes.join("\n"));
    assert.ok(
      notes.some((m) => m.includes(rec.basis)),
      "the basis is reported",
    );

    // The restart takes V from the journal, not from the model again: a journal whose
    // stored V differs (as after a change to the paper table) keeps its own.
    const kept = 600 * TOKENS_PER_STEP;
    const text = await readFile(join(out, WATCH_JOURNAL_FILE), "utf8");
    await writeFile(
      join(out, WATCH_JOURNAL_FILE),
      text.replace(`"interval":${rec.interval},"basis"`, `"interval":${kept},"basis"`),
    );
    await addCheckpoint(run, fresh(), 4, lossCurve(600, {}), 600);
    notes.length = 0;
    assert.equal((await watchRun(base(run, out, { interval: "auto", init: false, onEvent }))).merged, 1);
    j = await journal(out);
    assert.equal(intervals(j).length, 1, "resolved once");
    assert.deepEqual(
      merges(j)[1]!.inputs.map((i) => i.name),
      ["checkpoint-2400", "checkpoint-3000"],
    );
    assert.ok(
      notes.some((m) => /keeping V=600K/.test(m)),
      notes.join("\n"),
    );
    assert.ok(
      notes.some((m) => /V is now 600K tokens; the journal's earlier merges used/.test(m)),
      "the change from the first merge's V is reported",
    );

    // A numeric V against a journal of auto merges is reported too.
    notes.length = 0;
    await watchRun(base(run, out, { interval: 1200 * TOKENS_PER_STEP, init: false, onEvent }));
    assert.ok(
      notes.some((m) => /V is now 1\.2M tokens; the journal's earlier merges used 600K/.test(m)),
      notes.join("\n"),
    );
  });

  test("auto V reads MoE from the tensor names", async () => {
    const dir = fresh();
    await mkdir(dir);
    const f32 = (n: number) => ({ dtype: "F32" as const, shape: [n], data: new Uint8Array(4 * n) });
    await writeSafetensors(join(dir, "model.safetensors"), [
      { name: "model.layers.0.block_sparse_moe.gate.weight", ...f32(4) },
      { name: "model.layers.0.block_sparse_moe.experts.0.w1.weight", ...f32(4) },
    ]);
    const auto = await autoInterval({ path: dir, name: "moe", parameters: 13e9 });
    assert.deepEqual([auto.moe, auto.interval], [true, recommendInterval(13e9, true).interval]);
    assert.equal(auto.interval, 8e9, "the paper's MoE 1.3B/13B point");
  });

  test("--backfill merges and evaluates at every existing checkpoint, oldest first; an interrupted backfill resumes", async () => {
    const run = fresh();
    const out = fresh();
    await writeSpikyRun({
      dir: run,
      checkpoints: 5,
      stepInterval: 100,
      curve: lossCurve(600, {}),
      log: "pma-jsonl",
    });
    const expected = await expectedWindows(run, V, 2);
    const evaluated: string[] = [];
    const ac = new AbortController();
    // Stopped while evaluating the third checkpoint: two lines journaled, the third not.
    const evaluate = async (raw: string, merged: string) => {
      evaluated.push(raw.slice(run.length + 1));
      if (evaluated.length === 3) {
        ac.abort();
        throw new Error("stopped");
      }
      return { raw: await distanceToOptimum(raw), merged: await distanceToOptimum(merged) };
    };
    const s1 = await watchRun(base(run, out, { backfill: true, init: false, evaluate }), ac.signal);
    assert.deepEqual([s1.merged, s1.lastStep, s1.stopped], [2, 200, "signal"]);
    assert.deepEqual(
      merges(await journal(out)).map((e) => e.step),
      [100, 200],
    );

    const s2 = await watchRun(base(run, out, { backfill: true, init: false, evaluate }));
    assert.equal(s2.merged, 3);
    const j = merges(await journal(out));
    assert.deepEqual(
      j.map((e) => e.step),
      [100, 200, 300, 400, 500],
      "each checkpoint once, in order",
    );
    assert.deepEqual(
      j.map((e) => e.inputs.map((i) => i.name)),
      expected,
    );
    assert.deepEqual(
      j.map((e) => e.tokens),
      [1, 2, 3, 4, 5].map((k) => k * V),
    );
    assert.deepEqual(evaluated, [
      "checkpoint-100",
      "checkpoint-200",
      "checkpoint-300",
      "checkpoint-300",
      "checkpoint-400",
      "checkpoint-500",
    ]);
    for (const e of j) assert.equal(e.raw_loss, await distanceToOptimum(join(run, e.checkpoint)));
    assert.ok(j.every((e) => typeof e.merged_loss === "number"));
    // OUT/merged is the newest window's merge.
    assert.equal(j[4]!.merged_loss, await distanceToOptimum(join(out, WATCH_MERGED_DIR)));
  });
});
