#!/usr/bin/env node
import { PmaError } from "../common/errors.js";
import type { Command } from "./command.js";
import { safeMessage } from "../common/quote.js";

/** A command as `pma --help` lists it; its module loads only when it runs. */
interface CommandEntry {
  load: () => Promise<{ command: Command }>;
  /** What it does, in one line. */
  summary: string;
  /** One typical call (also in the command's own usage text). */
  example: string;
}

/**
 * Commands load lazily so that `pma inspect` does not pay for the training engine and
 * a missing optional dependency only affects the command that needs it.
 */
const COMMANDS: Record<string, CommandEntry> = {
  demo: {
    load: () => import("./demo.js"),
    summary: "see a merge work in a second, on a synthetic run",
    example: "pma demo --keep --dir /tmp/pma-demo",
  },
  merge: {
    load: () => import("./merge.js"),
    summary: "merge checkpoints of one training run into one (SMA, WMA, EMA, WSM, custom)",
    example:
      "pma merge run/checkpoint-1000 run/checkpoint-2000 run/checkpoint-3000 --out merged --method ema --alpha 0.2",
  },
  inspect: {
    load: () => import("./inspect.js"),
    summary: "look inside a checkpoint: tensors, dtypes, statistics",
    example: "pma inspect run/checkpoint-1000 --stats",
  },
  plan: {
    load: () => import("./plan.js"),
    summary: "choose the N checkpoints V tokens apart to merge, and print the merge command",
    example: "pma plan runs/7b --interval 8B --count 10",
  },
  init: {
    load: () => import("./init.js"),
    summary: "restart a broken run from a merge of its healthy checkpoints (PMA-init)",
    example: "pma init runs/7b --out runs/7b-restart",
  },
  watch: {
    load: () => import("./watch.js"),
    summary: "merge beside a live run as its checkpoints appear",
    example: "pma watch runs/7b --interval 8B --count 10 --out runs/7b-merged",
  },
  train: {
    load: () => import("./train.js"),
    summary: "train a tiny Llama or Mixtral-style MoE on the Brown corpus",
    example: "pma train --config moe.yaml --out run-moe --max-tokens 2M",
  },
  eval: {
    load: () => import("./eval.js"),
    summary: "held-out loss of checkpoints, by pma or by llama.cpp",
    example: "pma eval run/checkpoint-1000 merged --split test",
  },
  tune: {
    load: () => import("./tune.js"),
    summary: "search merges of a run for the lowest loss on your held-out text, within a budget",
    example:
      "pma tune runs/7b --data heldout.jsonl --text-field text --budget 30 --seq 1024 --max-tokens 200k",
  },
  lab: {
    load: () => import("./lab.js"),
    summary: "reproduce the paper's experiments at small scale and write a report",
    example: "pma lab",
  },
  convert: {
    load: () => import("./convert.js"),
    summary: "convert a checkpoint to GGUF for llama.cpp, or a distributed checkpoint to safetensors",
    example: "pma convert run/checkpoint-1000 --to gguf --dtype bf16 --out model.gguf",
  },
};

function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return [
    "pma: Pre-trained Model Averaging for LLM checkpoints",
    "",
    "usage: pma <command> [options]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).flatMap(([name, c]) => [
      `  ${name.padEnd(width)}${c.summary}`,
      `  ${" ".repeat(width)}  ${c.example}`,
    ]),
    "",
    "Run `pma help <command>` or `pma <command> --help` for a command's options.",
  ].join("\n");
}

/** `pma help [COMMAND]`: the overview, or one command's usage. */
async function help(name: string | undefined): Promise<number> {
  if (name === undefined) {
    process.stdout.write(mainUsage() + "\n");
    return 0;
  }
  const entry = COMMANDS[name];
  if (entry === undefined) {
    process.stderr.write(`pma: unknown command '${name}'\n\n${mainUsage()}\n`);
    return 2;
  }
  process.stdout.write((await entry.load()).command.usage + "\n");
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stdout.write(mainUsage() + "\n");
    return 2;
  }
  if (name === "--help" || name === "-h") return help(undefined);
  if (name === "help") return help(rest[0]);
  if (name === "--version" || name === "-v") {
    const { PMA_VERSION } = await import("../common/version.js");
    process.stdout.write(PMA_VERSION + "\n");
    return 0;
  }
  const entry = COMMANDS[name];
  if (entry === undefined) {
    process.stderr.write(`pma: unknown command '${name}'\n\n${mainUsage()}\n`);
    return 2;
  }
  const { command } = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.usage + "\n");
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof PmaError) {
      process.stderr.write(`pma: ${safeMessage(err.message, 16_000)}\n`);
      process.exitCode = err.code === "USAGE" ? 2 : 1;
    } else {
      process.stderr.write(
        `pma: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
