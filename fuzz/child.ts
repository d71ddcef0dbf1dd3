/**
 * One fuzzing process for one target, started by main.ts. Before each execution it
 * writes the input to --current, so that if this process dies (out of memory, a native
 * crash, an uncaught error in a callback) or hangs, the supervisor still has the input
 * that did it. Stats go to --stats as JSON.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { installMeter } from "./meter.js";

// Before any code under test is loaded, so every allocation it makes is metered.
installMeter();

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    seconds: { type: "string" },
    work: { type: "string" },
    findings: { type: "string" },
    stats: { type: "string" },
    current: { type: "string" },
    corpus: { type: "string" },
    extra: { type: "string", multiple: true },
    seed: { type: "string" },
    "max-len": { type: "string" },
  },
});

const die = (e: unknown) => {
  process.stderr.write(
    `uncaught outside the reader's promise: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  );
  process.exit(70);
};
process.on("uncaughtException", die);
process.on("unhandledRejection", die);

const { targetByName } = await import("./targets/index.js");
const { fuzzTarget } = await import("./engine.js");
const target = targetByName(values.target ?? "");
if (target === undefined) {
  process.stderr.write(`unknown target ${values.target}\n`);
  process.exit(2);
}
const current = values.current!;
const stats = await fuzzTarget(target, {
  seconds: Number(values.seconds ?? 60),
  work: values.work!,
  findings: values.findings!,
  extraSeedDirs: values.extra ?? [],
  ...(values.corpus !== undefined ? { corpusDir: values.corpus } : {}),
  seed: Number(values.seed ?? 1),
  maxLength: Number(values["max-len"] ?? 16384),
  beforeExec: (data) => writeFileSync(current, data),
});
writeFileSync(values.stats!, JSON.stringify(stats, null, 2));
