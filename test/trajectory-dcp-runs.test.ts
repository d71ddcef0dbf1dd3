import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { openDcp } from "../src/formats/dcp/open.js";
import { DcpReader } from "../src/formats/dcp/reader.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { pmaInit } from "../src/trajectory/init.js";
import { discoverRun } from "../src/trajectory/run.js";
import { tempDir } from "./helpers/fixtures.js";
import { TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const TRAJ = `${TORCH_FIXTURES}dcp/trajectory/`;
const STEPS = [100, 200, 300];
let tmp = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => ({ dir: tmp, cleanup } = await tempDir("pma-dcp-run-")));
after(() => cleanup());

/** The trajectory fixture laid out as `name(step)` folders of a run (OLMo-core: `stepN/model_and_optim`). */
function makeRun(name: string, folder: (step: number) => string, extra?: (run: string) => void): string {
  const run = join(tmp, name);
  for (const s of STEPS) fs.cpSync(`${TRAJ}step-${s}`, join(run, folder(s)), { recursive: true });
  extra?.(run);
  return run;
}

async function assertReference(dir: string): Promise<void> {
  const ckpt = await openDcp(dir);
  const r = new DcpReader(ckpt);
  const ref = await SafetensorsFile.open(`${TRAJ}reference-sma.safetensors`);
  for (const [name, t] of ref.tensors)
    assert.deepEqual(
      Buffer.from(
        r.readElements(
          name,
          0,
          t.shape.reduce((a, b) => a * b, 1),
        ),
      ),
      Buffer.from(await ref.read(name)),
      name,
    );
  r.close();
  await ref.close();
}

describe("runs of distributed checkpoints", () => {
  it("Megatron torch_dist iter_* runs are discovered and ordered by tokens; pma init writes iter_XXXXXXX and touches the tracker only with --activate", async () => {
    const run = makeRun(
      "megatron",
      (s) => `iter_${String(s).padStart(7, "0")}`,
      (r) => fs.writeFileSync(join(r, "latest_checkpointed_iteration.txt"), "300"),
    );
    // A half-written checkpoint (no .metadata yet, as while DCP is still saving) is skipped.
    fs.cpSync(`${TRAJ}step-300`, join(run, "iter_0000400"), { recursive: true });
    fs.rmSync(join(run, "iter_0000400", ".metadata"));
    const scan = await discoverRun(run);
    assert.deepEqual(
      scan.checkpoints.map((c) => [c.name, c.step, c.tokens, c.tokensFrom]),
      STEPS.map((s) => [`iter_${String(s).padStart(7, "0")}`, s, s * 33554432, "checkpoint"]),
    );
    assert.deepEqual(
      scan.skipped.map((s) => s.path),
      [join(run, "iter_0000400")],
    );
    assert.equal(scan.checkpoints[0]!.parameters, 7248);

    const out = join(tmp, "megatron-init");
    const record = await pmaInit({ run, out, before: 301, count: 3, margin: 0, accumulate: "f64", scan });
    assert.equal(record.layout, "megatron");
    assert.equal(record.checkpoint, join(out, "iter_0000300"));
    await assertReference(record.checkpoint);
    assert.equal(fs.existsSync(join(out, "latest_checkpointed_iteration.txt")), false);
    assert.match(record.notes.join("\n"), /--activate/);

    const activated = join(tmp, "megatron-init-activated");
    await pmaInit({
      run,
      out: activated,
      before: 301,
      count: 3,
      margin: 0,
      accumulate: "f64",
      scan,
      activate: true,
    });
    assert.equal(fs.readFileSync(join(activated, "latest_checkpointed_iteration.txt"), "utf8"), "300");
    assert.equal(
      fs.readFileSync(join(run, "latest_checkpointed_iteration.txt"), "utf8"),
      "300",
      "the run's own tracker is untouched",
    );
  });

  it("torchtitan step-N runs: pma init writes step-N", async () => {
    const run = makeRun("titan", (s) => `step-${s}`);
    const out = join(tmp, "titan-init");
    const record = await pmaInit({ run, out, before: 301, count: 3, margin: 0, accumulate: "f64" });
    assert.equal(record.checkpoint, join(out, "step-300"));
    await assertReference(record.checkpoint);
    assert.ok(fs.existsSync(join(record.checkpoint, "pma_init.json")));
  });

  it("OLMo-core stepN/model_and_optim runs: pma init writes stepN/model_and_optim with train/ copied", async () => {
    const run = makeRun(
      "olmo",
      (s) => `step${s}/model_and_optim`,
      (r) => {
        for (const s of STEPS) {
          fs.mkdirSync(join(r, `step${s}`, "train"));
          fs.writeFileSync(join(r, `step${s}`, "train", "rank0.pt"), `trainer state ${s}`);
        }
      },
    );
    const scan = await discoverRun(run);
    assert.deepEqual(
      scan.checkpoints.map((c) => c.path),
      STEPS.map((s) => join(run, `step${s}`, "model_and_optim")),
    );
    const out = join(tmp, "olmo-init");
    const record = await pmaInit({ run, out, before: 301, count: 3, margin: 0, accumulate: "f64", scan });
    assert.equal(record.checkpoint, join(out, "step300", "model_and_optim"));
    await assertReference(record.checkpoint);
    assert.equal(fs.readFileSync(join(out, "step300", "train", "rank0.pt"), "utf8"), "trainer state 300");
  });

  it("pma plan and pma merge --run choose DCP checkpoints by tokens", async () => {
    const run = makeRun("cli", (s) => `step-${s}`);
    const out = join(tmp, "cli-merged");
    const { stdout } = await promisify(execFile)(process.execPath, [
      PMA,
      "merge",
      "--run",
      run,
      "--interval",
      "3.3e9",
      "--count",
      "3",
      "--accumulate",
      "f64",
      "--out",
      out,
    ]);
    assert.match(stdout, /ordered by/);
    await assertReference(out);
  });
});
