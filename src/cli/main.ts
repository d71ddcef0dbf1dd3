#!/usr/bin/env node
import { PmaError } from "../common/errors.js";
import type { Command } from "./command.js";
import { safeMessage } from "../common/quote.js";

/**
 * Commands load lazily so that `pma inspect` does not pay for the training engine and
 * a missing optional dependency only affects the command that needs it.
 */
const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  demo: () => import("./demo.js"),
  merge: () => import("./merge.js"),
  inspect: () => import("./inspect.js"),
  plan: () => import("./plan.js"),
  init: () => import("./init.js"),
  watch: () => import("./watch.js"),
  train: () => import("./train.js"),
  eval: () => import("./eval.js"),
  tune: () => import("./tune.js"),
  lab: () => import("./lab.js"),
  convert: () => import("./convert.js"),
};

function mainUsage(): string {
  return [
    "pma: Pre-trained Model Averaging for LLM checkpoints",
    "",
    "usage: pma <command> [options]",
    "",
    "commands:",
    ...Object.keys(COMMANDS).map((c) => `  ${c}`),
    "",
    "Run `pma <command> --help` for a command's options.",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(mainUsage() + "\n");
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    const { PMA_VERSION } = await import("../common/version.js");
    process.stdout.write(PMA_VERSION + "\n");
    return 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    process.stderr.write(`pma: unknown command '${name}'\n\n${mainUsage()}\n`);
    return 2;
  }
  const { command } = await load();
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
      process.stderr.write(`pma: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
