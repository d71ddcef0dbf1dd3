/**
 * A corpus is a set of plain-text documents, each with a genre, split by document into
 * train / validation / test. The trainer and tokenizer see only this interface, so any
 * plain-text source (Brown, a second domain, a test's hand-made texts) plugs in the same way.
 */
import { createHash } from "node:crypto";
import { PmaError } from "../common/errors.js";

export type Split = "train" | "validation" | "test";
export const SPLITS: readonly Split[] = ["train", "validation", "test"];

export interface CorpusDocument {
  readonly id: string;
  readonly genre: string;
  readonly text: string;
}

export interface Corpus {
  readonly name: string;
  /** The documents of one split, in a fixed order (the same on every call and machine). */
  documents(split: Split): Iterable<CorpusDocument>;
  /**
   * A hash of exactly what documents(split) yields, for corpora that can compute it without
   * building the texts (Brown hashes its raw files), so a cache hit never parses the corpus.
   * Absent: callers hash the documents themselves (corpusContentHash).
   */
  contentHash?(split: Split): string;
}

export interface SplitOptions {
  /** Fraction of each genre's documents held out for validation; default 0.05. */
  readonly validation?: number;
  /** Fraction of each genre's documents held out for test; default 0.05. */
  readonly test?: number;
}

export interface TextDocument {
  readonly id: string;
  readonly text: string;
  /** Defaults to the corpus name. */
  readonly genre?: string;
  /** Pins the document to a split instead of letting assignSplits choose. */
  readonly split?: Split;
}

/**
 * Assigns each document to a split, stratified by genre so every split sees every genre.
 * Within a genre the documents are ordered by SHA-256 of their id (ties by id): the first
 * max(1, round(n * validation)) go to validation, the next max(1, round(n * test)) to test,
 * the rest to train. Genres with fewer than 3 documents stay wholly in train, since holding
 * out one of two documents would leave too little to learn from.
 * The result depends only on the (id, genre) set, so it is the same on every run and machine;
 * a pure per-id hash threshold would be stable under additions too, but leaves small genres
 * (Brown's science fiction has 6 documents) absent from validation and test by chance.
 */
export function assignSplits(
  docs: Iterable<{ readonly id: string; readonly genre: string }>,
  options: SplitOptions = {},
): Map<string, Split> {
  const fv = options.validation ?? 0.05;
  const ft = options.test ?? 0.05;
  if (!(fv >= 0 && ft >= 0 && fv + ft < 1)) {
    throw new PmaError(
      "USAGE",
      `split fractions validation=${fv}, test=${ft} must be >= 0 and sum to less than 1`,
    );
  }
  const byGenre = new Map<string, { id: string; key: string }[]>();
  const out = new Map<string, Split>();
  for (const d of docs) {
    if (out.has(d.id))
      throw new PmaError("DUPLICATE_NAME", `document id "${d.id}" appears twice; ids must be unique`);
    out.set(d.id, "train");
    let list = byGenre.get(d.genre);
    if (list === undefined) byGenre.set(d.genre, (list = []));
    list.push({ id: d.id, key: sha256Hex(d.id) });
  }
  for (const list of byGenre.values()) {
    const n = list.length;
    if (n < 3) continue;
    list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const nv = fv > 0 ? Math.max(1, Math.round(n * fv)) : 0;
    const nt = ft > 0 ? Math.max(1, Math.round(n * ft)) : 0;
    for (let i = 0; i < n; i++) {
      const doc = list[i]!;
      if (i < nv) out.set(doc.id, "validation");
      else if (i < nv + nt) out.set(doc.id, "test");
    }
  }
  return out;
}

/** A corpus over arbitrary plain texts, split by assignSplits unless a document pins its split. */
export function textCorpus(
  name: string,
  documents: Iterable<TextDocument>,
  options: SplitOptions = {},
): Corpus {
  const docs: CorpusDocument[] = [];
  const pinned = new Map<string, Split>();
  const seen = new Set<string>();
  for (const d of documents) {
    if (seen.has(d.id))
      throw new PmaError(
        "DUPLICATE_NAME",
        `document id "${d.id}" appears twice in corpus "${name}"; ids must be unique`,
      );
    seen.add(d.id);
    docs.push({ id: d.id, genre: d.genre ?? name, text: d.text });
    if (d.split !== undefined) pinned.set(d.id, d.split);
  }
  const assigned = assignSplits(
    docs.filter((d) => !pinned.has(d.id)),
    options,
  );
  const bySplit = new Map<Split, CorpusDocument[]>(SPLITS.map((s) => [s, []]));
  for (const d of docs) bySplit.get(pinned.get(d.id) ?? assigned.get(d.id)!)!.push(d);
  return {
    name,
    documents: (split: Split) => bySplit.get(split)!,
  };
}

/** A hash of a split's documents (ids, genres, texts, in order), used as a cache key. */
export function corpusContentHash(corpus: Corpus, split: Split): string {
  if (corpus.contentHash !== undefined) return corpus.contentHash(split);
  const h = createHash("sha256");
  h.update(`pma-corpus\0${corpus.name}\0${split}\0`);
  for (const d of corpus.documents(split)) {
    // Lengths first, so no choice of texts can collide by moving a boundary.
    h.update(`${d.id.length}:${d.id}\0${d.genre.length}:${d.genre}\0${d.text.length}:`);
    h.update(d.text);
    h.update("\0");
  }
  return h.digest("hex");
}

export function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
