/**
 * Logs as other trainers write them, with their exact tag, column and key names
 * (docs/logs.md): each must give its loss (and step, tokens, eval loss) series, and a log
 * whose loss has a name pma does not know must fail with the names present and the flag
 * that picks one, never come back empty.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { readTrainerState } from "../src/formats/trainer-state.js";
import type { TensorboardScalar } from "../src/formats/tensorboard.js";
import { writeTensorboardScalars } from "../src/formats/tensorboard-writer.js";
import { readTrainingLog, type TrainingLog } from "../src/trajectory/logs.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { lossCurve, writeSpikyRun } from "./helpers/spiky-run.js";
import { writeTf2EventFile } from "./helpers/tf2-events.js";

const series = (log: TrainingLog, f: "loss" | "evalLoss" | "tokens" | "gradNorm" | "lr") =>
  log.points.filter((p) => p[f] !== undefined).map((p) => [p.step, p[f]] as [number, number]);

const scalars = (tags: Record<string, (step: number) => number>, steps: number[]): TensorboardScalar[] =>
  steps.flatMap((step) =>
    Object.entries(tags).map(([tag, f]) => ({ tag, step, value: f(step), wallTime: 1.7e9 + step })),
  );

const f32 = (x: number) => Math.fround(x);

describe("training logs of other trainers, by their exact names", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  const dir = async () => {
    const d = join(tmp.dir, `log${n++}`);
    await mkdir(d, { recursive: true });
    return d;
  };
  before(async () => {
    tmp = await tempDir("pma-log-names-");
  });
  after(() => tmp.cleanup());

  test("Lightning CSVLogger: train_loss_step, train_loss_epoch, val_loss (sorted columns, sparse rows)", async () => {
    const d = await dir();
    // on_step and on_epoch logging: step rows, then per epoch a validation row and an epoch row.
    const rows = ["epoch,step,train_loss_epoch,train_loss_step,val_loss"];
    for (let epoch = 0; epoch < 2; epoch++) {
      for (let k = 1; k <= 2; k++)
        rows.push(`${epoch},${epoch * 100 + k * 50 - 1},,${(3 - epoch - k * 0.1).toFixed(4)},`);
      rows.push(`${epoch},${epoch * 100 + 99},,,${(2.9 - epoch).toFixed(4)}`);
      rows.push(`${epoch},${epoch * 100 + 99},${(2.95 - epoch).toFixed(4)},,`);
    }
    await writeFile(join(d, "metrics.csv"), rows.join("\n") + "\n");
    const log = await readTrainingLog(d);
    assert.equal(log.sources?.loss, "train_loss_step");
    assert.deepEqual(series(log, "loss"), [
      [49, 2.9],
      [99, 2.8],
      [149, 1.9],
      [199, 1.8],
    ]);
    assert.deepEqual(series(log, "evalLoss"), [
      [99, 2.9],
      [199, 1.9],
    ]);
    // With only epoch losses, those are the loss.
    await writeFile(
      join(d, "metrics.csv"),
      "epoch,step,train_loss_epoch,val_loss\n0,99,2.95,\n0,99,,2.9\n1,199,1.95,\n",
    );
    assert.deepEqual(series(await readTrainingLog(d), "loss"), [
      [99, 2.95],
      [199, 1.95],
    ]);
  });

  test("Keras TensorBoard callback: batch_loss and epoch_loss in train/, epoch_loss and evaluation_loss_vs_iterations in validation/", async () => {
    const d = await dir();
    const steps = [0, 1, 2, 3, 4, 5, 6, 7];
    await writeTf2EventFile(join(d, "logs", "train", "events.out.tfevents.1700000000.host.1.v2"), [
      ...steps.map((s) => ({ tag: "batch_loss", step: s, value: 3 - s * 0.1 })),
      ...[0, 1].map((e) => ({ tag: "epoch_loss", step: e, value: 2.8 - e })),
      ...[0, 1].map((e) => ({ tag: "epoch_accuracy", step: e, value: 0.5 })),
    ]);
    await writeTf2EventFile(join(d, "logs", "validation", "events.out.tfevents.1700000001.host.1.v2"), [
      ...[0, 1].map((e) => ({ tag: "epoch_loss", step: e, value: 2.9 - e })),
      ...[0, 1].map((e) => ({ tag: "evaluation_loss_vs_iterations", step: 4 * e + 3, value: 2.9 - e })),
    ]);
    const log = await readTrainingLog(join(d, "logs"));
    assert.equal(log.sources?.loss, "batch_loss");
    assert.equal(log.sources?.evalLoss, "validation/evaluation_loss_vs_iterations");
    assert.deepEqual(
      series(log, "loss"),
      steps.map((s) => [s, f32(3 - s * 0.1)]),
    );
    assert.deepEqual(series(log, "evalLoss"), [
      [3, f32(2.9)],
      [7, f32(1.9)],
    ]);
    // update_freq="epoch": only epoch_loss, and the validation one must not pass for it.
    await rm(join(d, "logs"), { recursive: true });
    await writeTf2EventFile(
      join(d, "logs", "train", "events.out.tfevents.1700000000.host.1.v2"),
      [0, 1, 2].map((e) => ({ tag: "epoch_loss", step: e, value: 2.8 - e })),
    );
    await writeTf2EventFile(
      join(d, "logs", "validation", "events.out.tfevents.1700000001.host.1.v2"),
      [0, 1, 2].map((e) => ({ tag: "epoch_loss", step: e, value: 9 })),
    );
    const epochs = await readTrainingLog(join(d, "logs"));
    assert.deepEqual(series(epochs, "loss"), [
      [0, f32(2.8)],
      [1, f32(1.8)],
      [2, f32(0.8)],
    ]);
    assert.deepEqual(series(epochs, "evalLoss"), [
      [0, 9],
      [1, 9],
      [2, 9],
    ]);
  });

  test("TRL: num_tokens in log_history is the token count", async () => {
    const d = await dir();
    const history = [10, 20, 30].map((step) => ({
      loss: 1 + 1 / step,
      grad_norm: 0.5,
      learning_rate: 1e-5,
      num_tokens: step * 4096,
      mean_token_accuracy: 0.6,
      epoch: step / 100,
      step,
    }));
    await writeFile(
      join(d, "trainer_state.json"),
      JSON.stringify({ global_step: 30, log_history: history }, null, 2),
    );
    const log = await readTrainingLog(d);
    assert.deepEqual(series(log, "tokens"), [
      [10, 40960],
      [20, 81920],
      [30, 122880],
    ]);
    assert.equal(series(log, "loss").length, 3);
    // Run discovery counts a TRL checkpoint's tokens from the entry at its step.
    assert.equal((await readTrainerState(d))?.tokensSeen, 122880);
    await writeFile(
      join(d, "trainer_state.json"),
      JSON.stringify({ global_step: 35, num_input_tokens_seen: 0, log_history: history }, null, 2),
    );
    assert.equal(
      (await readTrainerState(d))?.tokensSeen,
      undefined,
      "no entry at the checkpoint's step: unknown, not a guess",
    );
  });

  const tbCases: {
    name: string;
    tags: Record<string, (s: number) => number>;
    loss: string;
    evalLoss?: string;
    gradNorm?: string;
    tokens?: string;
  }[] = [
    {
      name: "Megatron-LM",
      tags: {
        "lm loss": (s) => 3 - s / 1000,
        "lm loss vs samples": (s) => 3 - s / 1000,
        "lm loss validation": (s) => 3.1 - s / 1000,
        "grad-norm": () => 0.7,
        "learning-rate": () => 3e-4,
      },
      loss: "lm loss",
      evalLoss: "lm loss validation",
      gradNorm: "grad-norm",
    },
    {
      name: "NeMo",
      tags: {
        reduced_train_loss: (s) => 3 - s / 1000,
        val_loss: (s) => 3.2 - s / 1000,
        lr: () => 1e-4,
        global_step: (s) => s,
        consumed_samples: (s) => s * 8,
        grad_norm: () => 1.1,
      },
      loss: "reduced_train_loss",
      evalLoss: "val_loss",
      gradNorm: "grad_norm",
    },
    {
      name: "torchtitan",
      tags: {
        "loss_metrics/global_avg_loss": (s) => 3 - s / 1000,
        "loss_metrics/global_max_loss": (s) => 3.5 - s / 1000,
        grad_norm: () => 0.9,
        lr: () => 8e-4,
      },
      loss: "loss_metrics/global_avg_loss",
      gradNorm: "grad_norm",
    },
    {
      name: "OLMo",
      tags: {
        "train/CE loss": (s) => 3 - s / 1000,
        "train/PPL": (s) => Math.exp(3 - s / 1000),
        "optim/total grad norm": () => 0.4,
        "optim/LR (group 0)": () => 4e-4,
      },
      loss: "train/CE loss",
    },
  ];
  for (const c of tbCases) {
    test(`${c.name} TensorBoard tags: ${c.loss}`, async () => {
      const d = await dir();
      const steps = [100, 200, 300];
      await writeTensorboardScalars(join(d, "events.out.tfevents.1700000000.node0"), scalars(c.tags, steps));
      const log = await readTrainingLog(d);
      assert.equal(log.sources?.loss, c.loss);
      assert.deepEqual(
        series(log, "loss"),
        steps.map((s) => [s, f32(c.tags[c.loss]!(s))]),
      );
      if (c.evalLoss)
        assert.deepEqual(
          series(log, "evalLoss"),
          steps.map((s) => [s, f32(c.tags[c.evalLoss!]!(s))]),
        );
      if (c.gradNorm) assert.equal(log.sources?.gradNorm, c.gradNorm);
    });
  }

  test("W&B CSV exports: _step, trainer/global_step, train/global_step; OLMo's train/CE loss; num_tokens and tokens columns", async () => {
    const d = await dir();
    const file = join(d, "wandb_export.csv");
    // W&B's own _step counts log calls; the trainer's step is the one that matters when present.
    await writeFile(
      file,
      '"_step","_runtime","_timestamp","trainer/global_step","train_loss","num_tokens"\n0,1.5,1700000000,10,2.5,40960\n1,3.1,1700000002,20,2.4,81920\n',
    );
    let log = await readTrainingLog(file);
    assert.deepEqual(series(log, "loss"), [
      [10, 2.5],
      [20, 2.4],
    ]);
    assert.deepEqual(series(log, "tokens"), [
      [10, 40960],
      [20, 81920],
    ]);
    await writeFile(file, "_step,_runtime,train/CE loss,tokens\n0,1.5,2.5,1000\n1,3.1,2.4,2000\n");
    log = await readTrainingLog(file);
    assert.deepEqual(series(log, "loss"), [
      [0, 2.5],
      [1, 2.4],
    ]);
    assert.deepEqual(series(log, "tokens"), [
      [0, 1000],
      [1, 2000],
    ]);
    await writeFile(file, "train/global_step,_step,train/loss\n5,0,2.5\n10,1,2.4\n");
    assert.deepEqual(series(await readTrainingLog(file), "loss"), [
      [5, 2.5],
      [10, 2.4],
    ]);
    await writeFile(file, "global_step,loss\n5,2.5\n");
    assert.deepEqual(series(await readTrainingLog(file), "loss"), [[5, 2.5]]);
    // Megatron-style: consumed_samples as the only x axis.
    await writeFile(file, "consumed_samples,lm loss\n512,2.5\n1024,2.4\n");
    assert.deepEqual(series(await readTrainingLog(file), "loss"), [
      [512, 2.5],
      [1024, 2.4],
    ]);
  });

  test("an unknown loss name fails with the names present and --loss-key; --loss-key reads it", async () => {
    const d = await dir();
    await writeTensorboardScalars(
      join(d, "events.out.tfevents.1700000000.node0"),
      scalars({ "objective/train": (s) => 3 - s / 1000, accuracy: () => 0.5 }, [1, 2, 3]),
    );
    await assert.rejects(readTrainingLog(d), (e: unknown) => {
      assert.ok(isPmaError(e, "LOG_INVALID"));
      assert.match(e.message, /events\.out\.tfevents\.1700000000\.node0: no training-loss series found/);
      assert.match(e.message, /"accuracy", "objective\/train"/);
      assert.match(e.message, /--loss-key NAME/);
      return true;
    });
    assert.deepEqual(
      series(await readTrainingLog(d, { lossKey: "objective/train" }), "loss").map(([s]) => s),
      [1, 2, 3],
    );

    const csv = join(d, "log.csv");
    await writeFile(csv, "step,objective,acc\n1,2.5,0.1\n");
    await assert.rejects(
      readTrainingLog(csv),
      /log\.csv: no training-loss series found.*"step", "objective", "acc".*--loss-key/s,
    );
    assert.deepEqual(series(await readTrainingLog(csv, { lossKey: "objective" }), "loss"), [[1, 2.5]]);

    const state = join(d, "trainer_state.json");
    await writeFile(state, JSON.stringify({ log_history: [{ step: 1, objective: 2.5, epoch: 0.1 }] }));
    await assert.rejects(
      readTrainingLog(state),
      /trainer_state\.json: no training-loss series found \(log_history entries have no "loss"\).*"step", "objective", "epoch".*--loss-key/s,
    );
    assert.deepEqual(series(await readTrainingLog(state, { lossKey: "objective" }), "loss"), [[1, 2.5]]);

    // A tag list is capped and every name cut short: a hostile file cannot flood the terminal.
    const wide = join(d, "wide.csv");
    await writeFile(
      wide,
      ["step", ...Array.from({ length: 500 }, (_, i) => `${"x".repeat(300)}${i}`)].join(",") + "\n",
    );
    await assert.rejects(
      readTrainingLog(wide),
      (e: unknown) => isPmaError(e) && e.message.length < 5000 && /\(501 in all\)/.test(e.message),
    );
  });

  test("pma init: an unknown loss tag is an error naming the tags; --loss-key picks it", async () => {
    const run = join(tmp.dir, "run");
    const curve = lossCurve(600, { divergeAt: 420 });
    await writeSpikyRun({ dir: run, checkpoints: 6, stepInterval: 100, curve, log: "pma-jsonl" });
    await rm(join(run, "log.jsonl"));
    for (let i = 1; i <= 6; i++)
      await writeFile(
        join(run, `checkpoint-${i * 100}`, "trainer_state.json"),
        JSON.stringify({ global_step: i * 100, num_input_tokens_seen: i * 100_000 }),
      );
    await mkdir(join(run, "tb"));
    await writeTensorboardScalars(
      join(run, "tb", "events.out.tfevents.1700000000.node0"),
      curve.map((p) => ({ tag: "objective/train", step: p.step, value: p.loss, wallTime: 1.7e9 + p.step })),
    );
    const pma = (...args: string[]) => spawnSync(process.execPath, [PMA_CLI, ...args], { encoding: "utf8" });
    const bad = pma("init", run, "--out", join(tmp.dir, "i1"), "--threads", "1");
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /no training-loss series found.*"objective\/train".*--loss-key/s);
    assert.doesNotMatch(bad.stderr, /at .*\.js:\d+/);
    const good = pma(
      "init",
      run,
      "--out",
      join(tmp.dir, "i2"),
      "--threads",
      "1",
      "--loss-key",
      "objective/train",
      "--json",
    );
    assert.equal(good.status, 0, good.stderr);
    assert.equal(JSON.parse(good.stdout).reason.event.startStep, 420);
  });
});
