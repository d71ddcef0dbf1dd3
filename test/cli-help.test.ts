// `pma --help` lists every command with a one-line description and an example, like git;
// `pma help <command>` prints that command's usage, which holds the example; the example's
// flags are ones the command's usage documents.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { startPma } from "./helpers/processes.js";

const run = async (args: string[]) => startPma(args).exited;

interface Listed {
  name: string;
  summary: string;
  example: string;
}

/** The command list of the overview: a "  name  summary" line, then its indented example. */
function listed(overview: string): Listed[] {
  const lines = overview.split("\n");
  const out: Listed[] = [];
  for (let i = lines.indexOf("commands:") + 1; i < lines.length && lines[i] !== ""; i += 2) {
    const m = /^ {2}(\S+) +(\S.*)$/.exec(lines[i]!);
    assert.ok(m, `command line: ${lines[i]}`);
    out.push({ name: m[1]!, summary: m[2]!, example: lines[i + 1]!.trim() });
  }
  return out;
}

describe("pma --help and pma help <command>", () => {
  test("every command with a description and an example; help <command> is the command's --help, which shows that example", async () => {
    const top = await run(["--help"]);
    assert.equal(top.code, 0, top.stderr);
    assert.deepEqual((await run(["help"])).stdout, top.stdout);
    const commands = listed(top.stdout);
    assert.deepEqual(commands.map((c) => c.name).sort(), [
      "convert",
      "demo",
      "eval",
      "init",
      "inspect",
      "lab",
      "merge",
      "plan",
      "train",
      "tune",
      "watch",
    ]);
    for (const c of commands) {
      assert.ok(c.summary.length > 15, `${c.name}: ${c.summary}`);
      assert.ok(c.example.startsWith(`pma ${c.name}`), `${c.name}: ${c.example}`);
      const [viaHelp, viaFlag] = await Promise.all([run(["help", c.name]), run([c.name, "--help"])]);
      assert.equal(viaHelp.code, 0, viaHelp.stderr);
      assert.equal(viaHelp.stdout, viaFlag.stdout);
      assert.match(viaHelp.stdout, new RegExp(`^usage: pma ${c.name}`));
      assert.ok(
        viaHelp.stdout.includes(`  ${c.example}\n`),
        `${c.name}: its usage does not show the example ${c.example}`,
      );
      for (const flag of c.example.match(/--[a-z-]+/g) ?? [])
        assert.ok(viaHelp.stdout.includes(`${flag} `), `${c.name}: ${flag} is not documented`);
    }
  });

  test("an unknown command is a usage error (exit 2) that lists the commands", async () => {
    for (const args of [["help", "frobnicate"], ["frobnicate"]]) {
      const r = await run(args);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unknown command 'frobnicate'/);
      assert.match(r.stderr, /^ {2}merge +merge checkpoints/m);
    }
    const bare = await run([]);
    assert.equal(bare.code, 2);
    assert.match(bare.stdout, /^commands:$/m);
  });
});
