// End to end: a tiny pma training run whose learning rate is raised 100x mid-run spikes;
// pma init finds the spike, merges the checkpoints before it, and `pma train --resume`
// of the restart checkpoint continues from the merged weights (not from the master
// weights of the checkpoint whose state it carries), with the chosen optimizer state.
import assert from "node:assert/strict";
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Evaluator } from "../src/eval/evaluate.js";
import { createWasmBackend, type MatmulBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { WindowSampler } from "../src/data/batches.js";
import { OPTIMIZER_FILE, PMA_STATE_FILE, readPmaState } from "../src/train/checkpoint.js";
import { prepareRunData } from "../src/data/run-data.js";
import { train, type TrainOptions } from "../src/train/loop.js";
import { readWeights } from "../src/train/weights-io.js";
import { explainInit } from "../src/trajectory/init-explain.js";
import { pmaInit } from "../src/trajectory/init.js";
import { PMA_OPTIMIZER_FILE, PMA_STATE_FILE as INIT_STATE_FILE } from "../src/trajectory/pma-train-state.js";
import { watchRun } from "../src/trajectory/watch.js";
import { tempDir } from "./helpers/fixtures.js";

const TPS = 4 * 32 * 2; // micro_batch x seq_len x grad_accum
const RAISE = 20; // steps at the healthy LR; the LR is raised for step 21 on
const END = 32;

const config = {
  model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2 },
  data: { vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2 },
  training: { max_tokens: END * TPS, seed: 3 },
  schedule: { lr: 1e-2, warmup_tokens: 3 * TPS },
  eval: { every_tokens: 0 },
  // bf16 checkpoints carry f32 master weights in the optimizer file: the case where
  // copying the state verbatim would silently undo the merge.
  checkpointing: { every_tokens: 4 * TPS, dtype: "bf16" },
};

interface StepLine {
  type: string;
  step: number;
  loss: number;
}

async function steps(run: string): Promise<StepLine[]> {
  const text = await readFile(join(run, "log.jsonl"), "utf8");
  return text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as StepLine)
    .filter((l) => l.type === "step");
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("PMA-init on a pma training run", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let backend: MatmulBackend;
  const dir = (name: string) => join(tmp.dir, name);
  const run = (opts: TrainOptions) => train({ cacheDir: dir("cache"), backend, ...opts });

  before(async () => {
    tmp = await tempDir("pma-init-train-");
    backend = await createWasmBackend();
    // The healthy run, stopped at step 20...
    const stop = new AbortController();
    await run({
      config,
      out: dir("healthy"),
      signal: stop.signal,
      onEvent: (e) => e.type === "step" && e.record.step === RAISE && stop.abort(),
    });
    // ...continued with the LR raised 100x (a fork, so it goes to its own directory; it
    // inherits the log up to step 20), then given the healthy checkpoints, so "spiked"
    // is the run as it would be had the LR been raised in place.
    await run({
      resume: join(dir("healthy"), `checkpoint-${RAISE}`),
      config: { schedule: { lr: 1, warmup_tokens: 0 } },
      out: dir("spiked"),
    });
    for (const s of [4, 8, 12, 16, 20])
      await cp(join(dir("healthy"), `checkpoint-${s}`), join(dir("spiked"), `checkpoint-${s}`), {
        recursive: true,
      });
  });
  after(async () => {
    backend.dispose();
    await tmp.cleanup();
  });

  test("trajectory and train agree on the state file names", () => {
    assert.equal(INIT_STATE_FILE, PMA_STATE_FILE);
    assert.equal(PMA_OPTIMIZER_FILE, OPTIMIZER_FILE);
  });

  test("the spike is found, the restart checkpoint resumes from the merged weights, and the run recovers", async () => {
    const spiked = await steps(dir("spiked"));
    assert.ok(
      mean(spiked.slice(-4).map((l) => l.loss)) > spiked[RAISE - 1]!.loss + 1,
      "the raised LR breaks the run",
    );

    const r = await pmaInit({ run: dir("spiked"), out: dir("restart"), threads: 1 });
    assert.equal(r.layout, "pma");
    assert.ok(r.reason.kind === "spike");
    const ev = r.reason.event;
    // The loss of step 21 was computed before the first high-LR update, so the first bad
    // loss is step 22. (A grad-norm blip just before it may move the onset earlier: the
    // detector then stays further back, never closer.)
    assert.equal(ev.startStep, RAISE + 2);
    assert.ok(ev.lastHealthyStep !== null && ev.lastHealthyStep <= RAISE + 1);
    const limit = Math.min(ev.lastHealthyStep, ev.onsetStep - 1) - 1;
    const expected = [4, 8, 12, 16, 20].filter((s) => s <= limit).slice(-3);
    assert.equal(expected.length, 3, `limit ${limit}`);
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      expected,
    );
    const at = expected[2]!;
    assert.ok(at <= RAISE, "every merged checkpoint is from before the LR was raised");
    const ck = join(dir("restart"), `checkpoint-${at}`);
    assert.equal(r.checkpoint, ck);
    assert.equal(r.step, at);
    const text = explainInit(r);
    assert.match(text, new RegExp(`resume it: pma train --resume ${ck}`));
    assert.match(text, /written for the restart: pma_state\.json, pma_optimizer\.safetensors/);
    assert.equal(r.log_prefix, join(dir("restart"), "log.jsonl"));

    // The restart's pma state: the moments of checkpoint-20 without its master weights.
    const state = (await readPmaState(ck))!;
    assert.equal(state.global_step, at);
    assert.equal(state.optimizer.step, at);
    assert.equal(state.optimizer.master_weights, false);
    assert.equal(state.lineage.at(-1)!.weights, ck);
    const moments = await readWeights(join(ck, OPTIMIZER_FILE));
    const parent = await readWeights(join(dir("healthy"), `checkpoint-${at}`, OPTIMIZER_FILE));
    assert.deepEqual(
      [...moments.tensors.keys()].sort(),
      [...parent.tensors.keys()].filter((n) => /\.exp_avg(_sq)?$/.test(n)).sort(),
    );
    for (const [name, t] of moments.tensors) assert.deepEqual(t.data, parent.tensors.get(name)!.data, name);

    const resumed = await run({ resume: ck });
    assert.equal(resumed.runDir, dir("restart"), "a plain resume continues in the restart's directory");
    assert.equal(resumed.step, END);
    const log = await steps(dir("restart"));
    assert.deepEqual(
      log.map((l) => l.step),
      Array.from({ length: END }, (_, i) => i + 1),
      "the log continues the original's",
    );
    assert.deepEqual(log.slice(0, at), spiked.slice(0, at));

    // The loss logged for the first resumed step scores the weights training resumed
    // with, on that step's batch (a pure function of seed and step): recompute it from
    // the merged weights.
    const data = prepareRunData(state.config.data, dir("cache"));
    const { seq_len: S, micro_batch: B, grad_accum: A } = state.config.data;
    const sampler = new WindowSampler(data.train, S, state.config.data.seed);
    const lossOf = async (weightsDir: string): Promise<number> => {
      const model = createModel(state.model_config, backend, { batch: B, seq: S });
      model.params.load((await readWeights(weightsDir)).tensors);
      const toks = new Int32Array(B * S);
      const tgts = new Int32Array(B * S);
      let sum = 0;
      for (let a = 0; a < A; a++) {
        sampler.fill(at, a, toks, tgts);
        sum += model.forward(toks, tgts);
      }
      return sum / A;
    };
    assert.equal(log[at]!.loss, await lossOf(ck), "training resumed from the merged weights");
    assert.notEqual(log[at]!.loss, spiked[at]!.loss, "not from the latest healthy checkpoint's own weights");

    const end = (await readPmaState(join(dir("restart"), `checkpoint-${END}`)))!;
    assert.equal(end.optimizer.step, END, "AdamW continued from the latest healthy checkpoint's step");
    assert.ok(
      mean(log.slice(-4).map((l) => l.loss)) < mean(spiked.slice(-4).map((l) => l.loss)) - 1,
      "the restarted run is back on track",
    );
  });

  test("--optimizer reset resumes with a fresh AdamW at the same step and data position", async () => {
    const r = await pmaInit({
      run: dir("spiked"),
      out: dir("restart-reset"),
      optimizer: "reset",
      threads: 1,
    });
    const ck = r.checkpoint;
    const state = (await readPmaState(ck))!;
    assert.equal(state.optimizer.step, 0);
    assert.equal(state.lineage.at(-1)!.fresh_optimizer, true);
    for (const t of (await readWeights(join(ck, OPTIMIZER_FILE))).tensors.values())
      assert.ok(
        t.data.every((x) => x === 0),
        t.name,
      );
    const resumed = await run({ resume: ck });
    assert.equal(resumed.step, END);
    const end = (await readPmaState(join(dir("restart-reset"), `checkpoint-${END}`)))!;
    assert.equal(end.optimizer.step, END - r.step, "AdamW counted only the steps since the restart");
    const log = await steps(dir("restart-reset"));
    // Same weights and batch at the first resumed step as the restart with the latest moments.
    assert.equal(log[r.step]!.loss, (await steps(dir("restart")))[r.step]!.loss);
    assert.ok(log.every((l) => Number.isFinite(l.loss)));
  });

  test("pma watch on the run writes the same restart checkpoint and scores raw and merged alike", async () => {
    const evaluator = new Evaluator({ backend, cacheDir: dir("cache") });
    try {
      const out = dir("watch");
      const s = await watchRun({
        run: dir("spiked"),
        out,
        interval: 4 * TPS,
        count: 3,
        settleMs: 0,
        threads: 1,
        once: true,
        evaluate: async (raw, merged) => {
          const a = await evaluator.evaluate(raw, { maxTokens: 2048 });
          const b = await evaluator.evaluate(merged, { maxTokens: 2048, seq: a.seq, corpus: a.corpus });
          return { raw: a.loss, merged: b.loss };
        },
      });
      assert.deepEqual([s.spikes, s.merged, s.errors], [1, 1, 0]);
      const lines = (await readFile(join(out, "watch.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const merge = lines.find((l) => l["type"] === "merge")!;
      assert.equal(merge["step"], END);
      assert.equal(
        merge["raw_loss"],
        (await evaluator.evaluate(join(dir("spiked"), `checkpoint-${END}`), { maxTokens: 2048 })).loss,
      );
      assert.equal(typeof merge["merged_loss"], "number");
      const spike = lines.find((l) => l["type"] === "spike")!;
      const init = spike["init_checkpoint"] as string;
      assert.equal(init.startsWith(join(out, `pma-init-${spike["start_step"] as number}`)), true, init);
      const twin = join(dir("restart"), init.slice(init.lastIndexOf("checkpoint-")));
      for (const f of ["model.safetensors", OPTIMIZER_FILE])
        assert.deepEqual(await readFile(join(init, f)), await readFile(join(twin, f)), f);
    } finally {
      evaluator.close();
    }
  });
});
