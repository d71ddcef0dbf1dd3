/**
 * What item building needs to know about the training split: how often each word
 * occurs (distractors are matched on it), how often each token occurs (the unigram
 * baseline of the word-drop task), and the training text itself, so no item is built
 * from a sentence the models were trained on (Brown repeats some passages across
 * documents: quotations, boilerplate).
 */
import type { Corpus } from "../data/corpus.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { bareWords } from "./sentences.js";

export interface TrainStatistics {
  /** Occurrences of each bare word (exact case) in the train split. */
  readonly wordCounts: ReadonlyMap<string, number>;
  /** Occurrences of each token id when the train split is encoded document by document. */
  readonly tokenCounts: Float64Array;
  readonly tokenTotal: number;
  /** The train documents with whitespace collapsed, one per line. */
  readonly text: string;
  /** Hashes of every run of SHINGLE consecutive words of the train text. */
  readonly shingles: ReadonlySet<number>;
}

/** Words per shingle: long enough to be rare, short enough for 8-word sentences. */
const SHINGLE = 4;

export function trainStatistics(corpus: Corpus, tokenizer: Tokenizer): TrainStatistics {
  const wordCounts = new Map<string, number>();
  const tokenCounts = new Float64Array(tokenizer.vocabSize);
  const shingles = new Set<number>();
  const lines: string[] = [];
  let tokenTotal = 0;
  for (const doc of corpus.documents("train")) {
    for (const w of bareWords(doc.text)) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    const ids = tokenizer.encodeOrdinary(doc.text);
    for (let i = 0; i < ids.length; i++) tokenCounts[ids[i]!]!++;
    tokenTotal += ids.length;
    const line = doc.text.replace(/\s+/g, " ");
    lines.push(line);
    const words = line.split(" ");
    for (let i = 0; i + SHINGLE <= words.length; i++) shingles.add(shingleHash(words, i));
  }
  return { wordCounts, tokenCounts, tokenTotal, text: lines.join("\n"), shingles };
}

/**
 * Whether `text` (whitespace collapsed) occurs anywhere in the train split. Exact; the
 * shingles only skip the full search when some run of interior words (whole words in
 * any occurrence, unlike the first and last, which may be parts of longer words)
 * never occurs in train, which is the case for nearly every held-out sentence.
 */
export function inTrainText(stats: TrainStatistics, text: string): boolean {
  const words = text.split(" ");
  for (let i = 1; i + SHINGLE <= words.length - 1; i++) {
    if (!stats.shingles.has(shingleHash(words, i))) return false;
  }
  return stats.text.includes(text);
}

/** FNV-1a over the words (and separating spaces) starting at `at`. */
function shingleHash(words: readonly string[], at: number): number {
  let h = 0x811c9dc5;
  for (let k = at; k < at + SHINGLE; k++) {
    const w = words[k]!;
    for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 32, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Natural log of the add-one smoothed unigram probability of a token sequence under
 * the train split's token counts: what a model that ignores context would assign.
 */
export function unigramLogProb(stats: TrainStatistics, ids: ArrayLike<number>): number {
  const denom = stats.tokenTotal + stats.tokenCounts.length;
  let s = 0;
  for (let i = 0; i < ids.length; i++) s += Math.log(((stats.tokenCounts[ids[i]!] ?? 0) + 1) / denom);
  return s;
}
