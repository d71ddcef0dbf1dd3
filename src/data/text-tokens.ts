/**
 * Held-out documents tokenised and packed into one stream, cached on disk under the
 * content hashes of the data file and of the tokenizer (and the text field and library
 * version), so scoring fifty checkpoints, or rerunning a search, tokenises once.
 *
 * Packing: separator, document 1, separator, document 2, ..., separator, as pma's own
 * corpora are framed, so windows may span documents as in pre-training; a tokenizer
 * without an end-of-document token gets the documents back to back.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { hfTokenizersVersion, loadHfTokenizer } from "./hf-tokenizer.js";
import { readTextDocuments, type ReadTextOptions } from "./text-documents.js";

/** Bumped when packing changes: older cache entries are then simply not found. */
const PACKING_VERSION = 1;

export interface TextTokens {
  dataFile: string;
  dataSha256: string;
  tokenizerFile: string;
  tokenizerSha256: string;
  documents: number;
  /** UTF-8 bytes of the documents' text. */
  bytes: number;
  /** The packed stream (separators included). */
  tokens: Int32Array;
  separator: string | null;
  fromCache: boolean;
}

interface CacheMeta {
  version: number;
  documents: number;
  bytes: number;
  tokens: number;
  separator: string | null;
}

export function tokenizeTextFile(
  dataFile: string,
  tokenizerFile: string,
  cacheDir: string,
  opts: ReadTextOptions = {},
): TextTokens {
  // The tokenizer is loaded first so that a bad tokenizer is reported even on a cache hit.
  const tok = loadHfTokenizer(tokenizerFile);
  const docs = readTextDocuments(dataFile, opts);
  const field = docs.format === "jsonl" ? (opts.textField ?? "text") : "";
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        v: PACKING_VERSION,
        lib: hfTokenizersVersion(),
        data: docs.sha256,
        tok: tok.sha256,
        field,
      }),
    )
    .digest("hex")
    .slice(0, 24);
  const dir = join(cacheDir, "data-tokens");
  const bin = join(dir, `${key}.i32`);
  const metaFile = join(dir, `${key}.json`);
  const base = {
    dataFile: docs.file,
    dataSha256: docs.sha256,
    tokenizerFile,
    tokenizerSha256: tok.sha256,
    documents: docs.documents.length,
    bytes: docs.bytes,
  };
  const cached = readCache(bin, metaFile);
  if (cached !== undefined)
    return { ...base, tokens: cached.tokens, separator: cached.separator, fromCache: true };

  const parts: number[][] = [];
  let total = tok.separator === null ? 0 : 1;
  for (const d of docs.documents) {
    const ids = tok.encode(d);
    parts.push(ids);
    total += ids.length + (tok.separator === null ? 0 : 1);
  }
  const tokens = new Int32Array(total);
  let off = 0;
  if (tok.separator !== null) tokens[off++] = tok.separator.id;
  for (const p of parts) {
    tokens.set(p, off);
    off += p.length;
    if (tok.separator !== null) tokens[off++] = tok.separator.id;
  }
  writeCache(dir, bin, metaFile, tokens, {
    version: PACKING_VERSION,
    documents: docs.documents.length,
    bytes: docs.bytes,
    tokens: total,
    separator: tok.separator?.token ?? null,
  });
  return { ...base, tokens, separator: tok.separator?.token ?? null, fromCache: false };
}

function readCache(
  bin: string,
  metaFile: string,
): { tokens: Int32Array; separator: string | null } | undefined {
  if (!existsSync(bin) || !existsSync(metaFile)) return undefined;
  try {
    const meta = JSON.parse(readFileSync(metaFile, "utf8")) as CacheMeta;
    const bytes = readFileSync(bin);
    if (meta.version !== PACKING_VERSION || bytes.length !== meta.tokens * 4) return undefined;
    const tokens = new Int32Array(meta.tokens);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < meta.tokens; i++) tokens[i] = view.getInt32(i * 4, true);
    return { tokens, separator: meta.separator };
  } catch {
    return undefined; // an unreadable entry is rebuilt
  }
}

function writeCache(dir: string, bin: string, metaFile: string, tokens: Int32Array, meta: CacheMeta): void {
  try {
    mkdirSync(dir, { recursive: true });
    const buf = Buffer.alloc(tokens.length * 4);
    for (let i = 0; i < tokens.length; i++) buf.writeInt32LE(tokens[i]!, i * 4);
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, buf);
    renameSync(tmp, bin);
    // The index goes last: a data file without its index is treated as absent.
    const tmpMeta = `${metaFile}.${process.pid}.tmp`;
    writeFileSync(tmpMeta, JSON.stringify(meta) + "\n");
    renameSync(tmpMeta, metaFile);
  } catch (e) {
    throw new PmaError(
      "IO",
      `cannot write the tokenised data cache in ${dir}: ${(e as Error).message}; set PMA_CACHE_DIR to a writable folder`,
      { file: dir, cause: e },
    );
  }
}
