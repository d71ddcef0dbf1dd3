/**
 * `pma train` killed with SIGKILL at random moments, checkpoint writes included, and
 * resumed each time with `--resume RUN`: every checkpoint folder visible after a kill is
 * complete, a resume starts from the newest one, and the run that was killed again and
 * again ends with exactly the weights and optimizer state of a run never interrupted.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { readPmaState } from "../src/train/checkpoint.js";
import { rng, tempDir } from "./helpers/fixtures.js";
import { startPma, waitFor } from "./helpers/processes.js";

// A checkpoint every step (256 tokens), 24 steps.
const CONFIG = `model: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2}
data: {vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2}
training: {max_tokens: 6144, backend: wasm}
schedule: {lr: 1.0e-2, warmup_tokens: 768}
eval: {every_tokens: 0}
checkpointing: {every_tokens: 256}
`;
const STEPS = 24;
const KILLS = 5;

function checkpointSteps(run: string): number[] {
  if (!existsSync(run)) return [];
  return readdirSync(run)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** A visible checkpoint must be whole: weights and optimizer state that validate, and its state files. */
async function assertComplete(dir: string): Promise<void> {
  for (const f of ["model.safetensors", "pma_optimizer.safetensors"]) {
    const ck = await openCheckpointTensors(join(dir, f));
    for (const t of ck.tensors.values()) await t.file.read(t.name);
    await ck.close();
  }
  assert.ok((await readPmaState(dir)) !== null, `${dir}: no pma_state.json`);
  JSON.parse(await readFile(join(dir, "trainer_state.json"), "utf8"));
  JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
}

describe("pma train killed mid-run", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let env: NodeJS.ProcessEnv;
  let config: string;
  before(async () => {
    tmp = await tempDir("pma-train-kill-");
    env = { PMA_CACHE_DIR: join(tmp.dir, "cache") };
    config = join(tmp.dir, "run.yaml");
    writeFileSync(config, CONFIG);
  });
  after(() => tmp.cleanup());

  test(
    `${KILLS} SIGKILLs, each resumed from the newest complete checkpoint, end where an uninterrupted run ends`,
    { timeout: 300_000 },
    async (t) => {
      const reference = join(tmp.dir, "reference");
      const started = Date.now();
      const full = await startPma(["train", "--config", config, "--out", reference], env).exited;
      assert.equal(full.code, 0, full.stderr);
      const runMs = Date.now() - started;

      const run = join(tmp.dir, "killed");
      const r = rng(23);
      const resumedFrom: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        const have = checkpointSteps(run);
        const p =
          have.length === 0
            ? startPma(["train", "--config", config, "--out", run, "--force"], env)
            : startPma(["train", "--resume", run], env);
        if (have.length > 0) resumedFrom.push(have.at(-1)!);
        // Kill once training is under way, at a random point of what is left.
        await waitFor(
          "a new checkpoint",
          () => checkpointSteps(run).length > have.length || p.child.exitCode !== null,
          60_000,
        );
        await sleep(r() * runMs * 0.3);
        p.child.kill("SIGKILL");
        await p.exited;
        for (const s of checkpointSteps(run)) await assertComplete(join(run, `checkpoint-${s}`));
        if (checkpointSteps(run).at(-1) === STEPS) break;
      }
      if (checkpointSteps(run).at(-1) !== STEPS) {
        resumedFrom.push(checkpointSteps(run).at(-1)!);
        const last = await startPma(["train", "--resume", run], env).exited;
        assert.equal(last.code, 0, last.stderr);
      }
      t.diagnostic(`resumed from steps ${resumedFrom.join(", ")}`);
      for (const f of ["model.safetensors", "pma_optimizer.safetensors"]) {
        const a = await readFile(join(reference, `checkpoint-${STEPS}`, f));
        const b = await readFile(join(run, `checkpoint-${STEPS}`, f));
        assert.ok(a.equals(b), `${f} differs from the uninterrupted run's`);
      }
      // A killed writer's staging folder is cleared when its checkpoint is written again,
      // and every resume rewrites the checkpoint the kill interrupted.
      assert.deepEqual(
        readdirSync(run).filter((n) => n.startsWith(".")),
        [],
      );
      assert.equal(existsSync(join(tmp.dir, ".killed.pma-lock")), false);
      const log = (await readFile(join(run, "log.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; step: number });
      assert.deepEqual(
        log.filter((l) => l.type === "step").map((l) => l.step),
        Array.from({ length: STEPS }, (_, i) => i + 1),
        "the log has each step once",
      );
    },
  );
});
