/**
 * The Hugging Face tokenizer.json form of a byte-level BPE: model "BPE" with `vocab` and
 * `merges`, pre-tokenizer Split(GPT-2 pattern) then ByteLevel without its own regex, decoder
 * ByteLevel, special tokens as `added_tokens`. Split spells the pattern out in the file, so
 * every reader applies the same (Oniguruma) regex, instead of each ByteLevel implementation
 * using its own built-in copy (the JavaScript port's differs on U+0085 and U+FEFF).
 *
 * loadTokenizer also reads the classic GPT-2 form (ByteLevel pre-tokenizer with use_regex),
 * so pma can encode with tokenizers it did not train.
 */
import { readFileSync } from "node:fs";
import { PmaError } from "../common/errors.js";
import { writeFileAtomicSync } from "../common/atomic-dir.js";
import { bytesToTokenString, GPT2_PATTERN, tokenStringToBytes } from "./tokenizer-bytes.js";
import { Tokenizer } from "./tokenizer.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The tokenizer.json object of a tokenizer. */
export function tokenizerToJson(tok: Tokenizer): { [key: string]: Json } {
  const vocab: { [token: string]: number } = {};
  const names: string[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const bytes = tok.bytesOf(id);
    const name = bytes !== undefined ? bytesToTokenString(bytes) : tok.specialOf(id);
    // Unused ids (holes in a loaded vocabulary) are simply absent, as they were in the file.
    if (name === undefined) continue;
    if (Object.hasOwn(vocab, name))
      throw new PmaError("INTERNAL", `token ${JSON.stringify(name)} appears twice in the vocabulary`);
    vocab[name] = id;
    names[id] = name;
  }
  const addedTokens: Json[] = [...tok.specials]
    .sort((x, y) => x[1] - y[1])
    .map(([content, id]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: GPT2_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      // "left right": byte-level token strings never contain a space (it is written Ġ), and
      // every version of the library reads this form.
      merges: tok.merges.map(([a, b]) => `${names[a]!} ${names[b]!}`),
    },
  };
}

/** A tokenizer from a parsed tokenizer.json; `source` names the file in error messages. */
export function tokenizerFromJson(json: unknown, source = "tokenizer.json"): Tokenizer {
  const bad = (what: string): PmaError =>
    new PmaError(
      "FORMAT_UNSUPPORTED",
      `${source}: ${what}; pma reads byte-level BPE tokenizers (GPT-2 style) only`,
      { file: source },
    );
  const root = asObject(json);
  const model = asObject(root?.["model"]);
  if (root === undefined || model === undefined || model["type"] !== "BPE")
    throw bad('model.type is not "BPE"');
  if (root["normalizer"] !== null && root["normalizer"] !== undefined) throw bad("it has a normalizer");
  if (!isGpt2PreTokenizer(root["pre_tokenizer"]))
    throw bad("the pre-tokenizer is not GPT-2's byte-level split (without add_prefix_space)");
  if (asObject(root["decoder"])?.["type"] !== "ByteLevel") throw bad("the decoder is not ByteLevel");
  for (const k of ["continuing_subword_prefix", "end_of_word_suffix", "dropout"] as const) {
    if (model[k] !== null && model[k] !== undefined) throw bad(`model.${k} is set`);
  }
  if (model["ignore_merges"] === true) throw bad("model.ignore_merges is true");
  const vocab = asObject(model["vocab"]);
  const merges = model["merges"];
  if (vocab === undefined || !Array.isArray(merges)) throw bad("model.vocab or model.merges is missing");

  const specials = new Map<string, number>();
  const added = root["added_tokens"];
  for (const t of Array.isArray(added) ? added : []) {
    const o = asObject(t);
    if (o === undefined || typeof o["content"] !== "string" || typeof o["id"] !== "number")
      throw bad("an added token has no content or id");
    // The library strips around (l/rstrip) or normalises these; pma's encoder does neither.
    if (o["lstrip"] === true || o["rstrip"] === true || o["single_word"] === true)
      throw bad(`added token ${o["content"]} uses lstrip/rstrip/single_word`);
    specials.set(o["content"], o["id"]);
  }
  const specialIds = new Set(specials.values());
  const tokens: (Uint8Array | undefined)[] = [];
  const idOf = new Map<string, number>();
  for (const [name, id] of Object.entries(vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
      throw bad(`vocab entry ${JSON.stringify(name)} has id ${JSON.stringify(id)}`);
    idOf.set(name, id);
    if (specialIds.has(id)) continue;
    const bytes = tokenStringToBytes(name);
    if (bytes === undefined) throw bad(`vocab entry ${JSON.stringify(name)} is not a byte-level token`);
    tokens[id] = bytes;
  }
  const list: [number, number, number][] = merges.map((m: Json, i: number) => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (
      !Array.isArray(pair) ||
      pair.length !== 2 ||
      typeof pair[0] !== "string" ||
      typeof pair[1] !== "string"
    ) {
      throw bad(`merge ${i} is not a pair of tokens`);
    }
    const a = idOf.get(pair[0]);
    const b = idOf.get(pair[1]);
    const r = idOf.get(pair[0] + pair[1]);
    if (a === undefined || b === undefined || r === undefined)
      throw bad(`merge ${i} (${pair.join(" ")}) uses a token missing from the vocabulary`);
    return [a, b, r];
  });
  return new Tokenizer({ tokens, merges: list, specials });
}

function isGpt2PreTokenizer(p: unknown): boolean {
  const o = asObject(p);
  if (o === undefined) return false;
  if (o["type"] === "ByteLevel") return o["use_regex"] !== false && o["add_prefix_space"] !== true;
  if (o["type"] !== "Sequence" || !Array.isArray(o["pretokenizers"]) || o["pretokenizers"].length !== 2)
    return false;
  const split = asObject(o["pretokenizers"][0]);
  const bytes = asObject(o["pretokenizers"][1]);
  return (
    split?.["type"] === "Split" &&
    asObject(split["pattern"])?.["Regex"] === GPT2_PATTERN &&
    split["behavior"] === "Isolated" &&
    split["invert"] !== true &&
    bytes?.["type"] === "ByteLevel" &&
    bytes["use_regex"] === false &&
    bytes["add_prefix_space"] !== true
  );
}

function asObject(v: unknown): { [key: string]: Json } | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as { [key: string]: Json })
    : undefined;
}

export function loadTokenizer(path: string): Tokenizer {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new PmaError("IO", `cannot read tokenizer ${path}: ${(cause as Error).message}`, {
      file: path,
      cause,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new PmaError("FORMAT_UNSUPPORTED", `${path} is not valid JSON: ${(cause as Error).message}`, {
      file: path,
      cause,
    });
  }
  return tokenizerFromJson(json, path);
}

/** Writes tokenizer.json atomically (temporary sibling, fsync, rename). */
export function saveTokenizer(tok: Tokenizer, path: string): void {
  writeFileAtomicSync(path, JSON.stringify(tokenizerToJson(tok), null, 2) + "\n");
}
