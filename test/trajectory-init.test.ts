import assert from "node:assert/strict";
import { mkdir, readdir, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { bf16ToNumber, numberToBf16 } from "../src/tensor/bf16.js";
import { explainInit } from "../src/trajectory/init-explain.js";
import { INIT_RECORD_FILE, pmaInit, type InitRecord } from "../src/trajectory/init.js";
import { tempDir, treeHash } from "./helpers/fixtures.js";
import {
  lossCurve,
  readJson,
  readTensors,
  TRAINER_FILES,
  writeSpikyRun,
  type LogKind,
} from "./helpers/spiky-run.js";

const STEPS = 600;

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

describe("pma init (PMA-init)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  const fresh = () => join(tmp.dir, `case-${n++}`);
  before(async () => {
    tmp = await tempDir("pma-init-");
  });
  after(() => tmp.cleanup());

  async function run(log: LogKind, curve = lossCurve(STEPS, { divergeAt: 420 })): Promise<string> {
    const dir = fresh();
    await writeSpikyRun({ dir, checkpoints: 6, stepInterval: 100, curve, log });
    return dir;
  }

  test("finds the divergence in a pma log, merges the 3 checkpoints before it, bit-exact against float64", async () => {
    const dir = await run("pma-jsonl");
    const hashBefore = await treeHash(dir);
    const out = fresh();
    const r = await pmaInit({ run: dir, out, accumulate: "f64", threads: 1 });

    assert.equal(r.reason.kind, "spike");
    assert.equal(r.reason.kind === "spike" && r.reason.event.startStep, 420);
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      [200, 300, 400],
    );
    assert.equal(r.checkpoint, join(out, "checkpoint-400"));
    assert.equal(r.step, 400);
    assert.equal(r.tokens, 400_000);

    // out = sum c_i x_i in float64, oldest first, rounded once to bf16.
    const inputs = await Promise.all([200, 300, 400].map((s) => readTensors(join(dir, `checkpoint-${s}`))));
    const merged = await readTensors(r.checkpoint);
    assert.equal(merged.size, inputs[0]!.size);
    for (const [name, t] of merged) {
      assert.equal(t.dtype, "BF16");
      for (let i = 0; i < t.values.length; i++) {
        let sum = 0;
        for (const inp of inputs) sum += (1 / 3) * inp.get(name)!.values[i]!;
        assert.equal(t.values[i], bf16ToNumber(numberToBf16(sum)), `${name}[${i}]`);
      }
    }
    // The trainer's state is the latest healthy checkpoint's, byte for byte.
    for (const f of [...TRAINER_FILES, "trainer_state.json", "config.json", "tokenizer.json"]) {
      assert.deepEqual(
        await readFile(join(r.checkpoint, f)),
        await readFile(join(dir, "checkpoint-400", f)),
        f,
      );
    }
    assert.deepEqual(
      await files(r.checkpoint),
      [
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        INIT_RECORD_FILE,
        "pma_merge.json",
        "rng_state.pth",
        "scheduler.pt",
        "tokenizer.json",
        "trainer_state.json",
        "training_args.bin",
      ].sort(),
    );
    const written = (await readJson(join(r.checkpoint, INIT_RECORD_FILE))) as unknown as InitRecord;
    assert.deepEqual(
      written.checkpoints.map((c) => c.coefficient),
      r.merge.coefficients,
    );
    assert.equal(written.optimizer, "latest");
    assert.deepEqual(await treeHash(dir), hashBefore, "the run is not touched");
    assert.deepEqual(await files(out), ["checkpoint-400"], "nothing but the checkpoint in --out");

    const text = explainInit(r);
    assert.match(text, /divergence at step 420/);
    assert.match(text, /peak loss 6\.\d+/);
    assert.match(text, /0\.333333 {2}checkpoint-200 {2}\(step 200/);
    assert.match(text, /resume it: trainer\.train\(resume_from_checkpoint=".*checkpoint-400"\)/);
  });

  for (const log of ["trainer-state", "tensorboard"] as const) {
    test(`finds the spike in a ${log} log`, async () => {
      const dir = await run(log);
      const r = await pmaInit({ run: dir, out: fresh(), threads: 1 });
      assert.equal(r.log?.format, log);
      assert.equal(r.reason.kind === "spike" && r.reason.event.startStep, 420);
      assert.deepEqual(
        r.checkpoints.map((c) => c.step),
        [200, 300, 400],
      );
    });
  }

  test("a spike right after a checkpoint excludes it: the loss at step s measures the weights of step s-1", async () => {
    const dir = await run("pma-jsonl", lossCurve(STEPS, { divergeAt: 401 }));
    const r = await pmaInit({ run: dir, out: fresh(), count: 2, threads: 1 });
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      [200, 300],
    );
    assert.equal(r.step, 300);
    const loose = await pmaInit({ run: dir, out: fresh(), count: 2, margin: 0, threads: 1 });
    assert.deepEqual(
      loose.checkpoints.map((c) => c.step),
      [300, 400],
    );
  });

  test("--before STEP takes checkpoints strictly before it, and --count fewer than exist notes the shortfall", async () => {
    const dir = await run("pma-jsonl");
    const r = await pmaInit({
      run: dir,
      out: fresh(),
      before: 300,
      count: 3,
      method: { method: "ema", alpha: 0.5 },
      threads: 1,
    });
    assert.equal(r.reason.kind, "step");
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      [100, 200],
    );
    assert.deepEqual(r.merge.coefficients, [0.5, 0.5]);
    assert.ok(
      r.notes.some((x) => /only 2 complete checkpoint/.test(x)),
      r.notes.join("; "),
    );
    assert.equal(
      r.reason.kind === "step" && r.reason.lossAtStep !== null,
      true,
      "the loss at STEP comes from the log",
    );
  });

  test("--optimizer reset leaves out optimizer.pt and scheduler.pt together, keeps RNG and trainer state", async () => {
    const dir = await run("pma-jsonl");
    await mkdir(join(dir, "checkpoint-400", "global_step400"));
    const r = await pmaInit({ run: dir, out: fresh(), optimizer: "reset", threads: 1 });
    const got = await files(r.checkpoint);
    assert.ok(!got.includes("optimizer.pt") && !got.includes("scheduler.pt"), got.join(","));
    for (const f of ["rng_state.pth", "training_args.bin", "trainer_state.json"])
      assert.ok(got.includes(f), f);
    assert.deepEqual(r.omitted.map((o) => o.name).sort(), [
      "global_step400/",
      "optimizer.pt",
      "scheduler.pt",
    ]);
    assert.match(explainInit(r), /LR schedule restarts/);
  });

  test("a partial checkpoint before the spike is skipped, not merged", async () => {
    const dir = await run("pma-jsonl");
    await truncate(join(dir, "checkpoint-400", "model.safetensors"), 100);
    const r = await pmaInit({ run: dir, out: fresh(), threads: 1 });
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      [100, 200, 300],
    );
    assert.ok(r.notes.some((x) => x.includes("checkpoint-400")));
  });

  test("no unrecovered spike: says so and suggests --before; a recovered bump is named", async () => {
    const dir = await run("pma-jsonl", lossCurve(STEPS, { bumpAt: 250 }));
    await assert.rejects(pmaInit({ run: dir, out: fresh() }), (e: unknown) => {
      assert.ok(isPmaError(e, "USAGE"));
      assert.match(e.message, /no unrecovered loss spike/);
      assert.match(e.message, /transient at step 25\d/);
      assert.match(e.message, /--before STEP/);
      return true;
    });
    const quiet = await run("pma-jsonl", lossCurve(STEPS, {}));
    await assert.rejects(pmaInit({ run: quiet, out: fresh() }), /no unrecovered loss spike.*--before STEP/s);
  });

  test("an existing checkpoint is refused without force and replaced with it; writing into the run is refused", async () => {
    const dir = await run("pma-jsonl");
    const out = fresh();
    await pmaInit({ run: dir, out, threads: 1 });
    await assert.rejects(pmaInit({ run: dir, out, threads: 1 }), (e: unknown) => isPmaError(e, "EXISTS"));
    const again = await pmaInit({ run: dir, out, force: true, optimizer: "reset", threads: 1 });
    assert.ok(!(await files(again.checkpoint)).includes("optimizer.pt"));
    await assert.rejects(
      pmaInit({ run: dir, out: dir, force: true, threads: 1 }),
      /checkpoint of the run itself/,
    );
  });

  test("an aborted init leaves nothing behind", async () => {
    const dir = await run("pma-jsonl");
    const out = fresh();
    await mkdir(out);
    await writeFile(join(out, "keep.txt"), "x");
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(pmaInit({ run: dir, out, signal: ac.signal, threads: 1 }), (e: unknown) =>
      isPmaError(e, "INTERRUPTED"),
    );
    assert.deepEqual(await files(out), ["keep.txt"]);
  });
});
