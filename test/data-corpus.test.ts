import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BROWN_GENRES, brownCorpus, brownDirectory } from "../src/data/brown.js";
import { brownToText, detokenize } from "../src/data/brown-text.js";
import {
  assignSplits,
  corpusContentHash,
  SPLITS,
  textCorpus,
  type CorpusDocument,
  type Split,
} from "../src/data/corpus.js";
import { isPmaError } from "../src/common/errors.js";

const dir = brownDirectory();
const files = readdirSync(dir)
  .filter((n) => /^c[a-r]\d\d$/.test(n))
  .sort();
const corpus = brownCorpus();
const bySplit = new Map<Split, CorpusDocument[]>(SPLITS.map((s) => [s, [...corpus.documents(s)]]));
const all = SPLITS.flatMap((s) => bySplit.get(s)!);

test("Brown: 500 documents in 15 genres, each split holds every genre, ~90/5/5", () => {
  assert.equal(files.length, 500, "the package ships 500 tagged files");
  const counts = SPLITS.map((s) => bySplit.get(s)!.length);
  assert.deepEqual(counts, [450, 25, 25]);
  for (const s of SPLITS) {
    const genres = new Set(bySplit.get(s)!.map((d) => d.genre));
    assert.equal(genres.size, 15, `${s} has every genre`);
    for (const d of bySplit.get(s)!) assert.ok(d.text.length > 5000, `${d.id} has text`);
  }
  // The genre comes from cats.txt and must match the file letter (ca01 -> a -> news).
  const letterToName = new Map(BROWN_GENRES.map((g) => [g.letter, g.name]));
  for (const d of all) assert.equal(d.genre, letterToName.get(d.id[1]!), d.id);
});

test("Brown splits: disjoint, covering every file, stable across rebuilds and input order", () => {
  const ids = all.map((d) => d.id);
  assert.equal(new Set(ids).size, ids.length, "no document in two splits");
  assert.deepEqual([...ids].sort(), files, "every file is in some split");
  const again = brownCorpus();
  for (const s of SPLITS) {
    assert.deepEqual(
      [...again.documents(s)].map((d) => d.id),
      bySplit.get(s)!.map((d) => d.id),
      s,
    );
    assert.equal(again.contentHash!(s), corpus.contentHash!(s));
  }
  // The assignment depends on the set of documents, not the order they are listed in.
  const docs = all.map((d) => ({ id: d.id, genre: d.genre }));
  const reversed = assignSplits([...docs].reverse());
  for (const s of SPLITS) for (const d of bySplit.get(s)!) assert.equal(reversed.get(d.id), s);
  assert.notEqual(corpus.contentHash!("train"), corpus.contentHash!("validation"));
});

test("Brown text: no part-of-speech tags left, words kept in order", () => {
  // The tag set, read from the raw files independently of the parser.
  const tags = new Set<string>();
  const raw = new Map<string, string>();
  for (const f of files) {
    const src = readFileSync(join(dir, f), "utf8");
    raw.set(f, src);
    for (const tok of src.split(/\s+/)) if (tok.length > 0) tags.add(tok.slice(tok.lastIndexOf("/") + 1));
  }
  assert.ok(tags.has("nn") && tags.has("np-tl") && tags.has("vbd"));
  // A tag left behind shows as `/nn`, `/vbd`, `/np-tl` ... after a word. Words themselves
  // may hold such a substring (cj76 has "material/hr./*0F./in."), so the text must contain
  // exactly as many as the source's words do, not more.
  const tagLike = new RegExp(
    `/(?:${[...tags].filter((t) => /^[a-z]+$/.test(t)).join("|")})(?:-tl|-hl|-nc)*\\b`,
    "g",
  );
  let inWords = 0;
  let inText = 0;
  for (const d of all) {
    for (const tok of raw.get(d.id)!.split(/\s+/))
      inWords += (tok.slice(0, tok.lastIndexOf("/")).match(tagLike) ?? []).length;
    inText += (d.text.match(tagLike) ?? []).length;
  }
  assert.ok(inText <= 2, `tag-like substrings in the text: ${inText}`);
  assert.equal(inText, inWords);
  for (const d of all) {
    assert.ok(!d.text.includes("``") && !d.text.includes("''"), `${d.id}: corpus quote marks converted`);
    // Non-space characters in order equal the source words with quotes converted, minus the
    // full stop that an abbreviation ending a sentence absorbs ("Jr." "." -> "Jr.").
    const words = raw
      .get(d.id)!
      .split(/\s+/)
      .filter((t) => t.length > 0)
      .map((t) => t.slice(0, t.lastIndexOf("/")));
    let expected = "";
    let prev = "";
    for (const w of words) {
      if (w === "." && prev.length > 1 && prev.endsWith(".")) continue;
      expected += w === "``" ? '"' : w.replaceAll("''", '"');
      prev = w;
    }
    assert.equal(d.text.replace(/\s+/g, ""), expected.replace(/\s+/g, ""), d.id);
  }
});

test("Brown text: paragraphs, sentences and headlines laid out as in the source", () => {
  const ca01 = all.find((d) => d.id === "ca01")!.text;
  const paragraphs = ca01.split("\n\n");
  assert.equal(
    paragraphs[0],
    'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.',
  );
  // A headline is its own paragraph, followed by the sentence that shared its block.
  const h = paragraphs.indexOf("Merger proposed");
  assert.ok(h > 0);
  assert.ok(paragraphs[h + 1]!.startsWith('However, the jury said it believes "these two offices'));
  // Two sentences on consecutive lines of one block form one paragraph.
  assert.ok(ca01.includes('policies". It urged that the city "take steps to remedy" this problem.'));
  assert.ok(!/ {2}|\n{3}|^\s|\s$/.test(ca01), "no doubled spaces, no triple newlines, trimmed");
});

test("detokenize: spacing of punctuation, quotes, brackets and dashes", () => {
  const cases: [string[], string][] = [
    [
      ["``", "Only", "a", "handful", "''", ",", "the", "jury", "said", "."],
      '"Only a handful", the jury said.',
    ],
    [["He", "said", ",", "'", "Don't", "worry", "'", "."], "He said, 'Don't worry'."],
    [["the", "'", "Met", "'", "and", "the", "'", "Mets", "'"], "the 'Met' and the 'Mets'"],
    [["it", "(", "the", "resolution", ")", "passed", ";", "yes", "?"], "it (the resolution) passed; yes?"],
    [["voted", "no", "--", "and", "there"], "voted no--and there"],
    [["won", "by", "Ivan", "Allen", "Jr.", "."], "won by Ivan Allen Jr."],
    [["cost", "$172", "and", "50%", "!"], "cost $172 and 50%!"],
    [["a", "10''", "board"], 'a 10" board'],
  ];
  for (const [words, text] of cases) assert.equal(detokenize(words), text);
  assert.equal(
    brownToText("\n\n\tA/at dog/nn ./.\nIt/pps ran/vbd ./.\n\n\n\tEnd/nn ./.\n"),
    "A dog. It ran.\n\nEnd.",
  );
});

test("textCorpus: any plain texts, pinned splits honoured, hash follows content", () => {
  const docs = Array.from({ length: 40 }, (_, i) => ({ id: `doc${i}`, text: `text number ${i}` }));
  const c = textCorpus("notes", [...docs, { id: "pinned", text: "held out", split: "test" as const }]);
  const seen = new Map<string, Split>();
  for (const s of SPLITS) for (const d of c.documents(s)) seen.set(d.id, s);
  assert.equal(seen.size, 41);
  assert.equal(seen.get("pinned"), "test");
  assert.deepEqual(
    SPLITS.map((s) => [...c.documents(s)].length),
    [36, 2, 3],
  );
  assert.equal([...c.documents("train")][0]!.genre, "notes", "genre defaults to the corpus name");
  const h = corpusContentHash(c, "train");
  assert.equal(corpusContentHash(textCorpus("notes", docs), "train"), h, "same documents, same hash");
  const edited = docs.map((d, i) => (i === 39 ? { ...d, text: d.text + "!" } : d));
  const changedSplit = SPLITS.find((s) => [...c.documents(s)].some((d) => d.id === "doc39"))!;
  assert.notEqual(
    corpusContentHash(textCorpus("notes", edited), changedSplit),
    corpusContentHash(c, changedSplit),
  );
  assert.throws(
    () =>
      textCorpus("dup", [
        { id: "a", text: "1" },
        { id: "a", text: "2" },
      ]),
    (e) => isPmaError(e, "DUPLICATE_NAME"),
  );
  // Tiny genres stay in train rather than losing half their text to held-out splits.
  const tiny = assignSplits([
    { id: "x", genre: "g" },
    { id: "y", genre: "g" },
  ]);
  assert.deepEqual([...tiny.values()], ["train", "train"]);
});
