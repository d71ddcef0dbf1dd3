import { parseArgs, type ParseArgsConfig } from "node:util";
import { PmaError } from "../common/errors.js";

/** A CLI command: a usage text and a function from argv to an exit code. */
export interface Command {
  usage: string;
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>
>;

/** node's parseArgs, with its errors turned into pma usage errors. */
export function parseCommandArgs<O extends Options>(argv: string[], options: O, usage: string): Parsed<O> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new PmaError("USAGE", `${e instanceof Error ? e.message : String(e)}\n\n${usage}`);
  }
}
