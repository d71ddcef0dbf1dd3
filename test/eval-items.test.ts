// Zero-shot task items: sentence finding, perturbations that are what they claim to be,
// items that never come from text the models trained on (checked against the whole
// Brown train split with a plain substring search), distractors matched in token length
// and frequency, and determinism (same seed, same bytes; saved and reloaded alike).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { loadTaskItems, taskItemsFor } from "../src/eval/items-io.js";
import { chunks, lastWord, splitSentences } from "../src/eval/sentences.js";
import { buildTaskItems, type TaskItems } from "../src/eval/task-items.js";
import { brownCorpus } from "../src/data/brown.js";
import { textCorpus, type Corpus, type CorpusDocument } from "../src/data/corpus.js";
import { prepareTokenizer } from "../src/data/tokenizer-cache.js";
import type { Tokenizer } from "../src/data/tokenizer.js";
import { tempDir } from "./helpers/fixtures.js";

test("sentences: stops end them, abbreviations and initials do not; paragraphs are kept apart", () => {
  const text = `Mr. J. Edward Hackstaff flew to Washington, D.C. on Tuesday. He said: "I think I'm done". She left! Why? Dr. Smith agreed.\n\nA new paragraph. "Quoted," he said.`;
  assert.deepEqual(
    splitSentences(text).map((s) => [s.paragraph, s.text]),
    [
      [0, "Mr. J. Edward Hackstaff flew to Washington, D.C. on Tuesday."],
      [0, `He said: "I think I'm done".`],
      [0, "She left!"],
      [0, "Why?"],
      [0, "Dr. Smith agreed."],
      [1, "A new paragraph."],
      [1, `"Quoted," he said.`],
    ],
  );
  assert.deepEqual(lastWord(`He said: "I think I'm done".`), {
    context: `He said: "I think I'm`,
    word: "done",
    tail: `".`,
  });
  assert.deepEqual(lastWord("It was over (at last)."), {
    context: "It was over (at",
    word: "last",
    tail: ").",
  });
  assert.equal(lastWord("No stop here"), null);
  assert.equal(lastWord("It cost $5."), null);
});

let brown: Corpus;
let tok: Tokenizer;
let items: TaskItems;
let tmp: { dir: string; cleanup(): Promise<void> };
let train: string[];
let trainCounts: number[];
let trainTotal: number;

before(async () => {
  tmp = await tempDir("pma-eval-items-");
  brown = brownCorpus();
  tok = prepareTokenizer(brown, { vocabSize: 512, cacheDir: tmp.dir }).tokenizer;
  items = buildTaskItems(brown, tok, { count: 120 });
  train = [...brown.documents("train")].map((d) => d.text.replace(/\s+/g, " "));
  trainCounts = new Array<number>(tok.vocabSize).fill(0);
  trainTotal = 0;
  for (const d of brown.documents("train")) {
    const ids = tok.encodeOrdinary(d.text);
    for (const id of ids) trainCounts[id]!++;
    trainTotal += ids.length;
  }
});
after(() => tmp.cleanup());

test("Brown items: the requested counts, every sequence within maxTokens, ids that decode to the texts", () => {
  assert.equal(items.lambada.length, 120);
  assert.equal(items.blimp_swap.length, 120);
  assert.equal(items.blimp_drop.length, 120);
  const sep = tok.endOfText;
  assert.equal(items.separator, sep);
  for (const it of items.lambada) {
    assert.equal(it.contextIds[0], sep);
    assert.equal(tok.decode(it.contextIds.slice(1)), it.context);
    it.choices.forEach((w, j) => assert.equal(tok.decode(it.choiceIds[j]!), ` ${w}`));
    assert.ok(
      it.contextIds.length + Math.max(...it.choiceIds.map((c) => c.length)) <= items.options.maxTokens,
    );
  }
  for (const it of [...items.blimp_swap, ...items.blimp_drop]) {
    assert.equal(it.goodIds[0], sep);
    assert.equal(it.badIds[0], sep);
    assert.equal(tok.decode(it.goodIds.slice(1)), it.good);
    assert.equal(tok.decode(it.badIds.slice(1)), it.bad);
    assert.ok(Math.max(it.goodIds.length, it.badIds.length) <= items.options.maxTokens);
    const n = chunks(it.good).length;
    assert.ok(n >= items.options.minWords && n <= items.options.maxWords, `${n} words: ${it.good}`);
  }
});

test("no item sentence occurs anywhere in the Brown train split (plain substring search)", () => {
  const sentences = new Set([
    ...items.lambada.map((i) => i.sentence),
    ...items.blimp_swap.map((i) => i.good),
    ...items.blimp_drop.map((i) => i.good),
  ]);
  for (const s of sentences)
    assert.ok(!train.some((d) => d.includes(s)), `item sentence found in train: ${s}`);
});

test("swap items exchange two adjacent bare words; drop items remove exactly one word", () => {
  for (const it of items.blimp_swap) {
    const g = chunks(it.good);
    const b = chunks(it.bad);
    assert.notEqual(it.bad, it.good);
    assert.equal(b.length, g.length);
    const p = it.position;
    assert.ok(p >= 1, "the first word never moves (its capital would give the answer away)");
    assert.deepEqual([b[p], b[p + 1]], [g[p + 1], g[p]]);
    assert.deepEqual(it.words, [g[p], g[p + 1]]);
    g.forEach((w, i) => i !== p && i !== p + 1 && assert.equal(b[i], w));
    assert.match(g[p]!, /^[A-Za-z]+$/);
    assert.match(g[p + 1]!, /^[A-Za-z]+$/);
    assert.equal(it.unigramLogProb, 0);
  }
  for (const it of items.blimp_drop) {
    const g = chunks(it.good);
    const b = chunks(it.bad);
    assert.equal(b.length, g.length - 1);
    assert.deepEqual(b, [...g.slice(0, it.position), ...g.slice(it.position + 1)]);
    assert.deepEqual(it.words, [g[it.position]]);
    assert.ok(it.position >= 1);
    // The unigram term: add-one smoothed train token frequencies of the dropped word's tokens.
    const want = tok
      .encodeOrdinary(` ${it.words[0]}`)
      .reduce((a, id) => a + Math.log((trainCounts[id]! + 1) / (trainTotal + tok.vocabSize)), 0);
    assert.ok(
      Math.abs(it.unigramLogProb - want) < 1e-9 * Math.abs(want),
      `${it.words[0]}: ${it.unigramLogProb} vs ${want}`,
    );
  }
});

test("next-word items: the answer ends the sentence; distractors are distinct, as long in tokens, and as frequent", () => {
  let logRatios: number[] = [];
  for (const it of items.lambada) {
    const last = lastWord(it.sentence);
    assert.ok(last !== null);
    assert.equal(it.choices[0], last.word);
    assert.ok(it.context.endsWith(last.context), "the context ends with the sentence up to its last word");
    assert.equal(new Set(it.choices).size, it.choices.length);
    assert.equal(it.choices.length, items.options.choices);
    for (const [j, w] of it.choices.entries()) {
      assert.match(w, /^[a-z]{3,}$/);
      assert.equal(it.choiceIds[j]!.length, it.choiceIds[0]!.length);
      assert.ok(it.counts[j]! >= items.options.minCount);
      if (j > 0) logRatios.push(Math.abs(Math.log(it.counts[j]! / it.counts[0]!)));
    }
  }
  logRatios = logRatios.sort((a, b) => a - b);
  assert.ok(
    logRatios[Math.floor(logRatios.length / 2)]! < Math.log(1.5),
    `median frequency ratio ${Math.exp(logRatios[Math.floor(logRatios.length / 2)]!)}`,
  );
});

/** A slice of Brown (60 train documents, the real test split) keeps rebuilds fast. */
function brownPart(extraTrain: CorpusDocument[] = []): Corpus {
  const docs = (split: "train" | "test", n: number): CorpusDocument[] =>
    [...brown.documents(split)].slice(0, n);
  return textCorpus("brown-part", [
    ...[...docs("train", 60), ...extraTrain].map((d) => ({ ...d, split: "train" as const })),
    ...docs("test", 25).map((d) => ({ ...d, split: "test" as const })),
  ]);
}

test("a held-out document copied into a train document yields no items", () => {
  const copied = [...brown.documents("test")][2]!;
  const docsOf = (c: Corpus): Set<string> => {
    const built = buildTaskItems(c, tok, { count: 10_000 });
    return new Set([...built.lambada, ...built.blimp_swap, ...built.blimp_drop].map((i) => i.doc));
  };
  assert.ok(docsOf(brownPart()).has(copied.id), "the document gives items while only the test split has it");
  // Embedded mid-document, re-wrapped: found however the whitespace falls.
  const planted = {
    id: "planted",
    genre: copied.genre,
    text: `Some words before it. ${copied.text.replace(/ /g, "\n")} And some after.`,
  };
  const used = docsOf(brownPart([planted]));
  assert.ok(!used.has(copied.id), "a sentence the models trained on was used as an item");
  assert.ok(used.size > 5, "the other documents still give items");
});

test("items are a pure function of corpus, tokenizer and options; saved items reload identically", async () => {
  const part = brownPart();
  const opts = { count: 40, seed: 3 };
  const a = JSON.stringify(buildTaskItems(part, tok, opts));
  assert.equal(JSON.stringify(buildTaskItems(part, tok, opts)), a);
  assert.notEqual(
    JSON.stringify(buildTaskItems(part, tok, { ...opts, seed: 4 })),
    a,
    "another seed draws other items",
  );

  const first = await taskItemsFor({ corpus: part, tokenizer: tok, dir: tmp.dir, options: opts });
  assert.equal(first.fromCache, false);
  assert.equal(JSON.stringify(first.items), a);
  const again = await taskItemsFor({ corpus: part, tokenizer: tok, dir: tmp.dir, options: opts });
  assert.equal(again.fromCache, true);
  assert.equal(again.path, first.path);
  assert.equal(JSON.stringify(again.items), a);
  assert.equal(JSON.stringify(await loadTaskItems(first.path)), a);
  assert.equal((await readFile(first.path, "utf8")).trimEnd(), a);
  const other = await taskItemsFor({
    corpus: part,
    tokenizer: tok,
    dir: tmp.dir,
    options: { ...opts, count: 41 },
  });
  assert.notEqual(other.path, first.path, "other options, other file");
});
