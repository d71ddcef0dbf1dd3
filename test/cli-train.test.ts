// pma train / pma eval as a user runs them: exit codes, messages, JSON output, and a
// Ctrl-C (SIGINT) or SIGTERM that leaves a final checkpoint the run resumes from.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

const TINY = `# 256 tokens per step
model: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2}
data: {vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 2}
training: {max_tokens: 3072, backend: wasm}
schedule: {lr: 1.0e-2, warmup_tokens: 768}
eval: {every_tokens: 1536, max_tokens: 2048}
checkpointing: {every_tokens: 1536}
`;

describe("pma train and pma eval", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let env: NodeJS.ProcessEnv;
  const pma = (...args: string[]) => spawnSync(process.execPath, [PMA, ...args], { encoding: "utf8", env });

  before(async () => {
    tmp = await tempDir("pma-cli-train-");
    env = { ...process.env, PMA_CACHE_DIR: join(tmp.dir, "cache") };
    writeFileSync(join(tmp.dir, "tiny.yaml"), TINY);
    // No periodic checkpoint or evaluation: the signal must be noticed between plain steps.
    writeFileSync(
      join(tmp.dir, "long.yaml"),
      TINY.replace("every_tokens: 1536}", "every_tokens: 0}").replace(
        "every_tokens: 1536, max",
        "every_tokens: 0, max",
      ),
    );
  });
  after(() => tmp.cleanup());

  test("train --config --out writes a run; eval --json scores its checkpoints", () => {
    const run = join(tmp.dir, "run");
    const r = pma("train", "--config", join(tmp.dir, "tiny.yaml"), "--out", run, "--json");
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout) as {
      step: number;
      tokens: number;
      checkpoints: string[];
      tokensPerStep: number;
      interrupted: boolean;
    };
    assert.equal(result.step, 12);
    assert.equal(result.tokens, 3072);
    assert.equal(result.tokensPerStep, 256);
    assert.equal(result.interrupted, false);
    assert.deepEqual(result.checkpoints, [join(run, "checkpoint-6"), join(run, "checkpoint-12")]);
    assert.ok(existsSync(join(run, "config.yaml")));

    const e = pma("eval", join(run, "checkpoint-12"), "--max-tokens", "2048", "--json");
    assert.equal(e.status, 0, e.stderr);
    const ev = JSON.parse(e.stdout) as { loss: number; perplexity: number; tokens: number; split: string };
    assert.equal(ev.tokens, 2048);
    assert.equal(ev.split, "validation");
    assert.ok(ev.loss > 0 && ev.loss < Math.log(512));
    const both = pma(
      "eval",
      join(run, "checkpoint-6"),
      join(run, "checkpoint-12"),
      "--split",
      "test",
      "--max-tokens",
      "1k",
    );
    assert.equal(both.status, 0, both.stderr);
    assert.match(
      both.stdout,
      /checkpoint-6: test loss \d+\.\d{4} \(perplexity [\d.]+\) on 992 tokens \(31 windows of 32\); LlamaForCausalLM/,
    );
    assert.equal(both.stdout.trim().split("\n").length, 2);
  });

  test("without --out a new run goes to ./pma-run", () => {
    const r = spawnSync(
      process.execPath,
      [PMA, "train", "--config", join(tmp.dir, "tiny.yaml"), "--max-tokens", "512"],
      { encoding: "utf8", env, cwd: tmp.dir },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(tmp.dir, "pma-run", "checkpoint-2", "model.safetensors")));
  });

  test("invalid configs and flags fail with the field named and no stack trace", () => {
    const bad = join(tmp.dir, "bad.yaml");
    writeFileSync(bad, "schedule: {lr: fast}\n");
    const r = pma("train", "--config", bad, "--out", join(tmp.dir, "bad-run"));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bad\.yaml: schedule\.lr must be a finite number, got "fast"/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.ok(!existsSync(join(tmp.dir, "bad-run")));
    const usage = pma("train", "--config", join(tmp.dir, "tiny.yaml"), "extra");
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /unexpected argument 'extra'/);
    const fork = pma(
      "train",
      "--resume",
      join(tmp.dir, "run", "checkpoint-6"),
      "--schedule",
      "{kind: cosine}",
    );
    assert.equal(fork.status, 2);
    assert.match(
      fork.stderr,
      /this resume is a fork \(new schedule or optimizer settings\): write it to a new run with --out DIR/,
    );
    const flag = pma("train", "--out", join(tmp.dir, "x"), "--max-tokens", "lots");
    assert.equal(flag.status, 2);
    assert.match(flag.stderr, /--max-tokens: 'lots' is not a token count/);
    const split = pma("eval", join(tmp.dir, "run", "checkpoint-6"), "--split", "train");
    assert.equal(split.status, 2);
  });

  test("a diverging run stops with exit 1 at the first non-finite loss and logs that step with nulls", () => {
    const run = join(tmp.dir, "diverged");
    const r = pma(
      "train",
      "--config",
      join(tmp.dir, "tiny.yaml"),
      "--out",
      run,
      "--schedule",
      "{lr: 1.0e6, warmup_tokens: 0}",
    );
    assert.equal(r.status, 1);
    const m =
      /training diverged at step (\d+) \((loss|gradient norm) is (NaN|-?Infinity)[^)]*\); parameters were not updated/.exec(
        r.stderr,
      );
    assert.ok(m !== null, r.stderr);
    const lines = readFileSync(join(run, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; loss: number | null; grad_norm: number | null });
    assert.equal(lines.at(-1)!.step, Number(m[1]));
    assert.equal(lines.at(-1)![m[2] === "loss" ? "loss" : "grad_norm"], null);
    assert.ok(!existsSync(join(run, `checkpoint-${m[1]}`)));
    assert.ok(lines.slice(0, -1).every((l) => typeof l.loss === "number"));
  });

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    test(`${signal} writes a final checkpoint and exits cleanly; --resume finishes the run`, async () => {
      const run = join(tmp.dir, `run-${signal}`);
      const child = spawn(
        process.execPath,
        [PMA, "train", "--config", join(tmp.dir, "long.yaml"), "--out", run, "--max-tokens", "1M"],
        { env },
      );
      let stdout = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
      const log = join(run, "log.jsonl");
      const deadline = Date.now() + 60_000;
      while (!(existsSync(log) && readFileSync(log, "utf8").split("\n").length > 4)) {
        assert.ok(Date.now() < deadline, "training did not start within 60 s");
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill(signal);
      assert.equal(await exited, 0);
      const steps = readFileSync(log, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; step: number })
        .filter((l) => l.type === "step");
      const last = steps.at(-1)!.step;
      assert.ok(last < 4096, "stopped long before the end");
      assert.match(stdout, new RegExp(`interrupted at step ${last} .*saved .*checkpoint-${last}`));
      assert.ok(existsSync(join(run, `checkpoint-${last}`, "pma_state.json")));

      const resumed = pma("train", "--resume", run, "--max-tokens", String((last + 3) * 256), "--json");
      assert.equal(resumed.status, 0, resumed.stderr);
      assert.equal((JSON.parse(resumed.stdout) as { step: number }).step, last + 3);
    });
  }
});
