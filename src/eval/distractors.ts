/**
 * Distractor words for the next-word task, matched to the answer so that likelihood
 * differences come from the context and not from the words themselves: the same
 * number of tokens (a sum of log-probs over more tokens is lower by itself) and the
 * closest training frequency (a model that only knows frequencies is then near chance).
 */
import { hash32 } from "../data/batches.js";

/** Lower-case words of three or more letters: content-like, and comparable in form to each other. */
export const CANDIDATE_WORD = /^[a-z]{3,}$/;

interface Entry {
  readonly word: string;
  readonly logCount: number;
}

export class DistractorPool {
  /** Words by token count, each list sorted by count (then word, for determinism). */
  private readonly byLength = new Map<number, Entry[]>();

  /**
   * @param counts training occurrences of each word
   * @param tokenLength tokens of the word as it continues a sentence (" " + word)
   * @param minCount words seen fewer times in training are never used
   */
  constructor(counts: ReadonlyMap<string, number>, tokenLength: (word: string) => number, minCount: number) {
    for (const [word, count] of counts) {
      if (count < minCount || !CANDIDATE_WORD.test(word)) continue;
      const n = tokenLength(word);
      let list = this.byLength.get(n);
      if (list === undefined) this.byLength.set(n, (list = []));
      list.push({ word, logCount: Math.log(count) });
    }
    for (const list of this.byLength.values())
      list.sort((a, b) => a.logCount - b.logCount || (a.word < b.word ? -1 : a.word > b.word ? 1 : 0));
  }

  /**
   * `k` distractors for `answer`: drawn (by a hash of seed and item) from the `pool`
   * words of the same token length nearest to it in log frequency. Null when fewer
   * than `k` such words exist.
   */
  pick(
    answer: string,
    answerCount: number,
    answerTokens: number,
    k: number,
    pool: number,
    seed: number,
    item: number,
  ): string[] | null {
    const list = this.byLength.get(answerTokens) ?? [];
    const target = Math.log(answerCount);
    // Binary search for the first entry at or above the answer's log count.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.logCount < target) lo = mid + 1;
      else hi = mid;
    }
    // Walk outwards, always taking the nearer side: the nearest words in frequency first.
    const near: string[] = [];
    let left = lo - 1;
    let right = lo;
    while (near.length < pool && (left >= 0 || right < list.length)) {
      const dl = left >= 0 ? target - list[left]!.logCount : Infinity;
      const dr = right < list.length ? list[right]!.logCount - target : Infinity;
      const e = dl < dr ? list[left--]! : list[right++]!;
      if (e.word !== answer) near.push(e.word);
    }
    if (near.length < k) return null;
    // Partial Fisher-Yates with counter-based randomness: the same (seed, item) always
    // draws the same words, whatever else was built before.
    for (let i = 0; i < k; i++) {
      const j = i + (hash32(seed, item, i) % (near.length - i));
      [near[i], near[j]] = [near[j]!, near[i]!];
    }
    return near.slice(0, k);
  }
}
