import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isPmaError } from "../src/common/errors.js";
import { type TensorboardScalar } from "../src/formats/tensorboard.js";
import { writeTensorboardScalars } from "../src/formats/tensorboard-writer.js";
import {
  parseCsvLog,
  parsePmaJsonl,
  parseTrainerState,
  readTrainingLog,
  type LogPoint,
} from "../src/trajectory/logs.js";

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "pma-logs-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const steps = (pts: LogPoint[]) => pts.map((p) => p.step);

// ---------------------------------------------------------------- JSONL

test("pma JSONL: step and eval records merge per step; a partial last line is ignored", () => {
  const lines = [
    `{"type":"step","step":1,"tokens":4096,"loss":10.5,"lr":0.0001,"grad_norm":3.5,"seconds":0.2}`,
    `{"type":"step","step":2,"tokens":8192,"loss":9.75,"lr":0.0002,"grad_norm":2.25,"seconds":0.2}`,
    `{"type":"eval","step":2,"tokens":8192,"val_loss":9.875}`,
    ``,
    `{"type":"note","text":"ignored by readers that do not know it"}`,
    `{"type":"step","step":3,"tokens":12288,"loss":null,"lr":0.0003,"grad_norm":null,"seconds":0.2}`,
  ];
  const partial = `{"type":"step","step":4,"tokens":16384,"lo`;
  const log = parsePmaJsonl(lines.join("\n") + "\n" + partial, "log.jsonl");
  assert.equal(log.format, "pma-jsonl");
  assert.equal(log.ignoredTailBytes, partial.length);
  assert.deepEqual(log.points.slice(0, 2), [
    { step: 1, tokens: 4096, loss: 10.5, lr: 0.0001, gradNorm: 3.5 },
    { step: 2, tokens: 8192, loss: 9.75, lr: 0.0002, gradNorm: 2.25, evalLoss: 9.875 },
  ]);
  // JSON.stringify writes NaN and Infinity as null: a null loss is a non-finite loss.
  assert.ok(Number.isNaN(log.points[2]!.loss));
  assert.ok(Number.isNaN(log.points[2]!.gradNorm));
  assert.equal(log.points.length, 3);
});

test("pma JSONL: a complete last line without a newline is read; Python NaN literals are accepted", () => {
  const log = parsePmaJsonl(
    `{"type":"step","step":1,"loss":NaN}\n{"type":"step","step":2,"loss":-Infinity,"grad_norm":Infinity}`,
  );
  assert.equal(log.ignoredTailBytes, 0);
  assert.ok(Number.isNaN(log.points[0]!.loss));
  assert.equal(log.points[1]!.loss, Number.NEGATIVE_INFINITY);
  assert.equal(log.points[1]!.gradNorm, Number.POSITIVE_INFINITY);
});

test("pma JSONL: a resumed run replaces the abandoned tail", () => {
  const rec = (step: number, loss: number) => `{"type":"step","step":${step},"loss":${loss}}`;
  const text =
    [
      rec(1, 5),
      rec(2, 4),
      rec(3, 9),
      rec(4, 12),
      `{"type":"eval","step":4,"val_loss":11}`,
      rec(3, 3.5),
      rec(4, 3.25),
      rec(5, 3),
    ].join("\n") + "\n";
  const log = parsePmaJsonl(text);
  assert.equal(log.restarts, 1);
  assert.deepEqual(log.points, [
    { step: 1, loss: 5 },
    { step: 2, loss: 4 },
    { step: 3, loss: 3.5 },
    { step: 4, loss: 3.25 },
    { step: 5, loss: 3 },
  ]);
});

test("pma JSONL: a broken line before the end, or a bad field, names the file and line", () => {
  assert.throws(
    () =>
      parsePmaJsonl(
        `{"type":"step","step":1,"loss":2}\n{"type":"step",\n{"type":"step","step":3,"loss":2}\n`,
        "run/log.jsonl",
      ),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("run/log.jsonl:2:"),
  );
  assert.throws(
    () => parsePmaJsonl(`\n{"type":"step","step":1,"loss":"high"}\n`, "f"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("f:2:") && e.message.includes('"loss"'),
  );
  assert.throws(
    () => parsePmaJsonl(`{"type":"step","step":1.5,"loss":2}\n`, "f"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.includes('"step"'),
  );
  assert.throws(
    () => parsePmaJsonl(`[1,2]\n{"type":"step","step":1,"loss":2}\n`, "f"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("f:1:"),
  );
});

// ---------------------------------------------------------------- trainer_state.json

/** Shaped like transformers' TrainerState.save_to_json: json.dumps(indent=2, sort_keys=True). */
function trainerState(history: object[]): string {
  return JSON.stringify(
    {
      best_metric: null,
      best_model_checkpoint: null,
      epoch: 0.05,
      eval_steps: 20,
      global_step: 40,
      is_hyper_param_search: false,
      is_local_process_zero: true,
      is_world_process_zero: true,
      log_history: history,
      logging_steps: 10,
      max_steps: 1000,
      num_input_tokens_seen: 163840,
      num_train_epochs: 1,
      save_steps: 20,
      stateful_callbacks: { TrainerControl: { args: { should_save: true }, attributes: {} } },
      total_flos: 1.2e15,
      train_batch_size: 8,
      trial_name: null,
      trial_params: null,
    },
    null,
    2,
  );
}

test("trainer_state.json: training and eval entries, tokens, unknown keys, the summary entry ignored", () => {
  const text = trainerState([
    { epoch: 0.01, grad_norm: 4.5, learning_rate: 1e-5, loss: 10.25, num_input_tokens_seen: 40960, step: 10 },
    { epoch: 0.02, grad_norm: 2.5, learning_rate: 2e-5, loss: 8.5, num_input_tokens_seen: 81920, step: 20 },
    {
      epoch: 0.02,
      eval_loss: 8.75,
      eval_runtime: 1.5,
      eval_samples_per_second: 100,
      num_input_tokens_seen: 81920,
      step: 20,
    },
    {
      epoch: 0.03,
      grad_norm: 2.0,
      learning_rate: 3e-5,
      loss: 7.0,
      num_input_tokens_seen: 122880,
      step: 30,
      some_future_key: [1],
    },
    { epoch: 0.04, grad_norm: 1.5, learning_rate: 4e-5, loss: 6.0, num_input_tokens_seen: 163840, step: 40 },
    {
      epoch: 0.04,
      step: 40,
      total_flos: 1.2e15,
      train_loss: 7.9,
      train_runtime: 100,
      train_samples_per_second: 3.2,
    },
  ]);
  const log = parseTrainerState(text, "trainer_state.json");
  assert.equal(log.format, "trainer-state");
  assert.deepEqual(log.points, [
    { step: 10, tokens: 40960, loss: 10.25, gradNorm: 4.5, lr: 1e-5 },
    { step: 20, tokens: 81920, loss: 8.5, gradNorm: 2.5, lr: 2e-5, evalLoss: 8.75 },
    { step: 30, tokens: 122880, loss: 7.0, gradNorm: 2.0, lr: 3e-5 },
    { step: 40, tokens: 163840, loss: 6.0, gradNorm: 1.5, lr: 4e-5 },
  ]);
});

test("trainer_state.json: Python's NaN for a diverged loss; tokens left out when not counted", () => {
  const text = trainerState([
    { epoch: 0.01, grad_norm: 4.5, learning_rate: 1e-5, loss: 3, num_input_tokens_seen: 0, step: 10 },
    { epoch: 0.02, grad_norm: 0, learning_rate: 2e-5, loss: 0, step: 20 },
  ])
    .replace('"loss": 0,', '"loss": NaN,')
    .replace('"grad_norm": 0,', '"grad_norm": Infinity,');
  const log = parseTrainerState(text);
  assert.deepEqual(log.points[0], { step: 10, loss: 3, gradNorm: 4.5, lr: 1e-5 });
  assert.ok(Number.isNaN(log.points[1]!.loss));
  assert.equal(log.points[1]!.gradNorm, Number.POSITIVE_INFINITY);
});

test("trainer_state.json: errors name the file and where", () => {
  assert.throws(
    () => parseTrainerState(`{"global_step": 3}`, "ts.json"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.includes("ts.json") && e.message.includes("log_history"),
  );
  assert.throws(
    () =>
      parseTrainerState(
        `{\n  "log_history": [\n    {"loss": 1, "step": 1}\n    {"loss": 2, "step": 2}\n  ]\n}`,
        "ts.json",
      ),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("ts.json:4:"),
  );
  assert.throws(
    () =>
      parseTrainerState(`{"log_history": [{"loss": 1, "step": 1}, {"loss": 2, "step": "two"}]}`, "ts.json"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.includes("log_history[1]"),
  );
});

// ---------------------------------------------------------------- CSV

test("CSV: any column order, extra and quoted columns ignored, non-finite spellings", () => {
  const text =
    [
      `run,lr,"note, with comma",loss,step,grad_norm,tokens`,
      `a,0.001,"x, ""y""",3.5,100,0.75,409600`,
      `a,0.001,,nan,200,inf,819200`,
      `a,,,,300,,`,
      `a,0.0005,z,3.25,400,0.5,1638400`,
    ].join("\r\n") + "\r\n";
  const log = parseCsvLog(text, "m.csv");
  assert.equal(log.format, "csv");
  assert.deepEqual(log.sources, { loss: "loss", gradNorm: "grad_norm", lr: "lr", tokens: "tokens" });
  assert.deepEqual(log.points[0], { step: 100, loss: 3.5, gradNorm: 0.75, lr: 0.001, tokens: 409600 });
  assert.ok(Number.isNaN(log.points[1]!.loss));
  assert.equal(log.points[1]!.gradNorm, Number.POSITIVE_INFINITY);
  assert.deepEqual(steps(log.points), [100, 200, 400]); // the all-empty row at 300 carries nothing
  assert.deepEqual(log.points[2], { step: 400, loss: 3.25, gradNorm: 0.5, lr: 0.0005, tokens: 1638400 });
});

test("CSV: TSV, alias headers, column overrides, partial last line", () => {
  const tsv =
    "iteration\tlm loss\tgrad-norm\tlearning-rate\tval_loss\n1\t9\t2\t0.1\t\n2\t8\t1.5\t0.2\t8.5\n3\t7";
  const log = parseCsvLog(tsv, "m.tsv");
  assert.deepEqual(log.points, [
    { step: 1, loss: 9, gradNorm: 2, lr: 0.1 },
    { step: 2, loss: 8, gradNorm: 1.5, lr: 0.2, evalLoss: 8.5 },
  ]);
  assert.equal(log.ignoredTailBytes, 3);
  const over = parseCsvLog("step,loss,smoothed\n1,5,4\n2,6,4.5\n", "m.csv", {
    columns: { loss: "smoothed" },
  });
  assert.deepEqual(over.points, [
    { step: 1, loss: 4 },
    { step: 2, loss: 4.5 },
  ]);
});

test("CSV: a missing step column or a bad cell names the file and line", () => {
  assert.throws(
    () => parseCsvLog("loss,lr\n1,2\n", "m.csv"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("m.csv:1:"),
  );
  assert.throws(
    () => parseCsvLog("step,loss\n1,2\n2,abc\n3,1\n", "m.csv"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("m.csv:3:"),
  );
  assert.throws(
    () => parseCsvLog("step,loss\n1,2\n2\n3,1\n", "m.csv"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.startsWith("m.csv:3:"),
  );
});

// ---------------------------------------------------------------- TensorBoard

const sc = (step: number, tag: string, value: number): TensorboardScalar => ({
  step,
  wallTime: 1e9 + step,
  tag,
  value,
});

test("TensorBoard: HF Trainer tags map to fields; values round to float32", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "events.out.tfevents.1700000000.host.1.0");
    await writeTensorboardScalars(path, [
      sc(10, "train/loss", 4.1),
      sc(10, "train/grad_norm", 1.3),
      sc(10, "train/learning_rate", 1e-4),
      sc(10, "train/epoch", 0.1),
      sc(20, "train/loss", 3.9),
      sc(20, "eval/loss", 4.0),
      sc(20, "eval/runtime", 2.5),
    ]);
    const log = await readTrainingLog(path);
    assert.equal(log.format, "tensorboard");
    assert.deepEqual(log.sources, {
      loss: "train/loss",
      gradNorm: "train/grad_norm",
      lr: "train/learning_rate",
      evalLoss: "eval/loss",
    });
    assert.deepEqual(log.points, [
      { step: 10, loss: Math.fround(4.1), gradNorm: Math.fround(1.3), lr: Math.fround(1e-4) },
      { step: 20, loss: Math.fround(3.9), evalLoss: 4 },
    ]);
  });
});

test("TensorBoard: Megatron tags, tag priority, and a per-field override", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "events.out.tfevents.1.h");
    await writeTensorboardScalars(path, [
      sc(1, "lm loss", 5),
      sc(1, "grad-norm", 2),
      sc(1, "learning-rate", 0.5),
      sc(1, "lm loss vs tokens", 99), // a different series: step axis is tokens
      sc(1, "lm loss validation", 5.5),
      sc(1, "loss", 7), // ranks above "lm loss" in the table
    ]);
    const log = await readTrainingLog(path);
    assert.deepEqual(log.points, [{ step: 1, loss: 7, gradNorm: 2, lr: 0.5, evalLoss: 5.5 }]);
    const over = await readTrainingLog(path, {
      tags: { loss: "lm loss", evalLoss: ["nope", "lm loss vs tokens"] },
    });
    assert.deepEqual(over.points, [{ step: 1, loss: 5, gradNorm: 2, lr: 0.5, evalLoss: 99 }]);
  });
});

test("TensorBoard run folder: files from a resumed run are applied in creation order", async () => {
  await withTmp(async (dir) => {
    // HF writes runs/<stamp>/; a resume opens a new stamp folder and a new file.
    await mkdir(join(dir, "runs", "Jan01_00-00-00_host"), { recursive: true });
    await mkdir(join(dir, "runs", "Jan01_05-00-00_host"), { recursive: true });
    await mkdir(join(dir, "checkpoint-200"));
    const first = [1, 2, 3, 4, 5].map((i) => sc(i * 100, "train/loss", i === 5 ? 50 : 5 - i * 0.5));
    const resumed = [4, 5, 6].map((i) => sc(i * 100, "train/loss", 5 - i * 0.5));
    // Names chosen so that name order and time order disagree: time must win.
    await writeTensorboardScalars(
      join(dir, "runs", "Jan01_05-00-00_host", "events.out.tfevents.1700000000.host.1.0"),
      first,
    );
    await writeTensorboardScalars(
      join(dir, "runs", "Jan01_00-00-00_host", "events.out.tfevents.1700018000.host.2.0"),
      resumed,
    );
    const log = await readTrainingLog(dir);
    assert.equal(log.format, "tensorboard");
    assert.equal(log.files.length, 2);
    assert.equal(log.restarts, 1);
    assert.deepEqual(
      log.points.map((p) => [p.step, p.loss]),
      [
        [100, 4.5],
        [200, 4],
        [300, 3.5],
        [400, 3],
        [500, 2.5],
        [600, 2],
      ],
    );
  });
});

// ---------------------------------------------------------------- detection

test("readTrainingLog: a run folder prefers log.jsonl, then the newest checkpoint's trainer_state", async () => {
  await withTmp(async (dir) => {
    for (const n of [200, 1000, 300]) {
      await mkdir(join(dir, `checkpoint-${n}`));
      await writeFile(
        join(dir, `checkpoint-${n}`, "trainer_state.json"),
        trainerState([{ loss: n, step: n }]),
      );
    }
    const hf = await readTrainingLog(dir);
    assert.equal(hf.format, "trainer-state");
    assert.deepEqual(hf.points, [{ step: 1000, loss: 1000 }]);
    assert.match(hf.files[0]!, /checkpoint-1000/);

    await writeFile(join(dir, "log.jsonl"), `{"type":"step","step":7,"loss":2}\n`);
    const pma = await readTrainingLog(dir);
    assert.equal(pma.format, "pma-jsonl");
    assert.deepEqual(pma.points, [{ step: 7, loss: 2 }]);
  });
});

test("readTrainingLog: formats are recognized by content when the name says nothing", async () => {
  await withTmp(async (dir) => {
    await writeFile(join(dir, "a.log"), `{"type":"step","step":1,"loss":2}\n`);
    await writeFile(join(dir, "b.txt"), trainerState([{ loss: 3, step: 5 }]));
    await writeFile(join(dir, "c.txt"), "step,loss\n4,1.5\n");
    await writeTensorboardScalars(join(dir, "d.bin"), [sc(9, "loss", 0.5)]);
    await writeFile(join(dir, "e.txt"), "hello world\n");
    assert.equal((await readTrainingLog(join(dir, "a.log"))).format, "pma-jsonl");
    assert.deepEqual((await readTrainingLog(join(dir, "b.txt"))).points, [{ step: 5, loss: 3 }]);
    assert.deepEqual((await readTrainingLog(join(dir, "c.txt"))).points, [{ step: 4, loss: 1.5 }]);
    assert.deepEqual((await readTrainingLog(join(dir, "d.bin"))).points, [{ step: 9, loss: 0.5 }]);
    await assert.rejects(
      readTrainingLog(join(dir, "e.txt")),
      (e) => isPmaError(e, "LOG_INVALID") && e.message.includes("e.txt"),
    );
    await assert.rejects(readTrainingLog(join(dir, "missing")), (e) => isPmaError(e, "IO"));
  });
});

test("readTrainingLog: a folder with a lone CSV, and an empty folder", async () => {
  await withTmp(async (dir) => {
    await assert.rejects(
      readTrainingLog(dir),
      (e) => isPmaError(e, "LOG_INVALID") && e.message.includes(dir),
    );
    await writeFile(join(dir, "wandb_export.csv"), "Step,train/loss\n1,3\n");
    assert.deepEqual((await readTrainingLog(dir)).points, [{ step: 1, loss: 3 }]);
  });
});
