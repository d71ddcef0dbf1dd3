/**
 * Question-answer pairs for the fine-tuning experiment, built from WordNet definitions:
 *   <eos>Question: what does "LEMMA" mean?\nAnswer: DEFINITION<eos>
 * with the loss on the answer tokens only (and the closing <eos>). Training pairs come
 * from the synsets of WordNet's train split, evaluation pairs from its validation split
 * (the same split the continued-training corpus uses), so nothing evaluated is trained on.
 *
 * The evaluation is a 4-way multiple choice: the true definition against three
 * definitions of other held-out synsets of the same part of speech, picked by a hash of
 * the question; the model picks the answer with the lowest mean loss per token.
 */
import { createHash } from "node:crypto";
import { IGNORE_INDEX } from "../nn/layers/cross-entropy.js";
import type { Split } from "../data/corpus.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { readSynsets, wordnetCorpus, type Synset } from "../data/wordnet.js";

export interface QaPair {
  id: string;
  pos: string;
  question: string;
  answer: string;
}

export interface EncodedQa {
  /** Inputs and next-token targets of one row; targets are IGNORE_INDEX outside the answer. */
  tokens: Int32Array;
  targets: Int32Array;
  /** Answer tokens scored (the closing eos included). */
  scored: number;
}

export function questionFor(s: Synset): string {
  return `Question: what does "${s.lemmas[0]!}" mean?\nAnswer:`;
}

let splitCache: Map<string, Split> | null = null;

function splitOf(): Map<string, Split> {
  if (splitCache === null) {
    const c = wordnetCorpus();
    splitCache = new Map();
    for (const split of ["train", "validation", "test"] as const)
      for (const d of c.documents(split)) splitCache.set(d.id, split);
  }
  return splitCache;
}

/** QA pairs of one WordNet split, in file order. */
export function qaPairs(split: Split): QaPair[] {
  const where = splitOf();
  return readSynsets()
    .filter((s) => where.get(s.id) === split)
    .map((s) => ({ id: s.id, pos: s.pos, question: questionFor(s), answer: ` ${s.definition}` }));
}

/**
 * One row of `seq` positions: eos, question, answer, eos, padded. An answer that does
 * not fit is cut (the pair still trains on what fits); null when not even one answer
 * token fits after the question.
 */
export function encodeQa(
  tok: Tokenizer,
  eos: number,
  pair: { question: string; answer: string },
  seq: number,
): EncodedQa | null {
  const q = tok.encodeOrdinary(pair.question);
  const a = tok.encodeOrdinary(pair.answer);
  const all = [eos, ...q, ...a, eos];
  const answerStart = 1 + q.length; // index in `all` of the first answer token
  if (answerStart >= seq) return null;
  const tokens = new Int32Array(seq);
  const targets = new Int32Array(seq).fill(IGNORE_INDEX);
  let scored = 0;
  for (let t = 0; t < seq && t + 1 < all.length; t++) {
    tokens[t] = all[t]!;
    if (t + 1 >= answerStart) {
      targets[t] = all[t + 1]!;
      scored++;
    }
  }
  return { tokens, targets, scored };
}

export interface McQuestion {
  pair: QaPair;
  /** Index 0 is the true answer. */
  choices: string[];
}

function hashInt(s: string): number {
  return createHash("sha256").update(s).digest().readUInt32LE(0);
}

/** `count` held-out questions (evenly spaced over the split) with three distractors each. */
export function mcQuestions(count: number): McQuestion[] {
  const pairs = qaPairs("validation");
  const byPos = new Map<string, QaPair[]>();
  for (const p of pairs) {
    let l = byPos.get(p.pos);
    if (l === undefined) byPos.set(p.pos, (l = []));
    l.push(p);
  }
  const n = Math.min(count, pairs.length);
  const out: McQuestion[] = [];
  for (let i = 0; i < n; i++) {
    const pair = pairs[Math.floor((i * pairs.length) / n)]!;
    const pool = byPos.get(pair.pos)!;
    const choices = [pair.answer];
    for (let k = 0; choices.length < 4 && k < 64; k++) {
      const other = pool[hashInt(`${pair.id}/${k}`) % pool.length]!;
      if (!choices.includes(other.answer)) choices.push(other.answer);
    }
    out.push({ pair, choices });
  }
  return out;
}
