// The zero-shot suite on a checkpoint folder: every task's accuracy and margin, the
// held-out losses and the average agree with the same quantities computed item by item
// from the float64 reference forward; in-memory weights score the same as the folder;
// a checkpoint with another tokenizer is refused, a reformatted tokenizer.json is not.
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Suite, type SuiteScores } from "../src/eval/suite.js";
import { buildTaskItems, type TaskItems } from "../src/eval/task-items.js";
import { isPmaError } from "../src/common/errors.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { resolveConfig, toHfConfig, type ModelConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { brownCorpus } from "../src/data/brown.js";
import { textCorpus, type Corpus } from "../src/data/corpus.js";
import { heldoutWindows } from "../src/data/heldout-windows.js";
import { prepareTokenizer } from "../src/data/tokenizer-cache.js";
import { saveTokenizer } from "../src/data/tokenizer-json.js";
import type { Tokenizer } from "../src/data/tokenizer.js";
import { encodeTensors } from "../src/train/weights-io.js";
import { tempDir } from "./helpers/fixtures.js";
import { randomParams, referenceLogProb, logSoftmax64 } from "./helpers/eval-reference.js";
import { model64, type Params64 } from "./nn-ref64.js";

let tmp: { dir: string; cleanup(): Promise<void> };
let corpus: Corpus;
let tok: Tokenizer;
let items: TaskItems;
let config: ModelConfig;
let p64: Params64;
let weights: Map<string, Float32Array>;
let ckpt: string;
const SEQ = 48;

before(async () => {
  tmp = await tempDir("pma-eval-suite-");
  const brown = brownCorpus();
  const take = (split: "train" | "validation" | "test", n: number) =>
    [...brown.documents(split)].slice(0, n).map((d) => ({ ...d, split }));
  corpus = textCorpus("brown-mini", [...take("train", 40), ...take("validation", 2), ...take("test", 6)]);
  tok = prepareTokenizer(corpus, { vocabSize: 300, cacheDir: tmp.dir }).tokenizer;
  items = buildTaskItems(corpus, tok, { count: 6, maxTokens: SEQ, contextWords: 8 });
  config = resolveConfig({
    vocab_size: tok.vocabSize,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: SEQ,
    bos_token_id: tok.endOfText,
    eos_token_id: tok.endOfText,
  });
  const r = randomParams(config, 5);
  p64 = r.p64;
  weights = new Map(r.params.entries().map((e) => [e.name, Float32Array.from(e.data)]));
  ckpt = join(tmp.dir, "checkpoint-1");
  await mkdir(ckpt);
  await writeFile(join(ckpt, "config.json"), JSON.stringify(toHfConfig(config)));
  await writeSafetensors(join(ckpt, "model.safetensors"), encodeTensors(r.params.entries(), "F32"));
  saveTokenizer(tok, join(ckpt, "tokenizer.json"));
});
after(() => tmp.cleanup());

const suiteOpts = () => ({
  backend: createJsBackend(),
  corpus,
  cacheDir: tmp.dir,
  heldout: { maxTokens: 2 * SEQ },
});

/** What the suite should report, computed item by item with the float64 reference. */
function expectedTasks(): Record<string, { accuracy: number; margin: number; chance: number; n: number }> {
  const lp = (ids: number[], from: number): number => referenceLogProb(config, p64, ids, from);
  const lambada = items.lambada.map((it) => {
    const s = it.choiceIds.map((c) => lp([...it.contextIds, ...c], it.contextIds.length));
    const best = Math.max(...s.slice(1));
    return { ok: s[0]! > best ? 1 : 0, m: s[0]! - best };
  });
  const pairs = (list: TaskItems["blimp_swap"]) =>
    list.map((it) => {
      const m = lp(it.goodIds, 1) - lp(it.badIds, 1) - it.unigramLogProb;
      return { ok: m > 0 ? 1 : 0, m };
    });
  const sum = (rows: { ok: number; m: number }[], chance: number) => ({
    accuracy: rows.reduce((a, r) => a + r.ok, 0) / rows.length,
    margin: rows.reduce((a, r) => a + r.m, 0) / rows.length,
    chance,
    n: rows.length,
  });
  return {
    lambada: sum(lambada, 1 / items.options.choices),
    blimp_swap: sum(pairs(items.blimp_swap), 0.5),
    blimp_drop: sum(pairs(items.blimp_drop), 0.5),
  };
}

/** Mean next-token loss over the suite's windows of a split, by the float64 reference. */
function expectedLoss(split: "validation" | "test"): { loss: number; tokens: number } {
  const ids: number[] = [tok.endOfText];
  for (const d of corpus.documents(split)) ids.push(...tok.encodeOrdinary(d.text), tok.endOfText);
  let nll = 0;
  let n = 0;
  for (const o of heldoutWindows(ids.length, SEQ, 2 * SEQ)) {
    const { logits } = model64(
      config,
      p64,
      Int32Array.from(ids.slice(o, o + SEQ)),
      new Int32Array(SEQ).fill(-100),
      1,
      SEQ,
    );
    for (let t = 0; t < SEQ; t++, n++) nll -= logSoftmax64(logits[t]!, ids[o + t + 1]!);
  }
  return { loss: nll / n, tokens: n };
}

function assertMatches(got: SuiteScores): void {
  const want = expectedTasks();
  for (const t of ["lambada", "blimp_swap", "blimp_drop"] as const) {
    assert.ok(want[t]!.n >= 3, `${t}: too few items (${want[t]!.n}) for a meaningful check`);
    assert.equal(got.tasks[t].n, want[t]!.n, t);
    assert.equal(got.tasks[t].accuracy, want[t]!.accuracy, `${t} accuracy`);
    assert.ok(Math.abs(got.tasks[t].chance - want[t]!.chance) < 1e-12, `${t} chance`);
    assert.ok(
      Math.abs(got.tasks[t].margin - want[t]!.margin) < 1e-4 * (1 + Math.abs(want[t]!.margin)),
      `${t} margin ${got.tasks[t].margin} vs ${want[t]!.margin}`,
    );
  }
  const acc = (want.lambada!.accuracy + want.blimp_swap!.accuracy + want.blimp_drop!.accuracy) / 3;
  assert.ok(Math.abs(got.average - acc) < 1e-12);
  assert.ok(Math.abs(got.chanceAverage - (1 / items.options.choices + 1) / 3) < 1e-12);
}

test("scoreCheckpoint: tasks, average and held-out losses agree with the float64 reference", async () => {
  const suite = new Suite(items, suiteOpts());
  try {
    const got = await suite.scoreCheckpoint(ckpt);
    assert.equal(got.checkpoint, ckpt);
    assertMatches(got);
    for (const split of ["validation", "test"] as const) {
      const want = expectedLoss(split);
      const h = got.heldout[split]!;
      assert.equal(h.tokens, want.tokens);
      assert.ok(Math.abs(h.loss - want.loss) < 1e-5 * want.loss, `${split}: ${h.loss} vs ${want.loss}`);
      assert.ok(Math.abs(h.perplexity - Math.exp(want.loss)) < 1e-4 * Math.exp(want.loss));
    }
    // The same suite again (models and buffers reused): identical numbers.
    const again = await suite.scoreCheckpoint(ckpt);
    assert.deepEqual({ ...again, seconds: 0 }, { ...got, seconds: 0 });
    // In-memory weights score as the folder does; without a tokenizer file, tasks only.
    const mem = await suite.scoreWeights(config, weights, { label: "in memory" });
    assert.equal(mem.checkpoint, "in memory");
    assert.equal(got.step, undefined, "no trainer_state.json, no step");
    assert.deepEqual(mem.tasks, got.tasks);
    assert.deepEqual(mem.heldout, {});
  } finally {
    suite.close();
  }
});

test("a checkpoint with another tokenizer is refused; the same tokenizer written differently is accepted", async () => {
  const other = join(tmp.dir, "other-tokenizer");
  await mkdir(other);
  for (const f of ["config.json", "model.safetensors"])
    await writeFile(join(other, f), await readFile(join(ckpt, f)));
  const otherTok = prepareTokenizer(corpus, { vocabSize: 290, cacheDir: tmp.dir }).tokenizer;
  saveTokenizer(otherTok, join(other, "tokenizer.json"));
  const suite = new Suite(items, { ...suiteOpts(), heldout: false as const });
  try {
    await assert.rejects(
      suite.scoreCheckpoint(other),
      (e) => isPmaError(e, "CHECKPOINT_MISMATCH") && /task items were built with/.test(e.message),
    );
    const json = JSON.parse(await readFile(join(ckpt, "tokenizer.json"), "utf8")) as unknown;
    await writeFile(join(other, "tokenizer.json"), JSON.stringify(json, null, 1));
    await writeFile(
      join(other, "trainer_state.json"),
      JSON.stringify({ global_step: 7, num_input_tokens_seen: 28672 }),
    );
    const got = await suite.scoreCheckpoint(other);
    assert.deepEqual(got.heldout, {});
    assert.deepEqual([got.step, got.tokensSeen], [7, 28672]);
    assertMatches(got);
  } finally {
    suite.close();
  }
});
