import { basename, dirname, join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";
import { TUNE_METHODS, type TuneMethod } from "../tune/candidates.js";
import { tuneRun, type TuneResult } from "../tune/tune.js";
import { parseCommandArgs, type Command } from "./command.js";

const usage = `usage: pma tune RUN --data FILE --budget K [--out DIR] [options]

Searches merges of RUN's checkpoints for the lowest loss on your held-out text, within K
evaluations: the newest checkpoint alone, then windows of N checkpoints V apart on the
run's checkpoint grid with SMA (every window when they fit the budget, else Bayesian
optimisation), then WMA and WSM (1-sqrt, cosine) on the best window, then EMA's alpha by
Bayesian optimisation. SMA and WMA windows are scored from float64 prefix sums kept on
disk (a few reads per tensor, whatever N), the others by weighted reads; every
evaluation is cached, so a rerun, or a larger budget, reuses the earlier ones.

The text is a .txt (documents separated by blank lines) or .jsonl file, tokenised with
the newest checkpoint's tokenizer.json (as pma eval --data). Models: Llama/Mixtral
safetensors checkpoints, scored by pma's engine.

Writes DIR (default RUN-pma-tune), atomically:
  best/              the winning merge, written by the exact merger (--accumulate f64)
  candidates.tsv     every candidate: method, V, N, window, loss, bits per byte
  merge-command.txt  the pma merge command that reproduces best/
  index.html         loss over V x N, methods side by side, the search's progress
  tune.json          all of the above as data

options:
  --data FILE           held-out text (.txt or .jsonl)
  --budget K            evaluations (default 30)
  --out DIR             output folder (default RUN-pma-tune); --force replaces it
  --text-field F        .jsonl: the field holding the text (default text)
  --tokenizer FILE      a tokenizer.json instead of the newest checkpoint's
  --seq N               window length (default: the run's seq_len, else the model's context)
  --max-tokens N        score an evenly spaced subset of about N tokens (default: all)
  --batch N             sequences per forward pass (default 16)
  --ends K              also let windows end at the K newest checkpoints (default 1: the newest)
  --max-count N         largest N considered (default: all that fit)
  --methods LIST        besides SMA, any of wma,ema,wsm-1-sqrt,wsm-cosine (default all)
  --json                print the result (tune.json) instead of a summary

example:
  pma tune runs/7b --data heldout.jsonl --text-field text --budget 30 --seq 1024 --max-tokens 200k`;

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new PmaError("USAGE", `${flag} must be a positive integer (got '${v}')`);
  return n;
}

export function parseMethods(v: string | undefined): TuneMethod[] | undefined {
  if (v === undefined) return undefined;
  const list = v
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  for (const m of list)
    if (!(TUNE_METHODS as readonly string[]).includes(m))
      throw new PmaError("USAGE", `--methods: unknown method '${m}' (use ${TUNE_METHODS.join(", ")})`);
  return list as TuneMethod[];
}

export function describeTune(r: TuneResult): string {
  const e = r.best;
  const c = e.candidate;
  const what =
    c.count === 1
      ? "the newest checkpoint alone"
      : `${c.method}${c.method === "ema" ? ` alpha ${c.alpha}` : ""} over N=${c.count}${e.intervalTokens !== null ? `, V=${e.intervalTokens.toLocaleString("en-US")} tokens` : `, every ${c.stride}`}`;
  const margin = r.baseline.loss - e.loss;
  const lines = [
    `best: ${what}, loss ${e.loss.toFixed(4)} (${e.bitsPerByte.toFixed(4)} bits per byte), ${margin >= 0 ? `${margin.toFixed(4)} below` : `${(-margin).toFixed(4)} above`} the newest checkpoint (${r.baseline.loss.toFixed(4)})`,
    `${r.evaluations.length} evaluations (${r.computed} computed, ${r.evaluations.length + r.compared.length - r.computed} from the cache); best found at evaluation ${r.bestAt}; ${r.tokensScored.toLocaleString("en-US")} tokens scored each; ${r.seconds.toFixed(1)} s`,
    ...r.compared.map(
      (x) => `compare ${x.label}: loss ${x.loss.toFixed(4)} (best is ${(x.loss - e.loss).toFixed(4)} lower)`,
    ),
    `wrote ${r.out}/ (best/, candidates.tsv, index.html, tune.json)`,
    `reproduce: ${r.mergeCommand}`,
  ];
  return lines.join("\n") + "\n";
}

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        data: { type: "string" },
        budget: { type: "string" },
        out: { type: "string" },
        force: { type: "boolean" },
        "text-field": { type: "string" },
        tokenizer: { type: "string" },
        seq: { type: "string" },
        "max-tokens": { type: "string" },
        batch: { type: "string" },
        ends: { type: "string" },
        "max-count": { type: "string" },
        methods: { type: "string" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length !== 1) throw new PmaError("USAGE", `give one run directory\n\n${usage}`);
    if (values.data === undefined)
      throw new PmaError("USAGE", `--data FILE is required: the held-out text to tune on\n\n${usage}`);
    const run = resolve(positionals[0]!);
    const seq = positiveInt(values.seq, "--seq");
    const batch = positiveInt(values.batch, "--batch");
    const ends = positiveInt(values.ends, "--ends");
    const maxCount = positiveInt(values["max-count"], "--max-count");
    const methods = parseMethods(values.methods);
    const { renderTunePage } = await import("../report/tune-page.js");
    const result = await tuneRun({
      run,
      data: values.data,
      budget: positiveInt(values.budget, "--budget") ?? 30,
      out: values.out ?? join(dirname(run), `${basename(run)}-pma-tune`),
      force: values.force === true,
      maxTokens: values["max-tokens"] === undefined ? 0 : parseTokens(values["max-tokens"], "--max-tokens"),
      renderPage: renderTunePage,
      ...(values["text-field"] !== undefined ? { textField: values["text-field"] } : {}),
      ...(values.tokenizer !== undefined ? { tokenizer: values.tokenizer } : {}),
      ...(seq !== undefined ? { seq } : {}),
      ...(batch !== undefined ? { batch } : {}),
      ...(ends !== undefined ? { ends } : {}),
      ...(maxCount !== undefined ? { maxCount } : {}),
      ...(methods !== undefined ? { methods } : {}),
      onEvaluation: (e, done, budget) => {
        if (values.json !== true && process.stderr.isTTY)
          process.stderr.write(
            `\r${done}/${budget} ${e.key}: ${e.loss.toFixed(4)}${e.reused ? " (cached)" : ""}\x1b[K`,
          );
      },
    });
    if (values.json !== true && process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    process.stdout.write(
      values.json === true ? JSON.stringify(result, null, 2) + "\n" : describeTune(result),
    );
    return 0;
  },
};
