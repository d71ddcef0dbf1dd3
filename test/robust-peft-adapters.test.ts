/**
 * PEFT (LoRA) checkpoints as checkpoints: merge, merge --run, plan, init and watch take
 * checkpoint-N/ folders holding adapter_model.safetensors + adapter_config.json, and the
 * merge is an adapter again (merged adapter weights, the config copied, the record says so).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { merge } from "../src/merge/merger.js";
import { discoverRun } from "../src/trajectory/run.js";
import { tempDir } from "./helpers/fixtures.js";
import { adapterConfig, loraTensors, writeAdapterCheckpoint, writePeftRun } from "./helpers/peft-run.js";
import { PMA_CLI } from "./helpers/processes.js";
import { lossCurve, readTensors, writeSpikyRun } from "./helpers/spiky-run.js";

const pma = (...args: string[]) => spawnSync(process.execPath, [PMA_CLI, ...args], { encoding: "utf8" });

/** The float64 SMA (sum of c_i x_i, c_i = 1/N, oldest first) of the fixture's tensors, rounded to f32 once. */
function expectedMean(steps: number[]): Map<string, number[]> {
  const sets = steps.map((s) => loraTensors(s));
  const out = new Map<string, number[]>();
  for (const [name, t] of sets[0]!) {
    out.set(
      name,
      t.values.map((_, i) =>
        Math.fround(sets.reduce((a, set) => a + (1 / steps.length) * set.get(name)!.values[i]!, 0)),
      ),
    );
  }
  return out;
}

async function assertAdapterMerge(dir: string, steps: number[], newest: string): Promise<void> {
  const files = (await readdir(dir)).sort();
  assert.ok(
    files.includes("adapter_model.safetensors") && files.includes("adapter_config.json"),
    files.join(", "),
  );
  assert.ok(!files.includes("model.safetensors"), "no full-model file");
  assert.equal(
    await readFile(join(dir, "adapter_config.json"), "utf8"),
    await readFile(join(newest, "adapter_config.json"), "utf8"),
  );
  const got = await readTensors(dir);
  const want = expectedMean(steps);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, values] of want) assert.deepEqual([...got.get(name)!.values], values, name);
}

describe("PEFT adapter checkpoints", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string;
  let paths: string[];
  before(async () => {
    tmp = await tempDir("pma-peft-");
    run = join(tmp.dir, "lora-run");
    paths = await writePeftRun(run, 6, 100, lossCurve(600, { divergeAt: 420 }));
  });
  after(() => tmp.cleanup());

  test("an adapter folder opens as a checkpoint (folder or file), and run discovery finds them all", async () => {
    for (const p of [paths[0]!, join(paths[0]!, "adapter_model.safetensors")]) {
      const ck = await openCheckpointTensors(p);
      assert.equal(ck.adapter, true);
      assert.equal(ck.tensors.size, 8);
      await ck.close();
    }
    const scan = await discoverRun(run);
    assert.deepEqual(scan.skipped, []);
    assert.deepEqual(
      scan.checkpoints.map((c) => c.step),
      [100, 200, 300, 400, 500, 600],
    );
  });

  test("merge: the float64 mean of the adapters, adapter_config.json copied, pma_merge.json says adapter", async () => {
    const out = join(tmp.dir, "merged");
    const rec = await merge({
      inputs: [paths[3]!, paths[4]!, paths[5]!],
      out,
      accumulate: "f64",
      threads: 1,
    });
    assert.equal(rec.adapter, true);
    assert.deepEqual(rec.files, ["adapter_model.safetensors"]);
    await assertAdapterMerge(out, [400, 500, 600], paths[5]!);
    const saved = JSON.parse(await readFile(join(out, "pma_merge.json"), "utf8"));
    assert.equal(saved.adapter, true);
    // The merge is itself an adapter checkpoint: it opens as one.
    const ck = await openCheckpointTensors(out);
    assert.equal(ck.adapter, true);
    await ck.close();
  });

  test("the CLI: merge, plan, merge --run, init and watch on the adapter run", async () => {
    const m = pma(
      "merge",
      paths[4]!,
      paths[5]!,
      "--out",
      join(tmp.dir, "cli-merge"),
      "--accumulate",
      "f64",
      "--threads",
      "1",
    );
    assert.equal(m.status, 0, m.stderr);
    assert.match(m.stdout, /a PEFT adapter \(adapter_model\.safetensors with adapter_config\.json\)/);
    await assertAdapterMerge(join(tmp.dir, "cli-merge"), [500, 600], paths[5]!);

    const plan = pma("plan", run, "--interval", "200K", "--count", "3");
    assert.equal(plan.status, 0, plan.stderr);
    assert.match(plan.stdout, /checkpoint-600/);

    const runMerge = join(tmp.dir, "cli-run-merge");
    const rm_ = pma(
      "merge",
      "--run",
      run,
      "--interval",
      "200K",
      "--count",
      "3",
      "--out",
      runMerge,
      "--accumulate",
      "f64",
      "--threads",
      "1",
      "--json",
    );
    assert.equal(rm_.status, 0, rm_.stderr);
    const rec = JSON.parse(rm_.stdout) as { adapter?: boolean; inputs: { step: number }[] };
    assert.equal(rec.adapter, true);
    await assertAdapterMerge(
      runMerge,
      rec.inputs.map((i) => i.step),
      paths[5]!,
    );

    const initOut = join(tmp.dir, "cli-init");
    const init = pma("init", run, "--out", initOut, "--accumulate", "f64", "--threads", "1", "--json");
    assert.equal(init.status, 0, init.stderr);
    const ir = JSON.parse(init.stdout) as {
      checkpoints: { step: number }[];
      copied: string[];
      omitted: { name: string }[];
    };
    assert.deepEqual(
      ir.checkpoints.map((c) => c.step),
      [200, 300, 400],
    );
    const restart = join(initOut, "checkpoint-400");
    await assertAdapterMerge(restart, [200, 300, 400], paths[3]!);
    // The Trainer's files of the latest healthy checkpoint come along; its own adapter weights do not.
    assert.deepEqual(ir.copied.sort(), [
      "README.md",
      "optimizer.pt",
      "rng_state.pth",
      "scheduler.pt",
      "trainer_state.json",
      "training_args.bin",
    ]);
    assert.equal(await readFile(join(restart, "optimizer.pt"), "utf8"), "optimizer.pt of step 400\n");

    const watchOut = join(tmp.dir, "cli-watch");
    const w = pma(
      "watch",
      run,
      "--interval",
      "200K",
      "--count",
      "2",
      "--backfill",
      "--once",
      "--out",
      watchOut,
      "--settle",
      "0",
      "--threads",
      "1",
      "--json",
    );
    assert.equal(w.status, 0, w.stderr);
    assert.ok(existsSync(join(watchOut, "merged", "adapter_model.safetensors")));
    assert.ok(existsSync(join(watchOut, "merged", "adapter_config.json")));
    assert.ok(
      existsSync(join(watchOut, "pma-init-420", "checkpoint-400", "adapter_model.safetensors")),
      "the PMA-init on the spike is an adapter too",
    );
  });

  test("refused: adapters mixed with full models, differently configured adapters, an adapter without its config, --shard-size", async () => {
    const full = join(tmp.dir, "full-run");
    const [fullCk] = await writeSpikyRun({
      dir: full,
      checkpoints: 1,
      stepInterval: 100,
      curve: lossCurve(100, {}),
      log: "pma-jsonl",
    });
    await assert.rejects(
      merge({ inputs: [paths[0]!, fullCk!], out: join(tmp.dir, "x1"), keepOrder: true }),
      (e: unknown) => isPmaError(e, "CHECKPOINT_MISMATCH"),
    );

    const other = join(tmp.dir, "alpha32", "checkpoint-700");
    await writeAdapterCheckpoint(other, 700, lossCurve(700, {}), adapterConfig({ lora_alpha: 32 }));
    await assert.rejects(
      merge({ inputs: [paths[0]!, other], out: join(tmp.dir, "x2") }),
      (e: unknown) => isPmaError(e, "CHECKPOINT_MISMATCH") && /"lora_alpha" is 32, but 16/.test(e.message),
    );

    await rm(join(other, "adapter_config.json"));
    await assert.rejects(
      openCheckpointTensors(other),
      (e: unknown) =>
        isPmaError(e) && /has adapter_model\.safetensors but no adapter_config\.json/.test(e.message),
    );

    const s = pma("merge", paths[0]!, paths[1]!, "--out", join(tmp.dir, "x3"), "--shard-size", "1KB");
    assert.equal(s.status, 2, s.stderr);
    assert.match(s.stderr, /--shard-size does not apply to PEFT adapters/);
    assert.ok(
      !existsSync(join(tmp.dir, "x1")) &&
        !existsSync(join(tmp.dir, "x2")) &&
        !existsSync(join(tmp.dir, "x3")),
      "no output left behind",
    );
    await writeFile(join(tmp.dir, "unused"), "");
  });
});
