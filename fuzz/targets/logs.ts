import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readTrainerState } from "../../src/formats/trainer-state.js";
import { trainerStateJson, type HistoryEntry } from "../../src/train/hf-state.js";
import { LOG_FILE, logPrefix, RunLog, type LogRecord } from "../../src/train/run-log.js";
import { readTrainingLog } from "../../src/trajectory/logs.js";
import { detectSpikes } from "../../src/trajectory/spikes.js";
import { utf8, type FuzzTarget } from "../target.js";

/** A loss curve with a spike that recovers, one that does not, and a restart. */
function curve(): { step: number; loss: number; lr: number; gradNorm: number; tokens: number }[] {
  const out = [];
  for (let step = 1; step <= 40; step++) {
    const loss = step === 12 ? 9 : step >= 30 ? 6 + step / 10 : 4 / Math.sqrt(step);
    out.push({ step, loss, lr: 3e-3, gradNorm: step === 12 ? 50 : 1, tokens: step * 4096 });
  }
  return out;
}

const JSON_WORDS = [
  '"log_history"',
  '"loss"',
  '"eval_loss"',
  '"grad_norm"',
  '"learning_rate"',
  '"step"',
  '"num_input_tokens_seen"',
  '"num_tokens"',
  '"global_step"',
  "NaN",
  "Infinity",
  "-Infinity",
  "null",
  "[[[[[[[[",
  '{"a":{"a":',
];

/**
 * trainer_state.json as Python's json.dumps writes a run that overflowed: NaN, Infinity
 * and -Infinity as bare literals (in values, arrays and nested objects), TRL's
 * num_tokens, a grad norm of 0 on skipped steps, and a string holding the same words.
 */
function pythonTrainerState(): string {
  const entries = curve().map((p) => {
    const loss = p.step >= 30 ? "NaN" : String(p.loss);
    const grad = p.step % 7 === 0 ? "0.0" : p.step >= 29 ? "Infinity" : String(p.gradNorm);
    return `    {"epoch": ${p.step / 40}, "grad_norm": ${grad}, "learning_rate": ${p.lr}, "loss": ${loss}, "num_tokens": ${p.tokens}.0, "rewards/margins": -Infinity, "step": ${p.step}}`;
  });
  return `{\n  "best_metric": NaN,\n  "best_model_checkpoint": "NaN Infinity",\n  "global_step": 40,\n  "stateful_callbacks": {"x": {"args": [Infinity, -Infinity, NaN]}},\n  "log_history": [\n${entries.join(",\n")}\n  ]\n}\n`;
}

export const trainerStateTarget: FuzzTarget = {
  name: "trainer-state",
  description:
    "trainer_state.json: readTrainerState (run discovery, merge order) and the log reader -> spike detection",
  dictionary: JSON_WORDS,
  async seeds() {
    const history: HistoryEntry[] = curve().flatMap((p) => {
      const e: HistoryEntry[] = [
        {
          epoch: p.step / 40,
          grad_norm: p.gradNorm,
          learning_rate: p.lr,
          loss: p.loss,
          step: p.step,
          num_input_tokens_seen: p.tokens,
        },
      ];
      if (p.step % 10 === 0) e.push({ epoch: p.step / 40, eval_loss: p.loss * 1.1, step: p.step });
      return e;
    });
    const state = trainerStateJson({
      step: 40,
      tokens: 40 * 4096,
      maxSteps: 100,
      epochTokens: 1e6,
      maxTokens: 4e5,
      history,
      loggingSteps: 1,
      evalSteps: 10,
      saveSteps: 10,
      trainBatchSize: 8,
      totalFlos: 1e12,
    });
    return [
      utf8(JSON.stringify(state, null, 2) + "\n"),
      utf8('{"global_step": 10, "num_input_tokens_seen": 0, "log_history": [{"loss": NaN, "step": 1}]}'),
      utf8(pythonTrainerState()),
      // No loss under a known name: the reader must refuse it with the keys it found.
      utf8(
        '{"global_step": 2, "log_history": [{"objective": 2.5, "step": 1}, {"objective": Infinity, "step": 2}]}',
      ),
    ];
  },
  async setup(work) {
    const dir = join(work, "ts");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "trainer_state.json");
    return async (data) => {
      await writeFile(file, data);
      await readTrainerState(dir);
      detectSpikes(await readTrainingLog(file));
    };
  },
};

export const jsonlTarget: FuzzTarget = {
  name: "jsonl",
  description:
    "pma's log.jsonl: the log reader -> spike detection, and the trainer's resume prefix (logPrefix)",
  dictionary: [...JSON_WORDS, '"type"', '"eval"', '"val_loss"', '"tokens"', "\n"],
  async seeds(work) {
    const dir = join(work, "seeds");
    await mkdir(dir, { recursive: true });
    const file = join(dir, LOG_FILE);
    const log = RunLog.create(file);
    for (const p of curve()) {
      const rec: LogRecord = {
        type: "step",
        step: p.step,
        tokens: p.tokens,
        loss: p.step === 35 ? Number.NaN : p.loss,
        lr: p.lr,
        grad_norm: p.gradNorm,
        seconds: 0.1,
      };
      log.write(rec);
      if (p.step % 10 === 0)
        log.write({
          type: "eval",
          step: p.step,
          tokens: p.tokens,
          val_loss: p.loss,
          val_tokens: 1024,
          seconds: 0.5,
        });
      // A restart: the run resumed from step 20 after step 25.
      if (p.step === 25)
        for (let s = 21; s <= 22; s++)
          log.write({
            type: "step",
            step: s,
            tokens: s * 4096,
            loss: 2,
            lr: 1e-3,
            grad_norm: 1,
            seconds: 0.1,
          });
    }
    log.close();
    const text = await readFile(file);
    // A live log ends inside a line.
    return [text, text.subarray(0, text.length - 7)];
  },
  async setup(work) {
    const dir = join(work, "jl");
    await mkdir(dir, { recursive: true });
    const file = join(dir, LOG_FILE);
    return async (data) => {
      await writeFile(file, data);
      detectSpikes(await readTrainingLog(file));
      logPrefix(file, 20);
    };
  },
};

/**
 * pma writes no CSV logs; the seeds are the curve above in the two shapes CSV exports
 * take (Megatron-style names with a tokens column, and a W&B-style export with quoted
 * cells and non-finite spellings).
 */
export const csvTarget: FuzzTarget = {
  name: "csv",
  description: "CSV/TSV training logs: header detection, quoting, number cells -> spike detection",
  dictionary: [
    ...[
      "step",
      "loss",
      "lm loss",
      "grad_norm",
      "lr",
      "eval_loss",
      "tokens",
      "nan",
      "inf",
      "-inf",
      '"',
      '""',
      ",",
      "\t",
      "\r\n",
      "\uFEFF",
    ],
    ...[
      "_step",
      "trainer/global_step",
      "train_loss_step",
      "train_loss_epoch",
      "val_loss",
      "reduced_train_loss",
      "train/CE loss",
      "num_tokens",
      "consumed_samples",
      ",,,,,,,,",
    ],
  ],
  async seeds() {
    const rows = curve();
    const a =
      [
        "step,lm loss,grad-norm,learning-rate,consumed-tokens",
        ...rows.map((r) => `${r.step},${r.loss},${r.gradNorm},${r.lr},${r.tokens}`),
      ].join("\n") + "\n";
    const b = [
      '"_step","train/loss","eval/loss","note"',
      ...rows.map(
        (r) =>
          `${r.step},${r.step === 35 ? "nan" : r.loss},${r.step % 10 === 0 ? r.loss : ""},"a, ""quoted"" cell"`,
      ),
    ].join("\r\n");
    const c = ["step\tloss\tlr", ...rows.map((r) => `${r.step}\t${r.loss}\t${r.lr}`)].join("\n");
    // Lightning's CSVLogger: sorted columns, sparse rows (step rows, validation rows, epoch rows).
    const d =
      [
        "epoch,step,train_loss_epoch,train_loss_step,val_loss",
        ...rows.map((r) => (r.step % 10 === 0 ? `0,${r.step},,,${r.loss}` : `0,${r.step},,${r.loss},`)),
      ].join("\n") + "\n";
    // A wide W&B export: 3,000 columns, most empty, the loss among them.
    const names = Array.from({ length: 3000 }, (_, i) => `"metric/${i}"`);
    names[1500] = '"train/loss"';
    const e =
      [
        `"_step","trainer/global_step",${names.join(",")}`,
        ...rows.map(
          (r, k) =>
            `${k},${r.step},${names.map((_, i) => (i === 1500 ? r.loss : i % 97 === 0 ? "0.5" : "")).join(",")}`,
        ),
      ].join("\n") + "\n";
    return [utf8(a), utf8(b), utf8(c), utf8(d), utf8(e)];
  },
  async setup(work) {
    const dir = join(work, "csv");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "metrics.csv");
    return async (data) => {
      await writeFile(file, data);
      detectSpikes(await readTrainingLog(file));
    };
  },
};
