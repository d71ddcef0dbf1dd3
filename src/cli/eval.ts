import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";
import { Evaluator, type EvalResult, type EvalSplit } from "../eval/evaluate.js";
import { parseCommandArgs, type Command } from "./command.js";

const usage = `usage: pma eval CKPT... [--split validation|test] [--max-tokens N] [--engine pma|llama.cpp] [--json]

Held-out loss of checkpoint folders (pma training checkpoints, pma merge outputs, any
Llama/Mixtral safetensors folder with config.json and tokenizer.json; f32 or bf16):
mean next-token cross-entropy, perplexity and tokens scored, over fixed
non-overlapping windows of the corpus split. Forward passes only; deterministic.

With --engine llama.cpp the same tokens are scored by llama.cpp (the optional package
node-llama-cpp): a folder is converted to a temporary GGUF file first (as \`pma convert\`
does), and a .gguf file is scored as it is, its vocabulary tokenising the corpus.

options:
  --split S             validation (default) | test
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
  pma eval merged --engine llama.cpp --max-tokens 20k`;

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new PmaError("USAGE", `${flag} must be a positive integer (got '${v}')`);
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
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length === 0) throw new PmaError("USAGE", `give at least one checkpoint folder\n\n${usage}`);
    const split = (values.split ?? "validation") as EvalSplit;
    if (split !== "validation" && split !== "test") throw new PmaError("USAGE", `--split must be validation or test (got '${values.split}')`);
    const maxTokens = values["max-tokens"] === undefined ? 0 : parseTokens(values["max-tokens"], "--max-tokens");
    const batch = positiveInt(values.batch, "--batch");
    const seq = positiveInt(values.seq, "--seq");
    const engine = values.engine ?? "pma";
    if (engine === "llama.cpp") {
      const { evaluateCheckpointsWithLlamaCpp } = await import("./eval-llama-cpp.js");
      const results = await evaluateCheckpointsWithLlamaCpp(positionals, { split, maxTokens, ...(seq !== undefined ? { seq } : {}) }, values, (r, path) => {
        if (values.json !== true) process.stdout.write(describeEval(r, path));
      });
      if (values.json === true) process.stdout.write(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
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
        const r = await evaluator.evaluate(path, { split, maxTokens, ...(batch !== undefined ? { batch } : {}), ...(seq !== undefined ? { seq } : {}) });
        results.push(r);
        if (values.json !== true) process.stdout.write(describeEval(r, path));
      }
    } finally {
      evaluator.close();
    }
    if (values.json === true) process.stdout.write(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
    return 0;
  },
};

export function describeEval(r: EvalResult, shown: string): string {
  const where = [r.step !== null ? `step ${r.step}` : null, r.tokensSeen !== null ? `${r.tokensSeen} tokens seen` : null].filter((x) => x !== null).join(", ");
  return (
    `${shown}: ${r.split} loss ${r.loss.toFixed(4)} (perplexity ${r.perplexity.toFixed(2)}) on ${r.tokens.toLocaleString("en-US")} tokens ` +
    `(${r.windows} windows of ${r.seq}); ${r.architecture}, ${r.parameters.toLocaleString("en-US")} parameters, ${r.dtype}` +
    `${where !== "" ? `, ${where}` : ""}; ${r.seconds.toFixed(2)} s on ${r.backend}\n`
  );
}
