/**
 * The fuzz targets in the test suite: no seed (a valid file pma wrote) crashes its
 * reader and at least one per target reads without error; every input the fuzzer ever
 * found crashing (kept in test/fuzz-regressions/<target>/) now gives a result or a
 * PmaError within its allocation budget; and a one-second fuzz run per target finds
 * nothing, which keeps the harness itself working. The long runs are `npm run fuzz`.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { installMeter } from "../fuzz/meter.js";
import { tempDir } from "./helpers/fixtures.js";

// Before the readers run, so that their allocations are metered.
installMeter();
const { TARGETS } = await import("../fuzz/targets/index.js");
const { execute } = await import("../fuzz/verdict.js");
const { fuzzTarget } = await import("../fuzz/engine.js");

const REGRESSIONS = fileURLToPath(new URL("../../test/fuzz-regressions/", import.meta.url));

async function regressionInputs(target: string): Promise<{ name: string; data: Uint8Array }[]> {
  const dir = join(REGRESSIONS, target);
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(
    names
      .filter((n) => n.endsWith(".bin"))
      .sort()
      .map(async (name) => ({ name, data: await readFile(join(dir, name)) })),
  );
}

describe("fuzz targets: seeds, regression inputs, a short run", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-fuzz-replay-");
  });
  after(() => tmp.cleanup());

  for (const target of TARGETS) {
    test(target.name, { timeout: 120_000 }, async () => {
      const work = join(tmp.dir, target.name);
      const seeds = await target.seeds(join(work, "s"));
      const run = await target.setup(join(work, "r"));
      let ok = 0;
      for (const [i, s] of seeds.entries()) {
        const { verdict } = await execute(run, s, 30_000);
        assert.notEqual(verdict.kind, "crash", `seed ${i}: ${JSON.stringify(verdict)}`);
        if (verdict.kind === "ok") ok++;
      }
      assert.ok(ok > 0, "no seed was read without error: the seeds are not valid files");
      for (const r of await regressionInputs(target.name)) {
        const { verdict } = await execute(run, r.data, 30_000);
        assert.notEqual(verdict.kind, "crash", `${target.name}/${r.name}: ${JSON.stringify(verdict)}`);
      }
      const stats = await fuzzTarget(target, {
        seconds: 1,
        work: join(work, "f"),
        findings: join(work, "findings"),
        seed: 1,
      });
      assert.deepEqual(stats.crashes, []);
      assert.ok(stats.executions > seeds.length, `only ${stats.executions} executions`);
      assert.ok(stats.features > 0, "no coverage recorded");
    });
  }
});
