/**
 * Byte-level BPE training. Texts are pre-tokenised once into word types with counts; each
 * merge then touches only the words that contain the chosen pair (an index from pair to
 * words), updates pair counts incrementally, and finds the next best pair with a max-heap
 * whose stale entries are re-checked when they surface. Brown's ~1M words train in seconds.
 *
 * The rule, which the naive reference in the tests follows too: repeatedly merge the adjacent
 * pair with the highest count over all words (each word weighted by how often it occurs);
 * ties go to the pair with the smallest (left id, right id), i.e. older tokens first, bytes
 * by value. Within a word, occurrences merge left to right without overlap ("aaa" with the
 * pair (a, a) becomes "aa a"). Token ids: 0..255 are the bytes, then one id per new token in
 * the order learned. Stops at the vocabulary size or when no pair occurs minFrequency times.
 */
import { PmaError } from "../common/errors.js";
import { preTokenRegex } from "./tokenizer-bytes.js";

/** Bump when training can produce different merges for the same input: part of cache keys. */
export const BPE_TRAIN_VERSION = 1;

export interface BpeTrainOptions {
  /** Learned tokens wanted, bytes included (not special tokens); at least 256. */
  readonly tokens: number;
  /** A pair must occur this often to be merged; default 2 (a pair seen once is memorisation). */
  readonly minFrequency?: number;
}

export interface BpeTrainResult {
  /** The bytes of each token, by id: 256 single bytes, then the merged tokens. */
  readonly tokens: Uint8Array[];
  /** Merges in rank order: [left id, right id, result id]. */
  readonly merges: [number, number, number][];
}

/** Pre-tokenised word types of the texts with their counts, in first-seen order. */
export function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    const re = preTokenRegex();
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

/** Pair keys: left * 2^21 + right stays exact in a double for ids below 2^21. */
const SHIFT = 2 ** 21;

export function trainBpe(words: ReadonlyMap<string, number>, options: BpeTrainOptions): BpeTrainResult {
  const target = options.tokens;
  const minFrequency = Math.max(1, options.minFrequency ?? 2);
  if (!Number.isInteger(target) || target < 256 || target >= SHIFT) {
    throw new PmaError("USAGE", `a byte-level BPE needs between 256 and ${SHIFT - 1} tokens, not ${target}`);
  }
  const t = new BpeTrainer(words);
  while (t.tokens.length < target) {
    const best = t.bestPair();
    if (best === null || best.count < minFrequency) break;
    t.merge(best.key, t.tokenFor(best.key));
  }
  return { tokens: t.tokens, merges: t.merges };
}

/** The state of one BPE training: the words as symbol ids, pair counts, the pair index and heap. */
class BpeTrainer {
  readonly tokens: Uint8Array[] = [];
  readonly merges: [number, number, number][] = [];
  /**
   * Identical byte strings reached by different merges share one id (vocabularies map
   * strings to ids), keyed by the latin1 spelling of the bytes.
   */
  private readonly idOf = new Map<string, number>();
  // All word symbols in one buffer; merging only shortens a word, so it compacts in place.
  private readonly start: Int32Array;
  private readonly len: Int32Array;
  private readonly freq: Float64Array;
  private readonly syms: Int32Array;
  private readonly pairCount = new Map<number, number>();
  /** The words each pair occurs in (maybe no longer: merges only add entries). */
  private readonly where = new Map<number, number[]>();
  private readonly heap = new PairHeap();
  /** Per word, the last merge step that rewrote it: a word listed twice is rewritten once. */
  private readonly seen: Int32Array;
  private readonly merged = new Set<number>();
  private readonly touched = new Set<number>();
  private step = 0;

  constructor(words: ReadonlyMap<string, number>) {
    for (let b = 0; b < 256; b++) this.tokens.push(Uint8Array.of(b));
    for (let b = 0; b < 256; b++) this.idOf.set(String.fromCharCode(b), b);
    const encoder = new TextEncoder();
    const nWords = words.size;
    this.start = new Int32Array(nWords);
    this.len = new Int32Array(nWords);
    this.freq = new Float64Array(nWords);
    this.seen = new Int32Array(nWords).fill(-1);
    const encoded: Uint8Array[] = [];
    let total = 0;
    for (const w of words.keys()) {
      const bytes = encoder.encode(w);
      encoded.push(bytes);
      total += bytes.length;
    }
    this.syms = new Int32Array(total);
    let i = 0;
    let off = 0;
    for (const c of words.values()) {
      const bytes = encoded[i]!;
      this.start[i] = off;
      this.len[i] = bytes.length;
      this.freq[i] = c;
      this.syms.set(bytes, off);
      off += bytes.length;
      i++;
    }
    this.countPairs();
  }

  /** Every adjacent pair of every word, weighted by the word's count, into the index and the heap. */
  private countPairs(): void {
    const { start, len, syms, freq, pairCount } = this;
    for (let w = 0; w < start.length; w++) {
      const s = start[w]!;
      for (let i = s; i < s + len[w]! - 1; i++) {
        const key = syms[i]! * SHIFT + syms[i + 1]!;
        pairCount.set(key, (pairCount.get(key) ?? 0) + freq[w]!);
        this.addWhere(key, w);
      }
    }
    for (const [key, c] of pairCount) this.heap.push(c, key);
  }

  private addWhere(key: number, w: number): void {
    let list = this.where.get(key);
    if (list === undefined) this.where.set(key, (list = []));
    // Words are scanned one at a time, so a repeat within a word is always the last entry.
    if (list[list.length - 1] !== w) list.push(w);
  }

  private bump(key: number, d: number): void {
    this.pairCount.set(key, (this.pairCount.get(key) ?? 0) + d);
  }

  /** The most frequent pair and its count, or null when no pair is left. */
  bestPair(): { key: number; count: number } | null {
    const heap = this.heap;
    while (heap.size > 0) {
      const count = heap.topCount();
      const key = heap.topKey();
      heap.pop();
      const current = this.pairCount.get(key) ?? 0;
      if (current === count) return { key, count };
      // Stale: counts of existing pairs only fall, so re-queue at the true count.
      if (current > 0) heap.push(current, key);
    }
    return null;
  }

  /** The id of the token the pair joins into: a new one, or an existing one with the same bytes. */
  tokenFor(key: number): number {
    const a = Math.floor(key / SHIFT);
    const b = key - a * SHIFT;
    const joined = latin1(this.tokens[a]!) + latin1(this.tokens[b]!);
    let id = this.idOf.get(joined);
    if (id === undefined) {
      id = this.tokens.length;
      const bytes = new Uint8Array(this.tokens[a]!.length + this.tokens[b]!.length);
      bytes.set(this.tokens[a]!, 0);
      bytes.set(this.tokens[b]!, this.tokens[a]!.length);
      this.tokens.push(bytes);
      this.idOf.set(joined, id);
    }
    return id;
  }

  /** Records the merge of pair `key` into `id` and rewrites every word holding the pair. */
  merge(key: number, id: number): void {
    const a = Math.floor(key / SHIFT);
    const b = key - a * SHIFT;
    // A pair can come back only through a reused id; its merge is already in the list.
    if (!this.merged.has(key)) this.merges.push([a, b, id]);
    this.merged.add(key);
    this.touched.clear();
    for (const w of this.where.get(key) ?? []) {
      if (this.seen[w] === this.step) continue;
      this.seen[w] = this.step;
      this.rewriteWord(w, key, a, b, id);
    }
    this.where.delete(key);
    for (const k of this.touched) {
      const c = this.pairCount.get(k)!;
      if (c > 0) this.heap.push(c, k);
    }
    this.step++;
  }

  /**
   * Replaces the occurrences of (a, b) in word w by id, left to right without overlap,
   * moving the counts of the neighbouring pairs to the pairs with the new token.
   */
  private rewriteWord(w: number, key: number, a: number, b: number, id: number): void {
    const { syms } = this;
    const s = this.start[w]!;
    const n = this.len[w]!;
    const c = this.freq[w]!;
    let out = s;
    let i = s;
    while (i < s + n) {
      if (i < s + n - 1 && syms[i] === a && syms[i + 1] === b) {
        if (out > s) {
          const prev = syms[out - 1]!;
          this.bump(prev * SHIFT + a, -c);
          const k = prev * SHIFT + id;
          this.bump(k, c);
          this.touched.add(k);
          this.addWhere(k, w);
        }
        this.bump(key, -c);
        if (i + 2 < s + n) {
          const next = syms[i + 2]!;
          this.bump(b * SHIFT + next, -c);
          const k = id * SHIFT + next;
          this.bump(k, c);
          this.touched.add(k);
          this.addWhere(k, w);
        }
        syms[out++] = id;
        i += 2;
      } else {
        syms[out++] = syms[i++]!;
      }
    }
    this.len[w] = out - s;
  }
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** A binary max-heap on (count, then smallest key). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }
  topCount(): number {
    return this.counts[0]!;
  }
  topKey(): number {
    return this.keys[0]!;
  }
  private before(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }
  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): void {
    const last = this.counts.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    let i = 0;
    const n = this.counts.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.before(l, m)) m = l;
      if (r < n && this.before(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}
