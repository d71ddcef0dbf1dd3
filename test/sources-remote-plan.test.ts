import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { progressFromName } from "../src/formats/revision-name.js";
import { discoverRun } from "../src/trajectory/run.js";
import { parseRetryAfter } from "../src/sources/retry.js";
import { tempDir } from "./helpers/fixtures.js";
import { startLocalHub, type LocalHub } from "./helpers/hub-server.js";
import { PMA_CLI } from "./helpers/processes.js";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

let tmp: { dir: string; cleanup(): Promise<void> };
let hub: LocalHub;

/** Branches as published runs name them: OLMo-style with tokens, Pythia-style with steps, and main. */
const BRANCHES = [
  "main",
  "stage1-step1000-tokens4B",
  "stage1-step2000-tokens8B",
  "stage1-step3000-tokens12B",
  "step4000",
  "step5000",
];

before(async () => {
  tmp = await tempDir("pma-remote-plan-");
  const revisions = [];
  for (const name of BRANCHES) {
    const dir = join(tmp.dir, name);
    await mkdir(dir, { recursive: true });
    await writeSafetensors(join(dir, "model.safetensors"), [
      { name: "w", dtype: "F32", shape: [2, 3], data: new Uint8Array(24) },
    ]);
    // One checkpoint records its tokens; it must win over the name.
    if (name === "stage1-step3000-tokens12B")
      await writeFile(
        join(dir, "trainer_state.json"),
        JSON.stringify({ global_step: 3000, num_input_tokens_seen: 12_000_000_123 }),
      );
    revisions.push({ name, dir });
  }
  hub = await startLocalHub("org/olmo", revisions);
  process.env["HF_ENDPOINT"] = hub.url;
});
after(async () => {
  await hub?.close();
  await tmp?.cleanup();
});

describe("remote runs", () => {
  it("reads progress from revision names", () => {
    assert.deepEqual(progressFromName("stage1-step928000-tokens3892B"), { tokens: 3892e9, step: 928000 });
    assert.deepEqual(progressFromName("step143000"), { step: 143000 });
    assert.deepEqual(progressFromName("main"), {});
    assert.equal(parseRetryAfter("3"), 3000);
    assert.ok((parseRetryAfter(new Date(Date.now() + 5000).toUTCString()) ?? 0) > 3000);
  });

  it("a Hub repository's branches are its checkpoints: tokens from trainer_state.json, else the name, else step x --tokens-per-step", async () => {
    const scan = await discoverRun("hf://org/olmo", { tokensPerStep: 4_000_000 });
    assert.deepEqual(
      scan.checkpoints.map((c) => [c.name, c.tokens, c.tokensFrom, c.parameters]),
      [
        ["stage1-step1000-tokens4B", 4e9, "name", 6],
        ["stage1-step2000-tokens8B", 8e9, "name", 6],
        ["stage1-step3000-tokens12B", 12_000_000_123, "trainer_state", 6],
        ["step4000", 16e9, "tokens-per-step", 6],
        ["step5000", 20e9, "tokens-per-step", 6],
      ],
    );
  });

  it("pma plan hf://... picks N at interval V and prints a merge command of hf:// revisions", async () => {
    // Asynchronously: the Hub server runs in this process and must keep answering.
    const { stdout: out } = await promisify(execFile)(
      process.execPath,
      [
        PMA_CLI,
        "plan",
        "hf://org/olmo",
        "--interval",
        "8B",
        "--count",
        "2",
        "--tokens-per-step",
        "4M",
        "--json",
      ],
      { env: { ...process.env, HF_ENDPOINT: hub.url } },
    );
    const plan = JSON.parse(out) as {
      selected: { path: string; tokensFrom: string }[];
      basis: string[];
      command: string;
    };
    assert.deepEqual(
      plan.selected.map((c) => c.path),
      ["hf://org/olmo@stage1-step3000-tokens12B", "hf://org/olmo@step5000"],
    );
    const said = plan.basis.find((b) => b.startsWith("tokens from "));
    for (const part of ["trainer_state.json (1)", "the revision name (2)", "step x --tokens-per-step (2)"])
      assert.ok(said?.includes(part), `${said} says ${part}`);
    assert.match(
      plan.command,
      /^pma merge hf:\/\/org\/olmo@stage1-step3000-tokens12B hf:\/\/org\/olmo@step5000 --out merged/,
    );
  });
});
