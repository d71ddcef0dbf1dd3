/**
 * A checkpoint's own tokenizer, read from its Hugging Face `tokenizer.json` (and
 * `tokenizer_config.json` when present) by @huggingface/tokenizers, the Hugging Face port
 * of their tokenizers to JavaScript: BPE with byte-level or SentencePiece-style
 * (Metaspace, byte fallback) pre-processing, WordPiece and Unigram. pma uses it to turn
 * held-out text into the ids the model was trained on; the file is only parsed as data.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { PmaError } from "../common/errors.js";

/** Names end-of-document tokens go by, tried in order when tokenizer_config.json names none. */
const SEPARATOR_NAMES = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>"];

export interface LoadedHfTokenizer {
  file: string;
  /** sha256 of tokenizer.json and tokenizer_config.json (when present), for caches. */
  sha256: string;
  vocabSize: number;
  /** The token put between documents when packing them, or null when the tokenizer has none. */
  separator: { token: string; id: number } | null;
  /** Ids of `text`, without the special tokens a post-processor would add. */
  encode(text: string): number[];
}

let versionMemo: string | undefined;
/** The library's version, part of every cache key: a new version may split text differently. */
export function hfTokenizersVersion(): string {
  if (versionMemo !== undefined) return versionMemo;
  try {
    const entry = fileURLToPath(import.meta.resolve("@huggingface/tokenizers"));
    const pkg = JSON.parse(readFileSync(join(dirname(entry), "..", "package.json"), "utf8")) as {
      version?: unknown;
    };
    versionMemo = typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    versionMemo = "unknown";
  }
  return versionMemo;
}

function readJson(file: string, what: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new PmaError(
      "IO",
      `${file}: cannot read ${what} (${(e as Error).message})${required ? "; the checkpoint needs its tokenizer.json (or pass --tokenizer FILE)" : ""}`,
      { file, cause: e },
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PmaError("FORMAT_UNSUPPORTED", `${file}: ${what} is not valid JSON (${(e as Error).message})`, {
      file,
      cause: e,
    });
  }
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return undefined;
}

/** Loads `tokenizerFile` (a tokenizer.json); tokenizer_config.json beside it is read when present. */
export function loadHfTokenizer(tokenizerFile: string): LoadedHfTokenizer {
  const json = readJson(tokenizerFile, "the tokenizer", true);
  const configFile = join(dirname(tokenizerFile), "tokenizer_config.json");
  const config = readJson(configFile, "the tokenizer config", false) ?? {};
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${tokenizerFile}: not a tokenizer.json (expected a JSON object with a "model")`,
      { file: tokenizerFile },
    );
  }
  // The library wants a decoder even though pma never decodes; a file without one is
  // still a valid tokenizer for encoding.
  const withDecoder = "decoder" in json ? json : { ...json, decoder: null };
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(withDecoder, typeof config === "object" && config !== null ? config : {});
    tok.encode("pma", { add_special_tokens: false });
  } catch (e) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${tokenizerFile}: @huggingface/tokenizers ${hfTokenizersVersion()} cannot read this tokenizer (${(e as Error).message}); use a tokenizer.json saved by Hugging Face tokenizers or transformers`,
      { file: tokenizerFile, cause: e },
    );
  }
  const h = createHash("sha256").update(JSON.stringify(json)).update("\0").update(JSON.stringify(config));
  const names = [tokenName((config as { eos_token?: unknown }).eos_token), ...SEPARATOR_NAMES].filter(
    (n): n is string => n !== undefined,
  );
  // A special (added) token first: RoBERTa's vocabulary, say, also has an ordinary
  // "<|endoftext|>" inherited from GPT-2, while its end of document is the special "</s>".
  const specials = new Map<string, number>();
  for (const [id, t] of tok.get_added_tokens_decoder()) if (t.special) specials.set(t.content, id);
  let separator: LoadedHfTokenizer["separator"] = null;
  for (const name of names) {
    const id = specials.get(name);
    if (id !== undefined) {
      separator = { token: name, id };
      break;
    }
  }
  for (const name of separator === null ? names : []) {
    const id = tok.token_to_id(name);
    if (id !== undefined) {
      separator = { token: name, id };
      break;
    }
  }
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  for (const id of tok.get_added_tokens_decoder().keys()) vocabSize = Math.max(vocabSize, id + 1);
  return {
    file: tokenizerFile,
    sha256: h.digest("hex"),
    vocabSize,
    separator,
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
  };
}
