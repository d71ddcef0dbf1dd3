/**
 * A corpus split tokenised with the tokenizer a checkpoint ships (its tokenizer.json),
 * cached on disk under the file's content hash and in memory, so evaluating fifty
 * checkpoints of one run tokenises the split once. Keying by content rather than by
 * how the tokenizer was trained makes this work for merges and foreign checkpoints too.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import type { TokenStream } from "../data/batches.js";
import { corpusContentHash, type Corpus, type Split } from "../data/corpus.js";
import { corpusByName } from "../data/run-data.js";
import { cacheDirectory, tokenizeSplit, type PreparedTokenizer } from "../data/tokenizer-cache.js";
import { tokenizerFromJson } from "../data/tokenizer-json.js";

export class SplitTokens {
  private readonly corpora = new Map<string, Corpus>();
  private readonly streams = new Map<string, TokenStream>();

  constructor(private readonly cacheDir = cacheDirectory()) {}

  /**
   * Tokens of `split` of corpus `corpusName` under the tokenizer in `tokenizerFile`;
   * `corpus`, when given, is that corpus (one not registered by name, e.g. a test's).
   */
  get(corpusName: string, split: Split, tokenizerFile: string, corpus?: Corpus): TokenStream {
    let text: string;
    try {
      text = readFileSync(tokenizerFile, "utf8");
    } catch (e) {
      throw new PmaError(
        "IO",
        `${tokenizerFile}: cannot read (${(e as Error).message}); evaluation needs the checkpoint's tokenizer.json`,
        { file: tokenizerFile, cause: e },
      );
    }
    const sha = createHash("sha256").update(text).digest("hex").slice(0, 16);
    const key = `${corpusName}\0${sha}\0${split}`;
    const hit = this.streams.get(key);
    if (hit !== undefined) return hit;
    corpus ??= this.corpora.get(corpusName);
    if (corpus === undefined) this.corpora.set(corpusName, (corpus = corpusByName(corpusName)));
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new PmaError("FORMAT_UNSUPPORTED", `${tokenizerFile}: not valid JSON (${(e as Error).message})`, {
        file: tokenizerFile,
        cause: e,
      });
    }
    const tokenizer = tokenizerFromJson(json, tokenizerFile);
    // Not trained here: the stats describe the loaded file, and nothing reads them.
    const prepared: PreparedTokenizer = {
      tokenizer,
      dir: join(this.cacheDir, "tokenizers", `${corpusName}-file-${sha}`),
      key: sha,
      fromCache: true,
      stats: {
        corpus: corpusName,
        corpusHash: corpusContentHash(corpus, "train"),
        vocabSize: tokenizer.vocabSize,
        merges: 0,
        wordTypes: 0,
        countMs: 0,
        trainMs: 0,
      },
    };
    const tokens = tokenizeSplit(corpus, split, prepared).tokens;
    this.streams.set(key, tokens);
    return tokens;
  }
}
