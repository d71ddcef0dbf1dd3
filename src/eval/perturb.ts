/**
 * Minimal pairs for the grammaticality tasks: a held-out sentence ("good") and the same
 * sentence with one local change ("bad"). Changes touch bare words only (letters, no
 * attached punctuation) and never the first word, so no capital letter or stray comma
 * gives the answer away; the model should simply find the original likelier.
 */
import type { TrainStatistics } from "./train-stats.js";
import { unigramLogProb } from "./train-stats.js";
import { chunks, isBareWord } from "./sentences.js";

export interface PairItem {
  /** Document id in the test split. */
  doc: string;
  good: string;
  bad: string;
  /** Document separator, then the tokens of each sentence. */
  goodIds: number[];
  badIds: number[];
  /** Word index of the change: the first of the two swapped words, or the dropped word. */
  position: number;
  /** The two swapped words, or the one dropped word. */
  words: string[];
  /**
   * Unigram log-probability (train token counts, add-one) of what `good` has and `bad`
   * lacks: the dropped word's tokens; 0 for a swap (same tokens, other order). Scoring
   * compares log p(good) - log p(bad) with it, so a context-blind model scores a tie.
   */
  unigramLogProb: number;
}

/** `good` with the bare words at `position` and `position + 1` swapped; null if no such pair differs. */
export function swapItem(
  doc: string,
  good: string,
  encode: (t: string) => number[],
  separator: number,
  maxTokens: number,
  draw: (n: number) => number,
): PairItem | null {
  const w = chunks(good);
  const positions: number[] = [];
  for (let i = 1; i + 1 < w.length; i++) {
    if (isBareWord(w[i]!) && isBareWord(w[i + 1]!) && w[i]!.toLowerCase() !== w[i + 1]!.toLowerCase())
      positions.push(i);
  }
  if (positions.length === 0) return null;
  const p = positions[draw(positions.length)]!;
  const swapped = [...w];
  [swapped[p], swapped[p + 1]] = [w[p + 1]!, w[p]!];
  const bad = swapped.join(" ");
  const goodIds = [separator, ...encode(good)];
  const badIds = [separator, ...encode(bad)];
  if (Math.max(goodIds.length, badIds.length) > maxTokens) return null;
  return { doc, good, bad, goodIds, badIds, position: p, words: [w[p]!, w[p + 1]!], unigramLogProb: 0 };
}

/** `good` without one of the `droppable` words (not the first word); null if it has none. */
export function dropItem(
  doc: string,
  good: string,
  droppable: ReadonlySet<string>,
  stats: TrainStatistics,
  encode: (t: string) => number[],
  separator: number,
  maxTokens: number,
  draw: (n: number) => number,
): PairItem | null {
  const w = chunks(good);
  const positions: number[] = [];
  for (let i = 1; i < w.length; i++) if (droppable.has(w[i]!)) positions.push(i);
  if (positions.length === 0) return null;
  const p = positions[draw(positions.length)]!;
  const bad = [...w.slice(0, p), ...w.slice(p + 1)].join(" ");
  const goodIds = [separator, ...encode(good)];
  const badIds = [separator, ...encode(bad)];
  if (goodIds.length > maxTokens) return null;
  // The word's tokens in the sentence must be exactly those of " word" between an
  // unchanged prefix and suffix, or the unigram correction would subtract the wrong thing.
  const wordIds = encode(` ${w[p]!}`);
  let pre = 0;
  while (pre < badIds.length && goodIds[pre] === badIds[pre]) pre++;
  // (A repeated token can push `pre` past where the word starts; any split that passes
  // still removes exactly the word's tokens, which is all the correction needs.)
  const same =
    goodIds.length === badIds.length + wordIds.length &&
    wordIds.every((id, i) => goodIds[pre + i] === id) &&
    badIds.slice(pre).every((id, i) => goodIds[pre + wordIds.length + i] === id);
  if (!same) return null;
  return {
    doc,
    good,
    bad,
    goodIds,
    badIds,
    position: p,
    words: [w[p]!],
    unigramLogProb: unigramLogProb(stats, wordIds),
  };
}
