// The WordNet second domain: data-file lines parsed by the format's rules, synsets
// split by id without overlap, and a run config that trains on it with Brown's tokenizer.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseTrainConfig, trainConfigToYaml, parseTrainConfigYaml } from "../src/train/config.js";
import { parseSynsetLine, readSynsets, synsetText, wordnetCorpus } from "../src/data/wordnet.js";

test("a data.noun line: hex word count, adjective markers, definition before the first example", () => {
  const line =
    '00002137 03 n 02 abstraction 0 abstract_entity 0 001 @ 00001740 n 0000 | a general concept; "an example here"; "another one"  ';
  const s = parseSynsetLine(line, "noun");
  assert.deepEqual(s, {
    id: "noun-00002137",
    pos: "noun",
    lemmas: ["abstraction", "abstract entity"],
    definition: "a general concept",
    examples: ["an example here", "another one"],
  });
  assert.equal(
    synsetText(s!),
    'abstraction, abstract entity: a general concept; "an example here"; "another one".',
  );
  const adj = parseSynsetLine(
    "00013556 00 s 0b galore(ip) 0 a 0 b 0 c 0 d 0 e 0 f 0 g 0 h 0 i 0 j 0 000 | in abundance",
    "adj",
  );
  assert.equal(adj?.lemmas.length, 11);
  assert.equal(adj?.lemmas[0], "galore");
  assert.equal(parseSynsetLine("  1 This software and database is being provided", "noun"), null);
});

test("the installed database parses into >100k synsets whose splits are disjoint", () => {
  const all = readSynsets();
  assert.ok(all.length > 100_000, `${all.length} synsets`);
  assert.equal(new Set(all.map((s) => s.id)).size, all.length);
  const c = wordnetCorpus();
  const ids = { train: new Set<string>(), validation: new Set<string>(), test: new Set<string>() };
  for (const split of ["train", "validation", "test"] as const)
    for (const d of c.documents(split)) ids[split].add(d.id);
  assert.equal(ids.train.size + ids.validation.size + ids.test.size, all.length);
  for (const id of ids.validation) assert.ok(!ids.train.has(id) && !ids.test.has(id));
  assert.ok(
    ids.validation.size > 4000 && ids.validation.size < 8000,
    `${ids.validation.size} validation synsets`,
  );
});

test("data.tokenizer names the corpus the BPE comes from and survives a YAML round trip", () => {
  const c = parseTrainConfig({ data: { corpus: "wordnet", tokenizer: "brown" } }, "ct.yaml");
  assert.equal(c.data.corpus, "wordnet");
  assert.equal(c.data.tokenizer, "brown");
  assert.deepEqual(parseTrainConfigYaml(trainConfigToYaml(c), "again.yaml"), c);
  assert.equal(parseTrainConfig({}, "x").data.tokenizer, null);
  assert.throws(
    () => parseTrainConfig({ data: { tokenizer: "shakespeare" } }, "bad.yaml"),
    /data\.tokenizer/,
  );
});
