/**
 * The data a run trains and validates on: the configured corpus, its cached BPE
 * tokenizer and token streams, and fingerprints (tokenizer.json and train stream
 * hashes) that a resume checks, since an exact resume is only possible on the very
 * same tokens.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { brownCorpus } from "./brown.js";
import { wordnetCorpus } from "./wordnet.js";
import type { Corpus, Split } from "./corpus.js";
import type { TokenStream } from "./batches.js";
import { prepareTokenizer, tokenizeSplit, type PreparedTokenizer } from "./tokenizer-cache.js";
import { END_OF_TEXT } from "./tokenizer.js";

/** The part of a run's `data:` section that decides its tokens (train's DataSection has it). */
export interface DataSpec {
  corpus: string;
  /** The corpus whose train split the BPE is trained on; null: `corpus` itself. */
  tokenizer: string | null;
  vocab_size: number;
}

export interface RunData {
  corpus: Corpus;
  prepared: PreparedTokenizer;
  /** tokenizer.json exactly as cached (copied into every checkpoint). */
  tokenizerJson: string;
  tokenizerSha256: string;
  /** The document separator, also the model's bos/eos id. */
  eosId: number;
  train: TokenStream;
  trainSha256: string;
  split(split: Split): TokenStream;
}

const CORPORA: Record<string, () => Corpus> = { brown: () => brownCorpus(), wordnet: () => wordnetCorpus() };

export function corpusByName(name: string): Corpus {
  const make = CORPORA[name];
  if (make === undefined)
    throw new PmaError(
      "CONFIG_INVALID",
      `data.corpus: unknown corpus "${name}" (known: ${Object.keys(CORPORA).join(", ")})`,
    );
  return make();
}

export function sha256OfStream(s: TokenStream): string {
  return createHash("sha256")
    .update(new Uint8Array(s.buffer, s.byteOffset, s.byteLength))
    .digest("hex");
}

export function prepareRunData(data: DataSpec, cacheDir?: string): RunData {
  const corpus = corpusByName(data.corpus);
  // A second-domain run (continued training) keeps the tokenizer of the corpus its
  // starting weights were trained on.
  const tokenizerCorpus =
    data.tokenizer === null || data.tokenizer === data.corpus ? corpus : corpusByName(data.tokenizer);
  const prepared = prepareTokenizer(tokenizerCorpus, {
    vocabSize: data.vocab_size,
    ...(cacheDir !== undefined ? { cacheDir } : {}),
  });
  const tokenizerJson = readFileSync(join(prepared.dir, "tokenizer.json"), "utf8");
  const eosId = prepared.tokenizer.specials.get(END_OF_TEXT);
  if (eosId === undefined)
    throw new PmaError("INTERNAL", `tokenizer in ${prepared.dir} has no ${END_OF_TEXT} token`);
  const train = tokenizeSplit(corpus, "train", prepared).tokens;
  const splits = new Map<Split, TokenStream>([["train", train]]);
  return {
    corpus,
    prepared,
    tokenizerJson,
    tokenizerSha256: createHash("sha256").update(tokenizerJson).digest("hex"),
    eosId,
    train,
    trainSha256: sha256OfStream(train),
    split(split) {
      let s = splits.get(split);
      if (s === undefined) splits.set(split, (s = tokenizeSplit(corpus, split, prepared).tokens));
      return s;
    },
  };
}
