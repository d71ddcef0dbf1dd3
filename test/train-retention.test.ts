// Checkpoint retention (checkpointing.keep_last / keep_every_tokens): the policy, its
// config checks, and real tiny runs: which checkpoints remain, the log's prune lines,
// exact resume with pruning on, and cleanup of a deletion a crash left unfinished.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { createWasmBackend, type MatmulBackend } from "../src/nn/kernels/index.js";
import { parseTrainConfig, parseTrainConfigYaml } from "../src/train/config.js";
import { train, type TrainOptions } from "../src/train/loop.js";
import { stepsToPrune } from "../src/train/retention.js";
import { parsePmaJsonl } from "../src/trajectory/logs.js";
import { discoverRun } from "../src/trajectory/run.js";
import { tempDir } from "./helpers/fixtures.js";

const TPS = 4 * 32 * 1; // micro_batch x seq_len x grad_accum
const EVERY = 2; // steps between checkpoints
const END = 17; // not a multiple of EVERY: the final checkpoint is off the grid
const KEEP_LAST = 2;
const V = 3 * EVERY * TPS; // keep_every_tokens: a merge interval of 3 checkpoint spacings

function tinyConfig(checkpointing: Record<string, unknown>): Record<string, unknown> {
  return {
    model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2 },
    data: { vocab_size: 512, seq_len: 32, micro_batch: 4, grad_accum: 1 },
    training: { max_tokens: END * TPS, seed: 3 },
    schedule: { lr: 1e-2, warmup_tokens: 3 * TPS },
    eval: { every_tokens: 0 },
    checkpointing: { every_tokens: EVERY * TPS, ...checkpointing },
  };
}

/** The checkpoint folders of a run directory, by step. */
function checkpointSteps(run: string): number[] {
  return readdirSync(run)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** What should remain, worked out from the steps alone: the last `keepLast` saved, plus those on the V grid. */
function expectedRemaining(saved: number[], keepLast: number, keepEveryTokens: number): number[] {
  const last = saved.slice(-keepLast);
  return saved.filter((s) => last.includes(s) || (keepEveryTokens > 0 && (s * TPS) % keepEveryTokens === 0));
}

const savedSteps = (end: number): number[] => [
  ...Array.from({ length: Math.floor(end / EVERY) }, (_, i) => (i + 1) * EVERY),
  ...(end % EVERY === 0 ? [] : [end]),
];

interface LogLine {
  type: string;
  step: number;
  checkpoint?: string;
  checkpoint_step?: number;
  checkpoint_tokens?: number;
}

function readLog(run: string): LogLine[] {
  return readFileSync(join(run, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as LogLine);
}

test("the policy keeps the newest N, the V grid, the newest and protected steps, and nothing after the newest", () => {
  const policy = { keepLast: 2, keepEveryTokens: 6, tokensPerStep: 1 };
  assert.deepEqual(stepsToPrune([2, 4, 6, 8, 10], 10, policy), [2, 4]);
  assert.deepEqual(stepsToPrune([2, 4, 6, 8, 10, 12, 14], 14, policy), [2, 4, 8, 10]);
  // 20 and 22 belong to a continuation a resume at 10 abandoned: neither newer nor deleted.
  assert.deepEqual(stepsToPrune([2, 4, 6, 8, 10, 20, 22], 10, policy), [2, 4]);
  assert.deepEqual(stepsToPrune([2, 4, 8, 10], 10, policy, new Set([4])), [2]);
  assert.deepEqual(stepsToPrune([2, 4, 8, 10], 10, { ...policy, keepLast: 0 }), []);
  // The newest counts even when the listing missed it.
  assert.deepEqual(stepsToPrune([2, 4], 10, { ...policy, keepLast: 1, keepEveryTokens: 0 }), [2, 4]);
});

describe("retention config", () => {
  /** Asserts CONFIG_INVALID naming the file and the field. */
  function rejects(yaml: string, pattern: RegExp): void {
    assert.throws(
      () => parseTrainConfigYaml(yaml, "run.yaml"),
      (e: unknown) => {
        assert.ok(isPmaError(e, "CONFIG_INVALID"), String(e));
        assert.match(e.message, /^run\.yaml: checkpointing\.keep_/);
        assert.match(e.message, pattern);
        return true;
      },
    );
  }

  test("defaults keep everything; values and token suffixes are read", () => {
    const d = parseTrainConfig({}, "defaults").checkpointing;
    assert.equal(d.keep_last, 0);
    assert.equal(d.keep_every_tokens, 0);
    // 25 steps of 4096 tokens between checkpoints by default; 10 of them is 1024000 tokens.
    const c = parseTrainConfigYaml(
      "checkpointing: {keep_last: 3, keep_every_tokens: 1024000}",
      "run.yaml",
    ).checkpointing;
    assert.equal(c.keep_last, 3);
    assert.equal(c.keep_every_tokens, 1024000);
    const k = parseTrainConfigYaml(
      "checkpointing: {every_tokens: 8192, keep_last: 1, keep_every_tokens: 4096k}",
      "run.yaml",
    ).checkpointing;
    assert.equal(k.keep_every_tokens, 4_096_000);
    // every_tokens is rounded to whole steps (100k: 24 steps), and the grid must sit on that spacing.
    rejects(
      "checkpointing: {every_tokens: 100k, keep_last: 1, keep_every_tokens: 4M}",
      /spacing, 98304 tokens/,
    );
  });

  test("a state saved before retention existed resumes with everything kept", () => {
    const old = parseTrainConfig({}, "defaults");
    const { keep_last: _a, keep_every_tokens: _b, ...before } = old.checkpointing;
    const c = parseTrainConfig({}, "run.yaml", {
      base: { ...old, checkpointing: before as typeof old.checkpointing },
    });
    assert.equal(c.checkpointing.keep_last, 0);
    assert.equal(c.checkpointing.keep_every_tokens, 0);
  });

  test("bad values are refused with the field and the file", () => {
    rejects("checkpointing: {keep_last: -1}", /keep_last must be an integer >= 0, got -1/);
    rejects("checkpointing: {keep_last: 2.5}", /keep_last must be an integer >= 0/);
    rejects("checkpointing: {keep_last: two}", /keep_last must be an integer >= 0, got "two"/);
    rejects(
      "checkpointing: {keep_last: 1, keep_every_tokens: -4096}",
      /keep_every_tokens must be a whole number of tokens >= 0/,
    );
    rejects(
      "checkpointing: {keep_last: 1, keep_every_tokens: 4096}",
      /keep_every_tokens must be a multiple of the checkpoint spacing, 102400 tokens .*got 4096/,
    );
    rejects(
      "checkpointing: {keep_every_tokens: 102400}",
      /keep_every_tokens needs checkpointing\.keep_last >= 1/,
    );
    rejects(
      "checkpointing: {every_tokens: 0, keep_last: 1, keep_every_tokens: 102400}",
      /keep_every_tokens needs checkpointing\.every_tokens > 0/,
    );
  });
});

describe("pruning in real runs", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let backend: MatmulBackend;
  const dir = (name: string) => join(tmp.dir, name);
  const run = (opts: TrainOptions) => train({ cacheDir: dir("cache"), backend, ...opts });
  const checkpointing = { keep_last: KEEP_LAST, keep_every_tokens: V };

  before(async () => {
    tmp = await tempDir("pma-train-retention-");
    backend = await createWasmBackend();
    await run({ config: tinyConfig(checkpointing), out: dir("full") });
  });
  after(async () => {
    backend.dispose();
    await tmp.cleanup();
  });

  test("the last keep_last and the keep_every_tokens grid remain, each deletion is a log line", async () => {
    const saved = savedSteps(END);
    const expected = expectedRemaining(saved, KEEP_LAST, V);
    assert.deepEqual(expected, [6, 12, 16, 17]); // the same, by hand
    assert.deepEqual(checkpointSteps(dir("full")), expected);
    const scan = await discoverRun(dir("full"));
    assert.deepEqual(
      scan.checkpoints.map((c) => c.step),
      expected,
    );
    assert.equal(readdirSync(dir("full")).filter((n) => n.startsWith(".")).length, 0, "no hidden leftovers");
    const pruned = readLog(dir("full")).filter((l) => l.type === "prune");
    assert.deepEqual(
      pruned.map((l) => l.checkpoint_step).sort((a, b) => a! - b!),
      saved.filter((s) => !expected.includes(s)),
    );
    for (const l of pruned) {
      assert.equal(l.checkpoint, `checkpoint-${l.checkpoint_step}`);
      assert.equal(l.checkpoint_tokens, l.checkpoint_step! * TPS);
      assert.ok(l.step > l.checkpoint_step!, "deleted only after a newer checkpoint");
    }
    // The trajectory reader skips the new kind.
    assert.equal(parsePmaJsonl(readFileSync(join(dir("full"), "log.jsonl"), "utf8")).points.length, END);
  });

  test("interrupted and resumed with pruning on, the run ends with the same weights; the start checkpoint is kept", async () => {
    const K = 7; // interrupted off the grid: the stop writes checkpoint-7
    const stop = new AbortController();
    const first = await run({
      config: tinyConfig(checkpointing),
      out: dir("split"),
      signal: stop.signal,
      onEvent: (e) => {
        if (e.type === "step" && e.record.step === K) stop.abort();
      },
    });
    assert.equal(first.step, K);
    assert.deepEqual(checkpointSteps(dir("split")), expectedRemaining(savedSteps(K), KEEP_LAST, V));
    // A crash in the middle of a delete left this; discovery must not see it, the next start removes it.
    const leftover = join(dir("split"), ".deleting-checkpoint-2");
    mkdirSync(leftover);
    writeFileSync(join(leftover, "model.safetensors"), "partial");
    assert.deepEqual(
      (await discoverRun(dir("split"))).checkpoints.map((c) => c.step),
      checkpointSteps(dir("split")),
    );
    const notes: string[] = [];
    const second = await run({
      resume: dir("split"),
      onEvent: (e) => e.type === "note" && notes.push(e.message),
    });
    assert.equal(second.step, END);
    assert.equal(existsSync(leftover), false);
    assert.ok(
      notes.some((n) => n.includes(".deleting-checkpoint-2")),
      notes.join("\n"),
    );
    for (const file of ["model.safetensors", "pma_optimizer.safetensors"]) {
      const a = readFileSync(join(dir("full"), `checkpoint-${END}`, file));
      const b = readFileSync(join(dir("split"), `checkpoint-${END}`, file));
      assert.ok(a.equals(b), `${file} differs`);
    }
    // The resumed process never deletes the checkpoint it started from (K); otherwise as uninterrupted.
    assert.deepEqual(
      checkpointSteps(dir("split")),
      [...new Set([...expectedRemaining(savedSteps(END), KEEP_LAST, V), K])].sort((a, b) => a - b),
    );
    const steps = (r: string) =>
      readLog(r)
        .filter((l) => l.type === "step")
        .map((l) => l.step);
    assert.deepEqual(steps(dir("split")), steps(dir("full")));
  });
});
