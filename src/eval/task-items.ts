/**
 * The items of the zero-shot suite, built once from the corpus's test split and saved,
 * so every checkpoint of a study is scored on exactly the same items (as the paper
 * scores every merge on the same benchmarks). Items carry their token ids: scoring
 * needs no tokenizer, and a checkpoint with another tokenizer is refused by fingerprint.
 *
 * Tasks (all scored by the model's log-likelihood, zero-shot):
 *  - lambada: the last word of a held-out sentence, read after the sentences before it,
 *    against distractor words of the same token length and nearest training frequency.
 *  - blimp_swap: a held-out sentence against itself with two adjacent words swapped.
 *  - blimp_drop: a held-out sentence against itself with one frequent function-like
 *    word dropped; the comparison subtracts the dropped tokens' unigram log-probability
 *    (SLOR, Lau et al. 2017), since a shorter sentence is otherwise likelier by itself.
 */
import { createHash } from "node:crypto";
import { PmaError } from "../common/errors.js";
import { hash32 } from "../data/batches.js";
import { corpusContentHash, type Corpus } from "../data/corpus.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { tokenizerToJson } from "../data/tokenizer-json.js";
import { CANDIDATE_WORD, DistractorPool } from "./distractors.js";
import { dropItem, swapItem, type PairItem } from "./perturb.js";
import { chunks, lastWord, splitSentences } from "./sentences.js";
import { inTrainText, trainStatistics, type TrainStatistics } from "./train-stats.js";

export type { PairItem } from "./perturb.js";

export const TASK_ITEMS_FORMAT = "pma-eval-items";
/** Bump when the items built from the same inputs change: it is part of every cache key. */
export const TASK_ITEMS_VERSION = 1;

export type TaskName = "lambada" | "blimp_swap" | "blimp_drop";
export const TASK_NAMES: readonly TaskName[] = ["lambada", "blimp_swap", "blimp_drop"];

export interface TaskItemOptions {
  /** Seed of every random choice (sentence order, positions, distractors); default 0. */
  seed?: number;
  /** Items per task; default 300 (fewer when the test split runs out). */
  count?: number;
  /** Candidates per next-word item, the answer included; default 5 (chance 1/5). */
  choices?: number;
  /** Sentence length bounds in words; default 8 and 40. */
  minWords?: number;
  maxWords?: number;
  /** Words of the preceding sentences a next-word item reads before its sentence; default 30. */
  contextWords?: number;
  /** Longest scored sequence in tokens, the leading document separator included; default 128. */
  maxTokens?: number;
  /** A next-word answer or distractor occurs at least this often in train; default 5. */
  minCount?: number;
  /** The word-drop task drops one of the train split's this many most frequent lower-case words; default 50. */
  dropWords?: number;
}

export type ResolvedTaskItemOptions = Required<TaskItemOptions>;

export interface LambadaItem {
  /** Document id in the test split. */
  doc: string;
  /** The held-out sentence whose last word is asked for. */
  sentence: string;
  /** What the model reads: preceding sentences of the document, then the sentence up to its last word. */
  context: string;
  /** The answer first, then the distractors. */
  choices: string[];
  /** Train-split occurrences of each choice. */
  counts: number[];
  /** Document separator, then the context's tokens. */
  contextIds: number[];
  /** Tokens of " " + choice continuing contextIds, per choice. */
  choiceIds: number[][];
}

export interface TaskItems {
  format: typeof TASK_ITEMS_FORMAT;
  version: number;
  corpus: string;
  /** Content hashes of the splits the items were built from and checked against. */
  testHash: string;
  trainHash: string;
  /** tokenizerFingerprint() of the tokenizer whose ids the items hold. */
  tokenizer: string;
  /** Id of the document separator that starts every scored sequence. */
  separator: number;
  options: ResolvedTaskItemOptions;
  lambada: LambadaItem[];
  blimp_swap: PairItem[];
  blimp_drop: PairItem[];
}

export function resolveTaskItemOptions(o: TaskItemOptions = {}): ResolvedTaskItemOptions {
  const r: ResolvedTaskItemOptions = {
    seed: o.seed ?? 0,
    count: o.count ?? 300,
    choices: o.choices ?? 5,
    minWords: o.minWords ?? 8,
    maxWords: o.maxWords ?? 40,
    contextWords: o.contextWords ?? 30,
    maxTokens: o.maxTokens ?? 128,
    minCount: o.minCount ?? 5,
    dropWords: o.dropWords ?? 50,
  };
  for (const [k, v] of Object.entries(r)) {
    const min = k === "seed" || k === "contextWords" ? 0 : k === "choices" || k === "minWords" ? 2 : 1;
    if (!Number.isSafeInteger(v) || v < min)
      throw new PmaError("USAGE", `task item option ${k} must be an integer >= ${min}, got ${v}`);
  }
  if (r.maxWords < r.minWords)
    throw new PmaError("USAGE", `maxWords (${r.maxWords}) is below minWords (${r.minWords})`);
  return r;
}

/**
 * A fingerprint of what a tokenizer does (its vocabulary, merges and special tokens),
 * not of how its file is formatted: two tokenizer.json files that encode alike match.
 */
export function tokenizerFingerprint(tok: Tokenizer): string {
  return createHash("sha256")
    .update(JSON.stringify(tokenizerToJson(tok)))
    .digest("hex");
}

/** Salts of the counter-based random draws, one per kind of choice. */
const SALT = { pairOrder: 1, lambadaOrder: 2, swap: 3, drop: 4, distractors: 5 } as const;

interface Candidate {
  doc: string;
  /** Sentences of its document (for the next-word context). */
  sentences: readonly string[];
  index: number;
  text: string;
  /** Stable id: document number and sentence number. */
  id: number;
}

/**
 * Builds the items of every task from `corpus`'s test split, with the tokenizer the
 * models use. Deterministic: the same corpus, tokenizer and options give identical items.
 */
export function buildTaskItems(
  corpus: Corpus,
  tokenizer: Tokenizer,
  options: TaskItemOptions = {},
): TaskItems {
  const o = resolveTaskItemOptions(options);
  const stats = trainStatistics(corpus, tokenizer);
  const separator = tokenizer.endOfText;
  const candidates = heldOutSentences(corpus, stats, o);
  const order = (salt: number): Candidate[] =>
    candidates
      .map((c) => ({ c, key: hash32(o.seed, salt, c.id) }))
      .sort((a, b) => a.key - b.key || a.c.id - b.c.id)
      .map((x) => x.c);

  const encode = (text: string): number[] => Array.from(tokenizer.encodeOrdinary(text));
  const tokenLengths = new Map<string, number>();
  const tokenLength = (w: string): number => {
    let n = tokenLengths.get(w);
    if (n === undefined) tokenLengths.set(w, (n = tokenizer.encodeOrdinary(` ${w}`).length));
    return n;
  };

  const lambada: LambadaItem[] = [];
  const pool = new DistractorPool(stats.wordCounts, tokenLength, o.minCount);
  for (const c of order(SALT.lambadaOrder)) {
    if (lambada.length >= o.count) break;
    const item = lambadaItem(c, stats, pool, tokenLength, encode, separator, o);
    if (item !== null) lambada.push(item);
  }

  const frequent = [...stats.wordCounts]
    .filter(([w]) => /^[a-z]+$/.test(w))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, o.dropWords)
    .map(([w]) => w);
  const dropSet = new Set(frequent);
  const blimp_swap: PairItem[] = [];
  const blimp_drop: PairItem[] = [];
  // Both pair tasks walk the same sentence order, so they mostly share originals (scored once).
  for (const c of order(SALT.pairOrder)) {
    if (blimp_swap.length >= o.count && blimp_drop.length >= o.count) break;
    if (blimp_swap.length < o.count) {
      const s = swapItem(
        c.doc,
        c.text,
        encode,
        separator,
        o.maxTokens,
        (n) => hash32(o.seed, SALT.swap, c.id) % n,
      );
      if (s !== null) blimp_swap.push(s);
    }
    if (blimp_drop.length < o.count) {
      const d = dropItem(
        c.doc,
        c.text,
        dropSet,
        stats,
        encode,
        separator,
        o.maxTokens,
        (n) => hash32(o.seed, SALT.drop, c.id) % n,
      );
      if (d !== null) blimp_drop.push(d);
    }
  }
  return {
    format: TASK_ITEMS_FORMAT,
    version: TASK_ITEMS_VERSION,
    corpus: corpus.name,
    testHash: corpusContentHash(corpus, "test"),
    trainHash: corpusContentHash(corpus, "train"),
    tokenizer: tokenizerFingerprint(tokenizer),
    separator,
    options: o,
    lambada,
    blimp_swap,
    blimp_drop,
  };
}

/** Test-split sentences of the right length that end with a stop and occur nowhere in train. */
function heldOutSentences(corpus: Corpus, stats: TrainStatistics, o: ResolvedTaskItemOptions): Candidate[] {
  const out: Candidate[] = [];
  let docNo = 0;
  for (const doc of corpus.documents("test")) {
    const sentences = splitSentences(doc.text).map((s) => s.text);
    sentences.forEach((text, index) => {
      const n = chunks(text).length;
      if (n < o.minWords || n > o.maxWords || !/[.!?]["')\]]*$/.test(text)) return;
      // An item whose sentence the models have read in training would measure memory, not skill.
      if (inTrainText(stats, text)) return;
      out.push({ doc: doc.id, sentences, index, text, id: docNo * 1_000_000 + index });
    });
    docNo++;
  }
  return out;
}

function lambadaItem(
  c: Candidate,
  stats: TrainStatistics,
  pool: DistractorPool,
  tokenLength: (w: string) => number,
  encode: (text: string) => number[],
  separator: number,
  o: ResolvedTaskItemOptions,
): LambadaItem | null {
  const last = lastWord(c.text);
  if (last === null || !CANDIDATE_WORD.test(last.word)) return null;
  const count = stats.wordCounts.get(last.word) ?? 0;
  if (count < o.minCount) return null;
  const distractors = pool.pick(
    last.word,
    count,
    tokenLength(last.word),
    o.choices - 1,
    4 * (o.choices - 1),
    o.seed,
    SALT.distractors * 2 ** 32 + c.id,
  );
  if (distractors === null) return null;
  const choices = [last.word, ...distractors];
  // Preceding sentences of the document, nearest first, while they fit the word budget.
  const before: string[] = [];
  let words = 0;
  for (let i = c.index - 1; i >= 0; i--) {
    const n = chunks(c.sentences[i]!).length;
    if (words + n > o.contextWords) break;
    before.unshift(c.sentences[i]!);
    words += n;
  }
  // Drop the oldest context sentences until the longest candidate sequence fits.
  for (;;) {
    const context = [...before, last.context].join(" ");
    const contextIds = encode(context);
    const choiceIds: number[][] = [];
    for (const w of choices) {
      const full = encode(`${context} ${w}`);
      // Tokenising context and word apart must equal tokenising them together, or the
      // scored continuation would not be the text the model would really see.
      if (full.length <= contextIds.length || contextIds.some((id, i) => full[i] !== id)) return null;
      choiceIds.push(full.slice(contextIds.length));
    }
    const longest = 1 + contextIds.length + Math.max(...choiceIds.map((x) => x.length));
    if (longest <= o.maxTokens) {
      return {
        doc: c.doc,
        sentence: c.text,
        context,
        choices,
        counts: choices.map((w) => stats.wordCounts.get(w) ?? 0),
        contextIds: [separator, ...contextIds],
        choiceIds,
      };
    }
    if (before.length === 0) return null;
    before.shift();
  }
}
