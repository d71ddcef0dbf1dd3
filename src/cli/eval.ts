import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";
import { Evaluator, type EvalResult, type EvalSplit } from "../eval/evaluate.js";
import { parseCommandArgs, type Command } from "./command.js";

const usage = `usage: pma eval CKPT... [--split validation|test | --data FILE] [--max-tokens N] [--engine pma|llama.cpp] [--json]

Held-out loss of checkpoint folders (pma training checkpoints, pma merge outputs, any
Llama/Mixtral safetensors folder with config.json and tokenizer.json; f32 or bf16):
mean next-token cross-entropy, perplexity and tokens scored, over fixed
non-overlapping windows of the corpus split. Forward passes only; deterministic.

With --engine llama.cpp the same tokens are scored by llama.cpp (the optional package
node-llama-cpp): a folder is converted to a temporary GGUF file first (as \`pma convert\`
does), and a .gguf file is scored as it is, its vocabulary tokenising the corpus.

With --data FILE the held-out text is yours: a .txt file (documents separated by blank
lines) or a .jsonl file (one object per line, text in --text-field), tokenised with the
checkpoint's own tokenizer.json by @huggingface/tokenizers (cached by content hash),
packed into windows of --seq tokens and scored; bits per byte are reported beside the
loss so that models with different tokenizers compare.

options:
  --split S             validation (default) | test
  --data FILE           score your own held-out text (.txt or .jsonl) instead of a corpus split
  --text-field F        .jsonl: the field holding the text (default text)
  --tokenizer FILE      a tokenizer.json to use instead of the checkpoint's
  --max-tokens N        score an evenly spaced subset of about N tokens (default: all)
  --batch N             sequences per forward pass (default 16)
  --seq N               window length (default: the run's seq_len, else max_position_embeddings)
  --engine E            pma (default) | llama.cpp
  --gpu G               llama.cpp: off (default, CPU) | auto | cuda | vulkan | metal
  --threads N           llama.cpp: CPU threads (default: all cores)
  --dtype D             llama.cpp: weight type of the temporary GGUF, f32 | f16 | bf16
                        (default: as stored)
  --json                print the result as JSON (an array when several checkpoints)

example:
  pma eval run/checkpoint-1000 merged --split test
  pma eval merged --engine llama.cpp --max-tokens 20k
  pma eval run/checkpoint-1000 merged --data heldout.jsonl --text-field content --seq 512 --max-tokens 100k`;

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new PmaError("USAGE", `${flag} must be a positive integer (got '${v}')`);
  return n;
}

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        split: { type: "string" },
        "max-tokens": { type: "string" },
        batch: { type: "string" },
        seq: { type: "string" },
        engine: { type: "string" },
        gpu: { type: "string" },
        threads: { type: "string" },
        dtype: { type: "string" },
        data: { type: "string" },
        "text-field": { type: "string" },
        tokenizer: { type: "string" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length === 0)
      throw new PmaError("USAGE", `give at least one checkpoint folder\n\n${usage}`);
    if (values.data !== undefined) return evalData(positionals, values);
    for (const f of ["text-field", "tokenizer"] as const) {
      if (values[f] !== undefined) throw new PmaError("USAGE", `--${f} applies to --data only`);
    }
    const split = (values.split ?? "validation") as EvalSplit;
    if (split !== "validation" && split !== "test")
      throw new PmaError("USAGE", `--split must be validation or test (got '${values.split}')`);
    const maxTokens =
      values["max-tokens"] === undefined ? 0 : parseTokens(values["max-tokens"], "--max-tokens");
    const batch = positiveInt(values.batch, "--batch");
    const seq = positiveInt(values.seq, "--seq");
    const engine = values.engine ?? "pma";
    if (engine === "llama.cpp") {
      const { evaluateCheckpointsWithLlamaCpp } = await import("./eval-llama-cpp.js");
      const results = await evaluateCheckpointsWithLlamaCpp(
        positionals,
        { split, maxTokens, ...(seq !== undefined ? { seq } : {}) },
        values,
        (r, path) => {
          if (values.json !== true) process.stdout.write(describeEval(r, path));
        },
      );
      if (values.json === true)
        process.stdout.write(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
      return 0;
    }
    if (engine !== "pma") throw new PmaError("USAGE", `--engine must be pma or llama.cpp (got '${engine}')`);
    for (const f of ["gpu", "threads", "dtype"] as const) {
      if (values[f] !== undefined) throw new PmaError("USAGE", `--${f} applies to --engine llama.cpp only`);
    }
    const evaluator = new Evaluator();
    const results: EvalResult[] = [];
    try {
      for (const path of positionals) {
        const r = await evaluator.evaluate(path, {
          split,
          maxTokens,
          ...(batch !== undefined ? { batch } : {}),
          ...(seq !== undefined ? { seq } : {}),
        });
        results.push(r);
        if (values.json !== true) process.stdout.write(describeEval(r, path));
      }
    } finally {
      evaluator.close();
    }
    if (values.json === true)
      process.stdout.write(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
    return 0;
  },
};

type EvalFlags = Record<string, string | boolean | undefined>;

async function evalData(paths: string[], values: EvalFlags): Promise<number> {
  const str = (k: string): string | undefined =>
    typeof values[k] === "string" ? (values[k] as string) : undefined;
  if (str("split") !== undefined)
    throw new PmaError(
      "USAGE",
      "--split and --data exclude each other: --data scores your file, --split a corpus split",
    );
  const engine = str("engine") ?? "pma";
  if (engine !== "pma" && engine !== "llama.cpp")
    throw new PmaError("USAGE", `--engine must be pma or llama.cpp (got '${engine}')`);
  const { evaluateOnData } = await import("../eval/data-eval.js");
  const maxTokens = str("max-tokens") === undefined ? 0 : parseTokens(str("max-tokens")!, "--max-tokens");
  const seq = positiveInt(str("seq"), "--seq");
  const batch = positiveInt(str("batch"), "--batch");
  let llamaCpp = {};
  if (engine === "llama.cpp") {
    const { llamaCppOptions } = await import("./eval-llama-cpp.js");
    llamaCpp = llamaCppOptions({ gpu: str("gpu"), threads: str("threads"), dtype: str("dtype") });
  } else {
    for (const f of ["gpu", "threads", "dtype"])
      if (str(f) !== undefined) throw new PmaError("USAGE", `--${f} applies to --engine llama.cpp only`);
  }
  const results = [];
  try {
    for (const path of paths) {
      const r = await evaluateOnData(path, {
        data: str("data")!,
        engine,
        maxTokens,
        llamaCpp,
        ...(str("text-field") !== undefined ? { textField: str("text-field")! } : {}),
        ...(str("tokenizer") !== undefined ? { tokenizer: str("tokenizer")! } : {}),
        ...(seq !== undefined ? { seq } : {}),
        ...(batch !== undefined ? { batch } : {}),
      });
      results.push(r);
      if (values.json !== true) {
        process.stdout.write(
          `${path}: loss ${r.loss.toFixed(4)} (perplexity ${r.perplexity.toFixed(2)}, ${r.bitsPerByte.toFixed(4)} bits per byte) on ${r.tokens.toLocaleString("en-US")} tokens ` +
            `(${r.windows} windows of ${r.seq}) of ${r.data} (${r.documents} documents, ${r.dataTokens.toLocaleString("en-US")} tokens, ${r.dataBytes.toLocaleString("en-US")} bytes); ` +
            `${r.architecture}, ${r.parameters.toLocaleString("en-US")} parameters, ${r.dtype}; ${r.seconds.toFixed(2)} s on ${r.backend}\n`,
        );
      }
    }
  } finally {
    if (engine === "llama.cpp") await (await import("../eval/llama-cpp.js")).closeLlamaCpp();
  }
  if (values.json === true)
    process.stdout.write(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
  return 0;
}

export function describeEval(r: EvalResult, shown: string): string {
  const where = [
    r.step !== null ? `step ${r.step}` : null,
    r.tokensSeen !== null ? `${r.tokensSeen} tokens seen` : null,
  ]
    .filter((x) => x !== null)
    .join(", ");
  return (
    `${shown}: ${r.split} loss ${r.loss.toFixed(4)} (perplexity ${r.perplexity.toFixed(2)}) on ${r.tokens.toLocaleString("en-US")} tokens ` +
    `(${r.windows} windows of ${r.seq}); ${r.architecture}, ${r.parameters.toLocaleString("en-US")} parameters, ${r.dtype}` +
    `${where !== "" ? `, ${where}` : ""}; ${r.seconds.toFixed(2)} s on ${r.backend}\n`
  );
}
