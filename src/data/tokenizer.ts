/**
 * A byte-level BPE tokenizer that encodes exactly as the Hugging Face `tokenizers` library
 * does for the same tokenizer.json: special tokens are cut out of the text first, the rest is
 * pre-tokenised with GPT-2's pattern, and each pre-token's UTF-8 bytes are merged by rank
 * (lowest rank first, leftmost first among equals, one merge at a time, as the library's
 * Word::merge_all). Results are cached per pre-token, which is what makes encoding fast:
 * natural text repeats a few tens of thousands of word types.
 *
 * Round trip: decode(encode(s)) === s for every well-formed string. JavaScript strings can
 * also hold lone surrogates, which have no UTF-8 form; they are encoded as U+FFFD (as
 * TextEncoder does), so such a string comes back with U+FFFD in their place.
 */
import { PmaError } from "../common/errors.js";
import { MaxHeap } from "../common/max-heap.js";
import { preTokenRegex } from "./tokenizer-bytes.js";

export const END_OF_TEXT = "<|endoftext|>";

export interface TokenizerParts {
  /** Bytes of each ordinary token by id; `undefined` at ids held by special tokens. */
  readonly tokens: readonly (Uint8Array | undefined)[];
  /** Merges in rank order: [left id, right id, result id]. */
  readonly merges: readonly (readonly [number, number, number])[];
  /** Special tokens (matched verbatim in text, never merged) and their ids. */
  readonly specials: ReadonlyMap<string, number>;
}

/** Pre-tokens cached before the cache is dropped: bounds memory on unbounded vocabularies. */
const CACHE_LIMIT = 1 << 20;
/** Pair keys for merge lookup, exact in a double for ids below 2^21. */
const SHIFT = 2 ** 21;

export class Tokenizer {
  readonly vocabSize: number;
  readonly specials: ReadonlyMap<string, number>;
  private readonly tokenBytes: readonly (Uint8Array | undefined)[];
  private readonly mergeList: readonly (readonly [number, number, number])[];
  /** pair key -> rank * SHIFT + result id */
  private readonly ranks = new Map<number, number>();
  private readonly byteId = new Int32Array(256);
  private readonly specialText: readonly string[];
  private readonly specialRegex: RegExp | undefined;
  private readonly cache = new Map<string, Int32Array>();
  private readonly encoder = new TextEncoder();

  constructor(parts: TokenizerParts) {
    this.tokenBytes = parts.tokens;
    this.mergeList = parts.merges;
    this.specials = parts.specials;
    let size = parts.tokens.length;
    for (const id of parts.specials.values()) size = Math.max(size, id + 1);
    if (size >= SHIFT)
      throw new PmaError("USAGE", `a vocabulary of ${size} tokens is too large (limit ${SHIFT - 1})`);
    this.vocabSize = size;
    const special = new Array<string>(size).fill("");
    for (const [text, id] of parts.specials) {
      if (parts.tokens[id] !== undefined)
        throw new PmaError(
          "USAGE",
          `special token ${JSON.stringify(text)} shares id ${id} with an ordinary token`,
        );
      special[id] = text;
    }
    this.specialText = special;
    // Single-byte tokens seed every word, so all 256 must exist.
    this.byteId.fill(-1);
    parts.tokens.forEach((t, id) => {
      if (t !== undefined && t.length === 1 && this.byteId[t[0]!] === -1) this.byteId[t[0]!] = id;
    });
    const missing = this.byteId.indexOf(-1);
    if (missing >= 0)
      throw new PmaError(
        "USAGE",
        `the vocabulary has no token for byte 0x${missing.toString(16)}; a byte-level BPE needs all 256`,
      );
    parts.merges.forEach(([a, b, id], rank) => {
      const key = a * SHIFT + b;
      // The tokenizers library keeps the last rank listed for a repeated pair.
      this.ranks.set(key, rank * SHIFT + id);
    });
    // Longest first, so a special token that contains another wins (leftmost-longest match).
    const texts = [...parts.specials.keys()].sort((x, y) => y.length - x.length);
    this.specialRegex = texts.length === 0 ? undefined : new RegExp(texts.map(escapeRegex).join("|"), "gu");
  }

  /** The id of `<|endoftext|>`, used as BOS, EOS and document separator. */
  get endOfText(): number {
    const id = this.specials.get(END_OF_TEXT);
    if (id === undefined) throw new PmaError("USAGE", `this tokenizer has no ${END_OF_TEXT} token`);
    return id;
  }

  /** Merges in rank order, [left id, right id, result id]. */
  get merges(): readonly (readonly [number, number, number])[] {
    return this.mergeList;
  }

  /** The bytes of an ordinary token, undefined for special tokens and unused ids. */
  bytesOf(id: number): Uint8Array | undefined {
    return this.tokenBytes[id];
  }

  /** The text of a special token id, or undefined. */
  specialOf(id: number): string | undefined {
    const t = this.specialText[id];
    return t === undefined || t === "" ? undefined : t;
  }

  /** Encodes as the `tokenizers` library does: special token texts in `text` become their ids. */
  encode(text: string): Int32Array {
    if (this.specialRegex === undefined) return this.encodeOrdinary(text);
    const out = new IdBuffer();
    const re = new RegExp(this.specialRegex);
    let last = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > last) this.encodeInto(text.slice(last, m.index), out);
      out.push(this.specials.get(m[0])!);
      last = m.index + m[0].length;
    }
    if (last < text.length) this.encodeInto(text.slice(last), out);
    return out.result();
  }

  /**
   * Encodes all of `text` as text, special token spellings included. Corpus documents go
   * through here, so a document that quotes "<|endoftext|>" cannot forge a boundary.
   */
  encodeOrdinary(text: string): Int32Array {
    const out = new IdBuffer();
    this.encodeInto(text, out);
    return out.result();
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      let bytes = this.tokenBytes[id];
      if (bytes === undefined) {
        const special = this.specialOf(id);
        if (special === undefined)
          throw new PmaError(
            "RANGE_INVALID",
            `token id ${id} is not in the vocabulary (size ${this.vocabSize})`,
          );
        bytes = this.encoder.encode(special);
      }
      parts.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    // A slice of ids may end inside a character; like the tokenizers library, decode the
    // broken bytes as U+FFFD rather than fail.
    return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(all);
  }

  private encodeInto(text: string, out: IdBuffer): void {
    const re = preTokenRegex();
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const word = m[0];
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.bpe(this.encoder.encode(word));
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      out.pushAll(ids);
    }
  }

  /** Merges one word's bytes, lowest rank first and leftmost among equal ranks. */
  private bpe(bytes: Uint8Array): Int32Array {
    const n = bytes.length;
    if (n >= POS)
      throw new PmaError("USAGE", `a pre-token of ${n} bytes is too long to encode (limit ${POS - 1})`);
    const sym = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      sym[i] = this.byteId[bytes[i]!]!;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Queue entries: rank * 2^26 + position (positions of one pre-token stay far below 2^26),
    // negated so the max-heap yields the lowest rank, then the leftmost position.
    const heap = new MaxHeap();
    const offer = (pos: number): void => {
      const nx = next[pos]!;
      if (nx < 0) return;
      const r = this.ranks.get(sym[pos]! * SHIFT + sym[nx]!);
      if (r !== undefined) heap.push(-(Math.floor(r / SHIFT) * POS + pos));
    };
    for (let i = 0; i + 1 < n; i++) offer(i);
    let alive = n;
    while (heap.size > 0) {
      const top = -heap.pop();
      const pos = top % POS;
      const rank = (top - pos) / POS;
      if (sym[pos] === -1) continue;
      const nx = next[pos]!;
      if (nx < 0) continue;
      const r = this.ranks.get(sym[pos]! * SHIFT + sym[nx]!);
      // Expired entry: the pair at pos no longer merges into what was queued. (The library
      // compares result ids, not ranks; so does this, to agree even on odd merge lists.)
      if (r === undefined || r % SHIFT !== this.mergeList[rank]![2]) continue;
      sym[pos] = r % SHIFT;
      sym[nx] = -1;
      alive--;
      const after = next[nx]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      if (prev[pos]! >= 0) offer(prev[pos]!);
      offer(pos);
    }
    const out = new Int32Array(alive);
    let k = 0;
    for (let i = 0; i >= 0 && k < alive; i = next[i]!) out[k++] = sym[i]!;
    return out;
  }
}

const POS = 2 ** 26;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/** A growable Int32Array. */
class IdBuffer {
  private buf = new Int32Array(256);
  private n = 0;
  push(id: number): void {
    if (this.n === this.buf.length) this.grow(1);
    this.buf[this.n++] = id;
  }
  pushAll(ids: Int32Array): void {
    if (this.n + ids.length > this.buf.length) this.grow(ids.length);
    this.buf.set(ids, this.n);
    this.n += ids.length;
  }
  result(): Int32Array {
    return this.buf.slice(0, this.n);
  }
  private grow(extra: number): void {
    const next = new Int32Array(Math.max(this.buf.length * 2, this.n + extra));
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
  }
}
