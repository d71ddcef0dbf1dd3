import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { brownCorpus } from "../src/data/brown.js";
import { SPLITS, textCorpus } from "../src/data/corpus.js";
import { BYTE_TO_CHAR, preTokenize } from "../src/data/tokenizer-bytes.js";
import { prepareTokenizer, tokenizeSplit } from "../src/data/tokenizer-cache.js";
import { loadTokenizer, saveTokenizer, tokenizerToJson } from "../src/data/tokenizer-json.js";
import { countWords, trainBpe } from "../src/data/tokenizer-train.js";
import { END_OF_TEXT } from "../src/data/tokenizer.js";

const cacheDir = mkdtempSync(join(tmpdir(), "pma-tok-test-"));
process.on("exit", () => rmSync(cacheDir, { recursive: true, force: true }));

const brown = brownCorpus();
// Trained once (a fresh cache folder, so this really trains) and shared by the tests below.
const prepared = prepareTokenizer(brown, { cacheDir });
const tok = prepared.tokenizer;
const hf = new HfTokenizer(JSON.parse(JSON.stringify(tokenizerToJson(tok))), {});

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The independent reference: BPE exactly as the rule reads, recounting every pair of every
 * word each round (O(merges x corpus)). Rule: the pair with the highest count, ties to the
 * smallest (left id, right id); occurrences merge left to right; a token whose bytes already
 * exist reuses that id; a pair merged before is not listed again.
 */
function naiveBpe(
  texts: string[],
  tokens: number,
  minFrequency: number,
): { tokens: number[][]; merges: [number, number, number][] } {
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of preTokenize(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, c]) => ({ syms: [...new TextEncoder().encode(w)], c }));
  const vocab: number[][] = Array.from({ length: 256 }, (_, b) => [b]);
  const merges: [number, number, number][] = [];
  while (vocab.length < tokens) {
    const pairs = new Map<string, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const k = `${w.syms[i]},${w.syms[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + w.c);
      }
    let best: [number, number, number] | undefined;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(",").map(Number) as [number, number];
      if (
        best === undefined ||
        c > best[2] ||
        (c === best[2] && (a < best[0] || (a === best[0] && b < best[1])))
      )
        best = [a, b, c];
    }
    if (best === undefined || best[2] < minFrequency) break;
    const [a, b] = best;
    const bytes = [...vocab[a]!, ...vocab[b]!];
    let id = vocab.findIndex((t) => t.length === bytes.length && t.every((x, i) => x === bytes[i]));
    if (id < 0) {
      id = vocab.length;
      vocab.push(bytes);
    }
    if (!merges.some((m) => m[0] === a && m[1] === b)) merges.push([a, b, id]);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(w.syms[i]!);
      }
      w.syms = out;
    }
  }
  return { tokens: vocab, merges };
}

test("BPE training: merges derived by hand on a tiny corpus", () => {
  // Words "aaaa" x1 and "aab" x2. Pairs: (a,a) = 3 + 2 = 5, (a,b) = 2 -> merge a+a = 256.
  // Then "aaaa" = [aa, aa], "aab" = [aa, b]: (aa,b) = 2 beats (aa,aa) = 1 -> 257 = aab.
  // Left is (aa,aa) = 1: merged only when pairs seen once count (minFrequency 1).
  const words = countWords(["aaaa", "aab", "aab"]);
  assert.deepEqual(trainBpe(words, { tokens: 300 }).merges, [
    [97, 97, 256],
    [256, 98, 257],
  ]);
  assert.deepEqual(trainBpe(words, { tokens: 300, minFrequency: 1 }).merges, [
    [97, 97, 256],
    [256, 98, 257],
    [256, 256, 258],
  ]);
  // "aaa" with (a,a): left to right, no overlap -> [aa, a], so (a,a) counted 2 then gone.
  assert.deepEqual(trainBpe(countWords(["aaa"]), { tokens: 300, minFrequency: 1 }).merges, [
    [97, 97, 256],
    [256, 97, 257],
  ]);
  // Ties: equal counts go to the smaller (left, right) pair: (a,b) before (b,a), (c,d).
  assert.deepEqual(trainBpe(countWords(["cd", "ba", "ab"]), { tokens: 258, minFrequency: 1 }).merges, [
    [97, 98, 256],
    [98, 97, 257],
  ]);
  // The vocabulary size bounds the merges.
  assert.equal(trainBpe(words, { tokens: 257, minFrequency: 1 }).merges.length, 1);
});

test("BPE training: identical to the naive O(n^2) reference on random corpora", () => {
  const rand = mulberry32(12345);
  const alphabet = ["a", "b", "c", "ab", "ba", " ", " ", "é", "\n", ",", "1", "2"];
  for (let trial = 0; trial < 12; trial++) {
    const texts: string[] = [];
    for (let d = 0; d < 6; d++) {
      let t = "";
      const n = 20 + Math.floor(rand() * 120);
      for (let i = 0; i < n; i++) t += alphabet[Math.floor(rand() * alphabet.length)];
      texts.push(t);
    }
    const minFrequency = trial % 3 === 0 ? 1 : 2;
    const target = 256 + 10 + Math.floor(rand() * 60);
    const want = naiveBpe(texts, target, minFrequency);
    const got = trainBpe(countWords(texts), { tokens: target, minFrequency });
    assert.deepEqual(got.merges, want.merges, `trial ${trial}`);
    assert.deepEqual(
      got.tokens.map((t) => [...t]),
      want.tokens,
      `trial ${trial}`,
    );
  }
});

test("Brown tokenizer: 4096 tokens, <|endoftext|> last, every document of every split round-trips", () => {
  assert.equal(tok.vocabSize, 4096);
  assert.equal(tok.endOfText, 4095);
  assert.equal(prepared.stats.merges, 4095 - 256);
  for (const s of SPLITS) {
    for (const d of brown.documents(s)) {
      const ids = tok.encodeOrdinary(d.text);
      assert.ok(ids.length < new TextEncoder().encode(d.text).length / 2, `${d.id} compresses`);
      assert.equal(tok.decode(ids), d.text, d.id);
    }
  }
});

/** Random strings over scripts a training corpus never saw, emoji, controls and odd spaces. */
function randomUnicode(rand: () => number, length: number): string {
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0x7f, 0xff],
    [0x0370, 0x03ff],
    [0x0400, 0x04ff],
    [0x0590, 0x05ff],
    [0x0600, 0x06ff],
    [0x0900, 0x097f],
    [0x0e00, 0x0e7f],
    [0x3040, 0x30ff],
    [0x4e00, 0x9fff],
    [0xac00, 0xd7a3],
    [0x0300, 0x036f],
    [0x1f300, 0x1faff],
    [0x10000, 0x1007f],
    [0x12000, 0x123ff],
    [0x1e900, 0x1e95f],
    [0x1d400, 0x1d7ff],
    [0xe000, 0xf8ff],
    [0xfff0, 0xfffd],
  ];
  const specials = [0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x200b, 0x200d, 0xfeff, 0x3000, 0xfe0f, 0x1f3fb];
  let s = "";
  for (let i = 0; i < length; i++) {
    const r = rand();
    if (r < 0.1) s += String.fromCodePoint(specials[Math.floor(rand() * specials.length)]!);
    else if (r < 0.25) s += " ";
    else if (r < 0.3) s += ["'s", "'ll", "'d", " 123", "  ", "\n\n", "\r\n"][Math.floor(rand() * 7)];
    else {
      const [lo, hi] = ranges[Math.floor(rand() * ranges.length)]!;
      s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
    }
  }
  return s;
}

test("round trip of arbitrary Unicode (seeded): unseen scripts, emoji, controls, whitespace", () => {
  const rand = mulberry32(2024);
  for (let i = 0; i < 400; i++) {
    const s = randomUnicode(rand, 1 + Math.floor(rand() * 80));
    assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  }
  for (const s of [
    "",
    " ",
    "\u0000",
    "😀👩‍👩‍👧‍👦🇺🇸",
    "e\u0301",
    "\ufeffBOM first",
    "x".repeat(5000),
    " ".repeat(3000) + "y",
  ]) {
    assert.equal(tok.decode(tok.encode(s)), s);
  }
});

test("lone surrogates have no UTF-8 form: they come back as U+FFFD, the rest intact", () => {
  assert.equal(tok.decode(tok.encode("a\ud800b")), "a\ufffdb");
  assert.equal(tok.decode(tok.encode("\udc00😀\ud83d")), "\ufffd😀\ufffd");
  // A slice of ids that ends inside a character decodes to U+FFFD, never throws.
  const ids = tok.encode("😀");
  assert.equal(tok.decode(ids.subarray(0, 1)).includes("\ufffd"), true);
});

test("special tokens: matched in encode(), plain text in encodeOrdinary()", () => {
  const text = `first${END_OF_TEXT}second`;
  const ids = [...tok.encode(text)];
  assert.equal(ids.filter((i) => i === tok.endOfText).length, 1);
  assert.equal(tok.decode(ids), text);
  const plain = [...tok.encodeOrdinary(text)];
  assert.ok(!plain.includes(tok.endOfText));
  assert.equal(tok.decode(plain), text);
});

test("the Hugging Face JavaScript tokenizer reads our tokenizer.json and encodes identically", () => {
  // The JavaScript port is ~20x slower than pma's encoder: a few documents keep this quick.
  const texts = [...brown.documents("validation")].slice(0, 8).map((d) => d.text);
  const rand = mulberry32(77);
  for (let i = 0; i < 300; i++) texts.push(randomUnicode(rand, 1 + Math.floor(rand() * 60)));
  texts.push(
    `a${END_OF_TEXT} b`,
    `  ${END_OF_TEXT}${END_OF_TEXT}\n`,
    "x\u0085y\ufeffz\u2028",
    "don't'll 'S 12345 ...!!",
  );
  for (const t of texts) {
    const ours = [...tok.encode(t)];
    const theirs = hf.encode(t, { add_special_tokens: false }).ids;
    assert.deepEqual(ours, theirs, JSON.stringify(t.slice(0, 80)));
    assert.equal(
      hf.decode(theirs, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
      tok.decode(ours),
    );
  }
});

test("tokenizer.json: standard fields, atomic save, load gives the same tokenizer", () => {
  const dir = mkdtempSync(join(cacheDir, "save-"));
  const path = join(dir, "tokenizer.json");
  saveTokenizer(tok, path);
  assert.deepEqual(readdirSync(dir), ["tokenizer.json"], "no temporary file left behind");
  const json = JSON.parse(readFileSync(path, "utf8"));
  assert.equal(json.model.type, "BPE");
  assert.equal(Object.keys(json.model.vocab).length, 4096);
  assert.equal(json.model.merges.length, 4095 - 256);
  assert.equal(json.model.vocab[BYTE_TO_CHAR[0x20]!], 0x20, "byte tokens keep their byte value as id");
  assert.deepEqual(
    json.added_tokens.map((t: { content: string; id: number; special: boolean }) => [
      t.content,
      t.id,
      t.special,
    ]),
    [[END_OF_TEXT, 4095, true]],
  );
  assert.equal(json.decoder.type, "ByteLevel");
  const loaded = loadTokenizer(path);
  assert.deepEqual(tokenizerToJson(loaded), tokenizerToJson(tok));
  const sample = [...brown.documents("test")][0]!.text;
  assert.deepEqual(loaded.encode(sample), tok.encode(sample));
});

test("loadTokenizer reads the classic GPT-2 form (ByteLevel pre-tokenizer with its regex)", () => {
  // A GPT-2 layout: bytes in bytes_to_unicode order, a few merges, <|endoftext|> last.
  const order = [...BYTE_TO_CHAR].sort((x, y) => x.codePointAt(0)! - y.codePointAt(0)!);
  const vocab: Record<string, number> = {};
  order.forEach((c, i) => (vocab[c] = i));
  const merges = ["Ġ t", "h e", "Ġt he", "i n"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  vocab[END_OF_TEXT] = Object.keys(vocab).length;
  const json = {
    version: "1.0",
    added_tokens: [
      {
        id: vocab[END_OF_TEXT],
        content: END_OF_TEXT,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      vocab,
      merges,
    },
  };
  const dir = mkdtempSync(join(cacheDir, "gpt2-"));
  const path = join(dir, "tokenizer.json");
  writeFileSync(path, JSON.stringify(json));
  const ours = loadTokenizer(path);
  const theirs = new HfTokenizer(json, {});
  for (const t of ["in the then thin", "the<|endoftext|> in", "ünïcode 😀 in"]) {
    assert.deepEqual([...ours.encode(t)], theirs.encode(t, { add_special_tokens: false }).ids, t);
    assert.equal(ours.decode(ours.encode(t)), t);
  }
});

test("cache: the second prepare and tokenise read files; keys follow vocabulary and content", () => {
  const again = prepareTokenizer(brownCorpus(), { cacheDir });
  assert.equal(prepared.fromCache, false);
  assert.equal(again.fromCache, true);
  assert.equal(again.dir, prepared.dir);
  assert.deepEqual(tokenizerToJson(again.tokenizer), tokenizerToJson(tok));
  for (const s of SPLITS) {
    const first = tokenizeSplit(brown, s, prepared);
    const second = tokenizeSplit(brown, s, again);
    assert.equal(second.fromCache, true, s);
    assert.ok(second.tokens instanceof Uint16Array);
    assert.deepEqual(second.tokens, first.tokens);
    assert.deepEqual(second.documents, first.documents);
    // Framing: <|endoftext|> before every document and after the last; each slice decodes back.
    const docs = [...brown.documents(s)];
    assert.equal(second.documents.length, docs.length);
    assert.equal(second.tokens[0], tok.endOfText);
    assert.equal(second.tokens[second.tokens.length - 1], tok.endOfText);
    second.documents.forEach((d, i) => {
      assert.equal(d.id, docs[i]!.id);
      assert.equal(second.tokens[d.start - 1], tok.endOfText);
      assert.equal(second.tokens[d.start + d.length], tok.endOfText);
      // Every train document already round-tripped above; decoding the held-out ones suffices.
      if (s !== "train")
        assert.equal(tok.decode(second.tokens.subarray(d.start, d.start + d.length)), docs[i]!.text);
    });
  }
  // A different vocabulary or corpus content is a different cache entry.
  const small = textCorpus("small", [{ id: "a", text: "the cat sat on the mat with the hat" }]);
  const p1 = prepareTokenizer(small, { cacheDir, vocabSize: 300 });
  const p2 = prepareTokenizer(small, { cacheDir, vocabSize: 280 });
  const p3 = prepareTokenizer(
    textCorpus("small", [{ id: "a", text: "the cat sat on the mat with the bat" }]),
    { cacheDir, vocabSize: 300 },
  );
  assert.equal(new Set([p1.dir, p2.dir, p3.dir, prepared.dir]).size, 4);
  assert.equal(prepareTokenizer(small, { cacheDir, vocabSize: 300 }).fromCache, true);
});

test("pre-tokenisation: GPT-2's pieces, concatenating back to the text", () => {
  assert.deepEqual(preTokenize("Hello, world! It's 2024  now\n\n ok"), [
    "Hello",
    ",",
    " world",
    "!",
    " It",
    "'s",
    " 2024",
    " ",
    " now",
    "\n\n",
    " ok",
  ]);
  const rand = mulberry32(9);
  for (let i = 0; i < 200; i++) {
    const s = randomUnicode(rand, 40);
    assert.equal(preTokenize(s).join(""), s);
  }
});
