/**
 * Training a tokenizer on a corpus and tokenising its splits, both cached on disk so a second
 * run reads files instead of recomputing. The tokenizer is keyed by the training split's
 * content hash, the vocabulary size, the special tokens, minFrequency and the training
 * algorithm's version; a split's token file by the tokenizer's key and the split's hash.
 *
 * Layout under the cache directory ($PMA_CACHE_DIR, else ~/.cache/pma):
 *   tokenizers/<corpus>-<vocab>-<key>/tokenizer.json    Hugging Face format
 *   tokenizers/<corpus>-<vocab>-<key>/train.json         how it was trained
 *   tokenizers/<corpus>-<vocab>-<key>/<split>-<hash>.u16 token ids, little-endian (.i32 above 65,536 ids)
 *   tokenizers/<corpus>-<vocab>-<key>/<split>-<hash>.json document index of that file
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { writeFileAtomicSync } from "../common/atomic-dir.js";
import { corpusContentHash, sha256Hex, type Corpus, type Split } from "./corpus.js";
import { loadTokenizer, saveTokenizer } from "./tokenizer-json.js";
import { BPE_TRAIN_VERSION, countWords, trainBpe } from "./tokenizer-train.js";
import { END_OF_TEXT, Tokenizer } from "./tokenizer.js";

export interface TokenizerSpec {
  /** Total vocabulary, special tokens included; default 4096. */
  readonly vocabSize?: number;
  /** Default [END_OF_TEXT]; the first is the document separator. */
  readonly specials?: readonly string[];
  /** See BpeTrainOptions; default 2. */
  readonly minFrequency?: number;
}

export interface TrainStats {
  readonly corpus: string;
  readonly corpusHash: string;
  readonly vocabSize: number;
  readonly merges: number;
  readonly wordTypes: number;
  readonly countMs: number;
  readonly trainMs: number;
}

export interface PreparedTokenizer {
  readonly tokenizer: Tokenizer;
  /** The cache folder holding tokenizer.json and the split token files. */
  readonly dir: string;
  readonly key: string;
  readonly fromCache: boolean;
  readonly stats: TrainStats;
}

export interface TokenizedDocument {
  readonly id: string;
  readonly genre: string;
  /** Offset of the document's first token in `tokens` (the separator sits just before it). */
  readonly start: number;
  readonly length: number;
}

export interface TokenizedSplit {
  /** `<|endoftext|>` doc1 `<|endoftext|>` doc2 ... `<|endoftext|>`: every document framed. */
  readonly tokens: Uint16Array | Int32Array;
  readonly documents: readonly TokenizedDocument[];
  readonly fromCache: boolean;
}

export function cacheDirectory(): string {
  const env = process.env["PMA_CACHE_DIR"];
  return env !== undefined && env !== "" ? env : join(homedir(), ".cache", "pma");
}

/** Trains a byte-level BPE on the corpus's train split (no cache). */
export function trainTokenizer(
  corpus: Corpus,
  spec: TokenizerSpec = {},
): { tokenizer: Tokenizer; stats: TrainStats } {
  const { vocabSize, specials, minFrequency } = resolve(spec);
  const t0 = performance.now();
  const texts = (function* () {
    for (const d of corpus.documents("train")) yield d.text;
  })();
  const words = countWords(texts);
  const t1 = performance.now();
  const result = trainBpe(words, { tokens: vocabSize - specials.length, minFrequency });
  const t2 = performance.now();
  // Special tokens follow the learned ones, so ids stay dense even if training stopped early.
  const specialIds = new Map(specials.map((s, i) => [s, result.tokens.length + i]));
  const tokenizer = new Tokenizer({ tokens: result.tokens, merges: result.merges, specials: specialIds });
  return {
    tokenizer,
    stats: {
      corpus: corpus.name,
      corpusHash: corpusContentHash(corpus, "train"),
      vocabSize: tokenizer.vocabSize,
      merges: result.merges.length,
      wordTypes: words.size,
      countMs: t1 - t0,
      trainMs: t2 - t1,
    },
  };
}

/** The tokenizer for a corpus, from the cache or trained and cached. */
export function prepareTokenizer(
  corpus: Corpus,
  spec: TokenizerSpec & { cacheDir?: string } = {},
): PreparedTokenizer {
  const { vocabSize, specials, minFrequency } = resolve(spec);
  const corpusHash = corpusContentHash(corpus, "train");
  const key = sha256Hex(
    JSON.stringify({ algorithm: `bpe-v${BPE_TRAIN_VERSION}`, corpusHash, vocabSize, specials, minFrequency }),
  ).slice(0, 16);
  const dir = join(
    spec.cacheDir ?? cacheDirectory(),
    "tokenizers",
    `${safeName(corpus.name)}-${vocabSize}-${key}`,
  );
  const file = join(dir, "tokenizer.json");
  const statsFile = join(dir, "train.json");
  if (existsSync(file) && existsSync(statsFile)) {
    return {
      tokenizer: loadTokenizer(file),
      dir,
      key,
      fromCache: true,
      stats: JSON.parse(readFileSync(statsFile, "utf8")) as TrainStats,
    };
  }
  const { tokenizer, stats } = trainTokenizer(corpus, { vocabSize, specials, minFrequency });
  makeDir(dir);
  saveTokenizer(tokenizer, file);
  writeFileAtomicSync(statsFile, JSON.stringify(stats, null, 2) + "\n");
  return { tokenizer, dir, key, fromCache: false, stats };
}

/** One split as a framed token stream, from the cache or encoded and cached. */
export function tokenizeSplit(corpus: Corpus, split: Split, prepared: PreparedTokenizer): TokenizedSplit {
  const tok = prepared.tokenizer;
  const wide = tok.vocabSize > 65536;
  const base = join(prepared.dir, `${split}-${corpusContentHash(corpus, split).slice(0, 16)}`);
  const dataFile = `${base}.${wide ? "i32" : "u16"}`;
  const indexFile = `${base}.json`;
  const cached = readCached(dataFile, indexFile, wide);
  if (cached !== undefined) return cached;

  const sep = tok.specials.get(END_OF_TEXT) ?? tok.specials.values().next().value;
  if (sep === undefined)
    throw new PmaError("USAGE", "tokenising a corpus needs a special token to separate documents");
  const parts: Int32Array[] = [];
  const documents: TokenizedDocument[] = [];
  let total = 1;
  for (const d of corpus.documents(split)) {
    const ids = tok.encodeOrdinary(d.text);
    documents.push({ id: d.id, genre: d.genre, start: total, length: ids.length });
    parts.push(ids);
    total += ids.length + 1;
  }
  const tokens = wide ? new Int32Array(total) : new Uint16Array(total);
  tokens[0] = sep;
  let off = 1;
  for (const p of parts) {
    tokens.set(p, off);
    off += p.length;
    tokens[off++] = sep;
  }
  makeDir(prepared.dir);
  writeFileAtomicSync(dataFile, littleEndianBytes(tokens));
  // The index goes last: a data file without its index is treated as absent.
  writeFileAtomicSync(indexFile, JSON.stringify({ tokens: total, documents }) + "\n");
  return { tokens, documents, fromCache: false };
}

function readCached(dataFile: string, indexFile: string, wide: boolean): TokenizedSplit | undefined {
  if (!existsSync(indexFile) || !existsSync(dataFile)) return undefined;
  let index: { tokens: number; documents: TokenizedDocument[] };
  let bytes: Buffer;
  try {
    index = JSON.parse(readFileSync(indexFile, "utf8")) as { tokens: number; documents: TokenizedDocument[] };
    bytes = readFileSync(dataFile);
  } catch {
    return undefined; // unreadable cache entries are rebuilt, not fatal
  }
  const width = wide ? 4 : 2;
  if (bytes.length !== index.tokens * width) return undefined;
  // Copy into a fresh, aligned buffer (Buffer pools may not be 4-byte aligned).
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  if (!HOST_LITTLE_ENDIAN) swapBytes(aligned, width);
  const tokens = wide ? new Int32Array(aligned.buffer) : new Uint16Array(aligned.buffer);
  return { tokens, documents: index.documents, fromCache: true };
}

const HOST_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function littleEndianBytes(a: Uint16Array | Int32Array): Uint8Array {
  const bytes = new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
  if (!HOST_LITTLE_ENDIAN) swapBytes(bytes, a.BYTES_PER_ELEMENT);
  return bytes;
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

function resolve(spec: TokenizerSpec): { vocabSize: number; specials: string[]; minFrequency: number } {
  const vocabSize = spec.vocabSize ?? 4096;
  const specials = [...(spec.specials ?? [END_OF_TEXT])];
  const minFrequency = spec.minFrequency ?? 2;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specials.length) {
    throw new PmaError(
      "USAGE",
      `vocabulary size ${vocabSize} is too small: a byte-level BPE needs 256 byte tokens plus ${specials.length} special token(s)`,
    );
  }
  if (new Set(specials).size !== specials.length || specials.some((s) => s.length === 0)) {
    throw new PmaError("USAGE", `special tokens must be distinct and non-empty: ${JSON.stringify(specials)}`);
  }
  return { vocabSize, specials, minFrequency };
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "corpus";
}

function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (cause) {
    throw new PmaError(
      "IO",
      `cannot create cache folder ${dir}: ${(cause as Error).message}; set PMA_CACHE_DIR to a writable folder`,
      { file: dir, cause },
    );
  }
}
