/**
 * pma's byte-level BPE tokenizer as llama.cpp's "gpt2" vocabulary (the tokenizer.ggml.*
 * keys), and back. llama.cpp reads the vocabulary from the GGUF file itself, so the
 * converted model carries it: one token string per embedding row (the byte-level
 * spelling, "Ġthe"), a type per token, and the merges as "left right" strings in rank
 * order, exactly as Hugging Face's tokenizer.json spells them.
 *
 * The pre-tokenizer is named "gpt-2": llama.cpp maps that name to GPT-2's own split
 * pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)), the
 * pattern pma's tokenizer uses ("default" would select a different, digit-splitting
 * regex).
 */
import { PmaError } from "../common/errors.js";
import { gguf, type GgufMetadata, type GgufValue } from "../formats/gguf-values.js";
import { bytesToTokenString, tokenStringToBytes } from "../data/tokenizer-bytes.js";
import { Tokenizer } from "../data/tokenizer.js";

/** llama.cpp's `llama_token_type` values (tokenizer.ggml.token_type). */
export const GGUF_TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

export const GGUF_TOKENIZER_MODEL = "gpt2";
export const GGUF_TOKENIZER_PRE = "gpt-2";

export interface VocabIds {
  bos: number;
  eos: number;
}

/**
 * The tokenizer.ggml.* keys for `tok`, padded to `vocabSize` entries (the embedding's
 * row count: llama.cpp sizes the model from the token list). Padding rows and ids the
 * tokenizer leaves unused get placeholder names of type "unused", as llama.cpp's own
 * converter writes them.
 */
export function ggufVocabMetadata(tok: Tokenizer, vocabSize: number, ids: VocabIds): [string, GgufValue][] {
  if (tok.vocabSize > vocabSize) {
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `the tokenizer has ${tok.vocabSize} tokens but the model's vocab_size is ${vocabSize}`,
    );
  }
  const tokens: string[] = new Array<string>(vocabSize);
  const types = new Int32Array(vocabSize);
  const seen = new Set<string>();
  for (let id = 0; id < vocabSize; id++) {
    const bytes = id < tok.vocabSize ? tok.bytesOf(id) : undefined;
    const special = id < tok.vocabSize ? tok.specialOf(id) : undefined;
    let name: string;
    if (bytes !== undefined) {
      name = bytesToTokenString(bytes);
      types[id] = GGUF_TOKEN_TYPE.normal;
    } else if (special !== undefined) {
      name = special;
      types[id] = GGUF_TOKEN_TYPE.control;
    } else {
      name = `[PAD${id}]`;
      types[id] = GGUF_TOKEN_TYPE.unused;
    }
    // llama.cpp keys its token table by text: a repeated text would make one id unreachable.
    if (seen.has(name))
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `token text ${JSON.stringify(name)} appears twice in the vocabulary (id ${id})`,
      );
    seen.add(name);
    tokens[id] = name;
  }
  const merges = tok.merges.map(([a, b]) => `${tokens[a]!} ${tokens[b]!}`);
  for (const [key, id] of [
    ["bos", ids.bos],
    ["eos", ids.eos],
  ] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `${key}_token_id ${id} is outside the vocabulary of ${vocabSize}`,
      );
  }
  return [
    ["tokenizer.ggml.model", gguf.string(GGUF_TOKENIZER_MODEL)],
    ["tokenizer.ggml.pre", gguf.string(GGUF_TOKENIZER_PRE)],
    ["tokenizer.ggml.tokens", gguf.strings(tokens)],
    ["tokenizer.ggml.token_type", gguf.i32s(types)],
    ["tokenizer.ggml.merges", gguf.strings(merges)],
    ["tokenizer.ggml.bos_token_id", gguf.u32(ids.bos)],
    ["tokenizer.ggml.eos_token_id", gguf.u32(ids.eos)],
    // pma's tokenizer adds no BOS/EOS (its tokenizer.json has no post-processor), and the
    // training windows start mid-document: llama.cpp must not add them either.
    ["tokenizer.ggml.add_bos_token", gguf.bool(false)],
    ["tokenizer.ggml.add_eos_token", gguf.bool(false)],
  ];
}

function stringArray(md: GgufMetadata, key: string, source: string): string[] {
  const v = md.get(key);
  if (v === undefined || v.type !== "array" || v.elementType !== "string") {
    throw new PmaError("FORMAT_UNSUPPORTED", `${source}: "${key}" is missing or not an array of strings`, {
      file: source,
    });
  }
  return v.values;
}

/**
 * The tokenizer a "gpt2" GGUF vocabulary describes, so pma can tokenise its corpus for a
 * GGUF file that came without a tokenizer.json. Control and user-defined tokens become
 * special tokens; unused ids stay holes.
 */
export function tokenizerFromGgufMetadata(md: GgufMetadata, source: string): Tokenizer {
  const bad = (what: string): PmaError =>
    new PmaError(
      "FORMAT_UNSUPPORTED",
      `${source}: ${what}; pma reads byte-level BPE ("gpt2") vocabularies with the GPT-2 pre-tokenizer only`,
      { file: source },
    );
  const model = md.get("tokenizer.ggml.model");
  if (model?.type !== "string" || model.value !== GGUF_TOKENIZER_MODEL)
    throw bad(
      `tokenizer.ggml.model is ${model?.type === "string" ? JSON.stringify(model.value) : "missing"}`,
    );
  const pre = md.get("tokenizer.ggml.pre");
  if (pre !== undefined && (pre.type !== "string" || pre.value !== GGUF_TOKENIZER_PRE)) {
    throw bad(`tokenizer.ggml.pre is ${pre.type === "string" ? JSON.stringify(pre.value) : pre.type}`);
  }
  const names = stringArray(md, "tokenizer.ggml.tokens", source);
  const typeValue = md.get("tokenizer.ggml.token_type");
  const types = typeValue?.type === "array" && typeValue.elementType === "i32" ? typeValue.values : null;
  if (types !== null && types.length !== names.length)
    throw bad("tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length");
  const tokens: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(names.length);
  const specials = new Map<string, number>();
  const idOf = new Map<string, number>();
  names.forEach((name, id) => {
    idOf.set(name, id);
    const type = types?.[id] ?? GGUF_TOKEN_TYPE.normal;
    if (type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.userDefined) {
      specials.set(name, id);
    } else if (type !== GGUF_TOKEN_TYPE.unused) {
      const bytes = tokenStringToBytes(name);
      if (bytes === undefined) throw bad(`token ${id} (${JSON.stringify(name)}) is not a byte-level token`);
      tokens[id] = bytes;
    }
  });
  const merges = stringArray(md, "tokenizer.ggml.merges", source).map((m, i): [number, number, number] => {
    const cut = m.indexOf(" ", 1);
    const a = idOf.get(m.slice(0, cut));
    const b = idOf.get(m.slice(cut + 1));
    const r = idOf.get(m.slice(0, cut) + m.slice(cut + 1));
    if (cut < 0 || a === undefined || b === undefined || r === undefined)
      throw bad(`merge ${i} (${JSON.stringify(m)}) uses a token missing from the vocabulary`);
    return [a, b, r];
  });
  return new Tokenizer({ tokens, merges, specials });
}
