// A tiny end-to-end run on Brown for a dense and an MoE model: train, checkpoint, resume
// bit-identically, fork, evaluate, merge the checkpoints and evaluate the merge.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { Evaluator } from "../src/eval/evaluate.js";
import { merge } from "../src/merge/merger.js";
import { fromHfConfig } from "../src/nn/config.js";
import { createWasmBackend } from "../src/nn/kernels/index.js";
import type { MatmulBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { lrAt } from "../src/nn/schedule.js";
import { bf16ToNumber, numberToBf16 } from "../src/tensor/bf16.js";
import { readPmaState } from "../src/train/checkpoint.js";
import { scheduleSpec } from "../src/train/config.js";
import { HeldoutEvaluator } from "../src/train/heldout.js";
import { train, type TrainOptions, type TrainResult } from "../src/train/loop.js";
import { SplitTokens } from "../src/eval/split-tokens.js";
import { loadTokenizer } from "../src/data/tokenizer-json.js";
import { readWeights } from "../src/train/weights-io.js";
import { parsePmaJsonl } from "../src/trajectory/logs.js";
import { discoverRun } from "../src/trajectory/run.js";
import { tempDir } from "./helpers/fixtures.js";

const K = 12; // steps before the interruption; runs go to 2K
const TPS = 4 * 32 * 2; // micro_batch x seq_len x grad_accum

function tinyConfig(moe: boolean): Record<string, unknown> {
  return {
    model: moe
      ? {
          preset: "moe",
          hidden_size: 32,
          intermediate_size: 32,
          num_hidden_layers: 2,
          num_attention_heads: 2,
          num_local_experts: 4,
        }
      : { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2 },
    data: { vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2 },
    training: { max_tokens: 2 * K * TPS, seed: 3 },
    schedule: { lr: 1e-2, warmup_tokens: 3 * TPS },
    eval: { every_tokens: 6 * TPS, max_tokens: 2048 },
    checkpointing: { every_tokens: 6 * TPS, dtype: moe ? "bf16" : "f32" },
    log: { history_every_steps: 5 },
  };
}

interface LogLine {
  type: string;
  step: number;
  tokens: number;
  loss?: number;
  lr?: number;
  val_loss?: number;
  seconds?: number;
}

function readLog(run: string): LogLine[] {
  return readFileSync(join(run, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as LogLine);
}

/** The log without wall times, which are the only thing allowed to differ between two runs. */
function timeless(run: string): unknown[] {
  return readLog(run).map(({ seconds: _s, ...rest }) => rest);
}

function historyOf(ckpt: string): unknown[] {
  const h = (
    JSON.parse(readFileSync(join(ckpt, "trainer_state.json"), "utf8")) as {
      log_history: Record<string, number>[];
    }
  ).log_history;
  return h.map(({ eval_runtime: _r, ...rest }) => rest);
}

function sameBytes(a: string, b: string, file: string): void {
  assert.ok(
    readFileSync(join(a, file)).equals(readFileSync(join(b, file))),
    `${file} differs between ${a} and ${b}`,
  );
}

for (const moe of [false, true]) {
  describe(`${moe ? "MoE" : "dense"}: train, checkpoint, resume, fork, evaluate, merge`, () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let backend: MatmulBackend;
    let full: TrainResult;
    let evaluator: Evaluator;
    const dir = (name: string) => join(tmp.dir, name);
    const run = (opts: TrainOptions) => train({ cacheDir: dir("cache"), backend, ...opts });

    before(async () => {
      tmp = await tempDir("pma-train-e2e-");
      backend = await createWasmBackend();
      evaluator = new Evaluator({ backend, cacheDir: dir("cache") });
      full = await run({ config: tinyConfig(moe), out: dir("full") });
    });
    after(async () => {
      evaluator.close();
      backend.dispose();
      await tmp.cleanup();
    });

    test("the loss falls and the log has one line per step and per evaluation", () => {
      assert.equal(full.step, 2 * K);
      assert.equal(full.tokens, 2 * K * TPS);
      const log = readLog(dir("full"));
      const steps = log.filter((l) => l.type === "step");
      const evals = log.filter((l) => l.type === "eval");
      assert.deepEqual(
        steps.map((l) => l.step),
        Array.from({ length: 2 * K }, (_, i) => i + 1),
      );
      assert.deepEqual(
        evals.map((l) => l.step),
        [6, 12, 18, 24],
      );
      for (const l of steps) assert.equal(l.tokens, l.step * TPS);
      // Untrained, the loss is about ln(vocab); a working loop must be well below after 24 steps.
      assert.ok(Math.abs(steps[0]!.loss! - Math.log(512)) < 0.1, `first loss ${steps[0]!.loss}`);
      assert.ok(
        steps.at(-1)!.loss! < steps[0]!.loss! - 0.4,
        `loss ${steps[0]!.loss} -> ${steps.at(-1)!.loss}`,
      );
      assert.ok(
        evals.at(-1)!.val_loss! < evals[0]!.val_loss!,
        `val ${evals[0]!.val_loss} -> ${evals.at(-1)!.val_loss}`,
      );
      // The warmup is linear to step 3, then constant.
      assert.deepEqual(
        steps.slice(0, 4).map((l) => l.lr),
        [1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2],
      );
      // pma's trajectory reader follows the same log.
      const parsed = parsePmaJsonl(readFileSync(join(dir("full"), "log.jsonl"), "utf8"));
      assert.equal(parsed.points.length, 2 * K);
      assert.equal(parsed.points.filter((p) => p.evalLoss !== undefined).length, 4);
    });

    test("checkpoints are Hugging Face folders that run discovery orders by tokens", async () => {
      const scan = await discoverRun(dir("full"));
      assert.deepEqual(
        scan.checkpoints.map((c) => [c.step, c.tokens]),
        [6, 12, 18, 24].map((s) => [s, s * TPS]),
      );
      assert.deepEqual(scan.skipped, []);
      const ck = join(dir("full"), "checkpoint-12");
      const hf = JSON.parse(await readFile(join(ck, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual(hf["architectures"], [moe ? "MixtralForCausalLM" : "LlamaForCausalLM"]);
      assert.equal(hf["torch_dtype"], moe ? "bfloat16" : "float32");
      const state = await readPmaState(ck);
      assert.deepEqual(fromHfConfig(hf), state!.model_config);
      const tok = loadTokenizer(join(ck, "tokenizer.json"));
      assert.equal(tok.vocabSize, 512);
      assert.equal(state!.model_config.eos_token_id, tok.specials.get("<|endoftext|>"));
      const ts = JSON.parse(await readFile(join(ck, "trainer_state.json"), "utf8")) as Record<
        string,
        unknown
      >;
      assert.equal(ts["global_step"], 12);
      assert.equal(ts["num_input_tokens_seen"], 12 * TPS);
      assert.equal(ts["max_steps"], 2 * K);
      const history = ts["log_history"] as Record<string, number>[];
      const trainEntries = history.filter((h) => "loss" in h);
      assert.deepEqual(
        trainEntries.map((h) => h["step"]),
        [5, 10],
      );
      for (const h of trainEntries)
        for (const k of ["loss", "grad_norm", "learning_rate", "epoch", "num_input_tokens_seen"])
          assert.equal(typeof h[k], "number", k);
      // The entry at step 10 averages the losses of steps 6..10.
      const log = readLog(dir("full")).filter((l) => l.type === "step" && l.step >= 6 && l.step <= 10);
      const mean = log.reduce((s, l) => s + l.loss!, 0) / 5;
      assert.ok(Math.abs(trainEntries[1]!["loss"]! - mean) < 1e-12);
      assert.deepEqual(
        history.filter((h) => "eval_loss" in h).map((h) => h["step"]),
        [6, 12],
      );
      const weights = await readWeights(ck);
      assert.equal(weights.dtype, moe ? "BF16" : "F32");
    });

    test("training K steps, stopping, and resuming for K equals training 2K steps bit for bit", async () => {
      const stop = new AbortController();
      const first = await run({
        config: tinyConfig(moe),
        out: dir("split"),
        signal: stop.signal,
        onEvent: (e) => {
          if (e.type === "step" && e.record.step === K) stop.abort();
        },
      });
      assert.equal(first.interrupted, true);
      assert.equal(first.step, K);
      assert.equal(first.checkpoints.at(-1), join(dir("split"), `checkpoint-${K}`));
      // Resuming the run directory picks its latest checkpoint and continues in place.
      const second = await run({ resume: dir("split") });
      assert.equal(second.runDir, dir("split"));
      assert.equal(second.step, 2 * K);
      const a = join(dir("full"), `checkpoint-${2 * K}`);
      const b = join(dir("split"), `checkpoint-${2 * K}`);
      sameBytes(a, b, "model.safetensors");
      sameBytes(a, b, "pma_optimizer.safetensors");
      assert.deepEqual(timeless(dir("split")), timeless(dir("full")));
      assert.deepEqual(historyOf(b), historyOf(a));
    });

    test("evaluating a checkpoint gives the loss the trainer logged; a bf16 checkpoint is scored as bf16", async () => {
      const ck = join(dir("full"), `checkpoint-${2 * K}`);
      const r = await evaluator.evaluate(ck, { maxTokens: 2048 });
      const logged = readLog(dir("full"))
        .filter((l) => l.type === "eval")
        .at(-1)!;
      assert.equal(r.tokens, 2048);
      assert.equal(r.architecture, moe ? "MixtralForCausalLM" : "LlamaForCausalLM");
      assert.equal(r.step, 2 * K);
      assert.equal(r.tokensSeen, 2 * K * TPS);
      assert.ok(Math.abs(r.perplexity - Math.exp(r.loss)) < 1e-9 * r.perplexity);
      // Reference: the f32 master weights from pma_optimizer.safetensors, rounded to the stored dtype.
      const state = (await readPmaState(ck))!;
      const master = await readWeights(join(ck, "pma_optimizer.safetensors"), {
        only: (n) => !n.endsWith(".exp_avg") && !n.endsWith(".exp_avg_sq"),
      });
      const ref = createModel(state.model_config, backend, { batch: 16, seq: 32 });
      if (moe) {
        for (const t of master.tensors.values())
          t.data.forEach((v, i) => (t.data[i] = bf16ToNumber(numberToBf16(v))));
        ref.params.load(master.tensors);
      } else {
        ref.params.load((await readWeights(ck)).tensors);
        assert.equal(
          r.loss,
          logged.val_loss,
          "f32 checkpoint evaluates to the trainer's own validation loss",
        );
      }
      const stream = new SplitTokens(dir("cache")).get("brown", "validation", join(ck, "tokenizer.json"));
      assert.equal(r.loss, new HeldoutEvaluator(ref, stream, 2048).run().loss);
      // Deterministic, and the test split is another number.
      assert.equal((await evaluator.evaluate(ck, { maxTokens: 2048 })).loss, r.loss);
      const t = await evaluator.evaluate(ck, { split: "test", maxTokens: 2048 });
      assert.notEqual(t.loss, r.loss);
    });

    test("a fork with a new schedule starts at the checkpoint's tokens and sees the parent's batches", async () => {
      const schedule = { kind: "wsd", stable_tokens: 0, decay_tokens: K * TPS };
      await assert.rejects(
        run({ resume: join(dir("full"), `checkpoint-${K}`), config: { schedule } }),
        (e: unknown) => isPmaError(e, "USAGE") && /fork.*--out/.test(e.message),
      );
      const fork = await run({
        resume: join(dir("full"), `checkpoint-${K}`),
        config: { schedule },
        out: dir("fork"),
      });
      assert.equal(fork.step, 2 * K);
      const parent = readLog(dir("full")).filter((l) => l.type === "step");
      const child = readLog(dir("fork")).filter((l) => l.type === "step");
      // The fork's log starts with the parent's first K steps.
      assert.deepEqual(
        child.slice(0, K).map(({ seconds: _s, ...l }) => l),
        parent.slice(0, K).map(({ seconds: _s, ...l }) => l),
      );
      // Step K+1: same weights and batch as the parent (same loss), the new schedule's LR.
      assert.equal(child[K]!.loss, parent[K]!.loss);
      const state = (await readPmaState(join(dir("fork"), `checkpoint-${2 * K}`)))!;
      assert.equal(state.config.schedule.start_tokens, K * TPS);
      assert.equal(child[K]!.lr, lrAt(scheduleSpec(state.config.schedule), (K + 1) * TPS));
      assert.equal(child.at(-1)!.lr, 0);
      assert.equal(state.lineage.length, 1);
      assert.equal(state.lineage[0]!.step, K);
      assert.notEqual(child[K + 1]!.loss, parent[K + 1]!.loss);
    });

    test("resuming from weights alone starts a fresh optimizer at the checkpoint's step", async () => {
      const fresh = await run({
        resume: join(dir("full"), `checkpoint-${K}`),
        weightsOnly: true,
        out: dir("fresh"),
      });
      assert.equal(fresh.step, 2 * K);
      const state = (await readPmaState(join(dir("fresh"), `checkpoint-${2 * K}`)))!;
      assert.equal(state.global_step, 2 * K);
      assert.equal(state.optimizer.step, K, "AdamW counted only the steps since the restart");
      assert.equal(state.lineage.at(-1)!.fresh_optimizer, true);
      const parent = readLog(dir("full")).filter((l) => l.type === "step");
      const child = readLog(dir("fresh")).filter((l) => l.type === "step");
      assert.equal(child[K]!.loss, parent[K]!.loss);
      assert.notEqual(child[K + 1]!.loss, parent[K + 1]!.loss);
    });

    test("pma merge of the checkpoints evaluates, and training resumes from it with a checkpoint's optimizer", async () => {
      const inputs = [12, 18, 24].map((s) => join(dir("full"), `checkpoint-${s}`));
      await merge({ inputs, out: dir("merged") });
      const m = await evaluator.evaluate(dir("merged"), { maxTokens: 2048 });
      assert.equal(m.step, null);
      assert.equal(m.dtype, moe ? "BF16" : "F32");
      assert.ok(Number.isFinite(m.loss) && m.loss < Math.log(512) - 0.3, `merged loss ${m.loss}`);

      await assert.rejects(
        run({ resume: dir("merged"), out: dir("init") }),
        (e: unknown) => isPmaError(e, "USAGE") && /--optimizer-from/.test(e.message),
      );
      const init = await run({
        resume: dir("merged"),
        optimizerFrom: join(dir("full"), "checkpoint-18"),
        out: dir("init"),
      });
      assert.equal(init.step, 2 * K);
      const log = readLog(dir("init")).filter((l) => l.type === "step");
      assert.equal(log[18]!.step, 19);
      // The first step scores the merged weights on the parent's batch 19: not the parent's loss.
      assert.notEqual(log[18]!.loss, readLog(dir("full")).filter((l) => l.type === "step")[18]!.loss);
      const state = (await readPmaState(join(dir("init"), `checkpoint-${2 * K}`)))!;
      assert.equal(state.lineage.at(-1)!.weights, dir("merged"));
      assert.equal(state.lineage.at(-1)!.state, join(dir("full"), "checkpoint-18"));
      assert.equal(state.optimizer.step, 2 * K, "the optimizer continued from checkpoint-18");
    });

    test("a resume refuses a different model, and a new run refuses a non-empty directory", async () => {
      const cfg = tinyConfig(moe);
      await assert.rejects(
        run({
          resume: join(dir("full"), `checkpoint-${K}`),
          config: { model: { ...(cfg["model"] as object), hidden_size: 64 } },
          out: dir("other"),
        }),
        (e: unknown) =>
          isPmaError(e, "CONFIG_INVALID") &&
          e.message.includes("model.hidden_size cannot change when resuming"),
      );
      await assert.rejects(run({ config: cfg, out: dir("full") }), (e: unknown) => isPmaError(e, "EXISTS"));
    });
  });
}
