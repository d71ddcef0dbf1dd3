/**
 * Task items on disk: saved once per (corpus, tokenizer, options) under a cache folder
 * (the lab's, or $PMA_CACHE_DIR / ~/.cache/pma), so every model of a study, in this
 * process or a later one, is scored on the very same items.
 *
 *   <dir>/eval-items/<corpus>-<key>.json   key: sha256 of the item format version, the
 *                                          train/test split hashes, the tokenizer
 *                                          fingerprint and the resolved options
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { corpusContentHash, sha256Hex, type Corpus } from "../data/corpus.js";
import { corpusByName } from "../data/run-data.js";
import { cacheDirectory } from "../data/tokenizer-cache.js";
import { loadTokenizer } from "../data/tokenizer-json.js";
import type { Tokenizer } from "../data/tokenizer.js";
import {
  buildTaskItems,
  resolveTaskItemOptions,
  TASK_ITEMS_FORMAT,
  TASK_ITEMS_VERSION,
  TASK_NAMES,
  tokenizerFingerprint,
  type TaskItemOptions,
  type TaskItems,
} from "./task-items.js";

export async function saveTaskItems(path: string, items: TaskItems): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(items) + "\n");
}

/** Reads a saved item file, refusing other formats and versions by name. */
export async function loadTaskItems(path: string): Promise<TaskItems> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PmaError("IO", `${path}: cannot read task items (${(e as Error).message})`, {
      file: path,
      cause: e,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PmaError("FORMAT_UNSUPPORTED", `${path}: not valid JSON (${(e as Error).message})`, {
      file: path,
      cause: e,
    });
  }
  const o = json as Partial<TaskItems> | null;
  if (
    o === null ||
    typeof o !== "object" ||
    o.format !== TASK_ITEMS_FORMAT ||
    o.version !== TASK_ITEMS_VERSION
  ) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${path}: not pma task items of version ${TASK_ITEMS_VERSION}; delete it to rebuild`,
      { file: path },
    );
  }
  for (const t of TASK_NAMES) {
    if (!Array.isArray(o[t]))
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${path}: task "${t}" is missing; delete the file to rebuild`,
        { file: path },
      );
  }
  return o as TaskItems;
}

export interface TaskItemsRequest {
  /** The corpus (or its registered name, e.g. "brown") whose test split the items come from. */
  corpus: Corpus | string;
  /** The models' tokenizer, or the path of their tokenizer.json. */
  tokenizer: Tokenizer | string;
  /** Cache folder; default $PMA_CACHE_DIR, else ~/.cache/pma. */
  dir?: string;
  options?: TaskItemOptions;
}

export interface CachedTaskItems {
  items: TaskItems;
  path: string;
  fromCache: boolean;
}

/** The saved items for this corpus, tokenizer and options, built and saved on first use. */
export async function taskItemsFor(req: TaskItemsRequest): Promise<CachedTaskItems> {
  const corpus = typeof req.corpus === "string" ? corpusByName(req.corpus) : req.corpus;
  const tokenizer = typeof req.tokenizer === "string" ? loadTokenizer(req.tokenizer) : req.tokenizer;
  const options = resolveTaskItemOptions(req.options);
  const key = sha256Hex(
    JSON.stringify({
      version: TASK_ITEMS_VERSION,
      train: corpusContentHash(corpus, "train"),
      test: corpusContentHash(corpus, "test"),
      tokenizer: tokenizerFingerprint(tokenizer),
      options,
    }),
  ).slice(0, 16);
  const folder = join(req.dir ?? cacheDirectory(), "eval-items");
  const path = join(folder, `${corpus.name.replace(/[^A-Za-z0-9_.-]/g, "_")}-${key}.json`);
  try {
    return { items: await loadTaskItems(path), path, fromCache: true };
  } catch {
    // Absent or unreadable: build again (the build is deterministic, so nothing is lost).
  }
  const items = buildTaskItems(corpus, tokenizer, options);
  try {
    await mkdir(folder, { recursive: true });
  } catch (e) {
    throw new PmaError(
      "IO",
      `cannot create ${folder}: ${(e as Error).message}; set PMA_CACHE_DIR to a writable folder`,
      { file: folder, cause: e },
    );
  }
  await saveTaskItems(path, items);
  return { items, path, fromCache: false };
}
