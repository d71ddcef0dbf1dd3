/**
 * The zero-shot suite (suite.ts) with llama.cpp computing every log-likelihood: the
 * same task items, the same requests and scoring rules (task-scores.ts), the same
 * held-out windows, so its SuiteScores compare field by field with pma's Suite.
 */
import { readFile } from "node:fs/promises";
import { PmaError } from "../common/errors.js";
import type { Corpus } from "../data/corpus.js";
import { heldoutWindows } from "../data/heldout-windows.js";
import { cacheDirectory } from "../data/tokenizer-cache.js";
import { tokenizerFromJson } from "../data/tokenizer-json.js";
import type { EvalSplit } from "./evaluate.js";
import { openLlamaCppScorer, withLlamaCppInput, type ScoreTokensOptions } from "./score-tokens.js";
import { SplitTokens } from "./split-tokens.js";
import type { HeldoutOptions, HeldoutScore, SuiteScores } from "./suite.js";
import { tokenizerFingerprint, type TaskItems } from "./task-items.js";
import { averageScore, taskRequests, taskScores } from "./task-scores.js";
import { summarizeLogprobs } from "./token-logprobs.js";

export interface LlamaCppSuiteOptions extends Pick<
  ScoreTokensOptions,
  "gpu" | "threads" | "dtype" | "cacheDir"
> {
  /** Held-out loss settings, or false to score the tasks only (default: both splits, all tokens). */
  heldout?: HeldoutOptions | false;
  /** The corpus object when items.corpus is not a registered name. */
  corpus?: Corpus;
}

/** Scores a checkpoint folder or a GGUF file on the suite's items with llama.cpp. */
export async function scoreSuiteWithLlamaCpp(
  path: string,
  items: TaskItems,
  opts: LlamaCppSuiteOptions = {},
): Promise<SuiteScores> {
  const t0 = performance.now();
  const heldoutOpts = opts.heldout ?? {};
  const { corpus: _object, heldout: _heldout, ...engine } = opts;
  const base: ScoreTokensOptions = {
    ...engine,
    corpus: items.corpus,
    ...(heldoutOpts !== false && heldoutOpts.seq !== undefined ? { seq: heldoutOpts.seq } : {}),
  };
  return withLlamaCppInput(path, base, async (m) => {
    const text = await readFile(m.tokenizerFile, "utf8");
    if (tokenizerFingerprint(tokenizerFromJson(JSON.parse(text), m.tokenizerFile)) !== items.tokenizer) {
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `${m.checkpoint}: its tokenizer is not the one the task items were built with; build items with this checkpoint's tokenizer`,
        { file: m.checkpoint },
      );
    }
    const req = taskRequests(items);
    const longest = req.requests.reduce((n, r) => Math.max(n, r.ids.length - 1), 0);
    const seq = Math.max(m.seq, longest);
    if (m.contextLength !== null && seq > m.contextLength) {
      throw new PmaError(
        "USAGE",
        `${m.checkpoint}: a task sequence of ${longest + 1} tokens does not fit the model's context of ${m.contextLength}; build items with a smaller maxTokens`,
      );
    }
    const scorer = await openLlamaCppScorer(m.gguf, seq, base);
    try {
      const logprob = await scorer.sumLogprobs(req.requests);
      const tasks = taskScores(items, req, logprob);
      const { average, chance } = averageScore(tasks);
      const heldout: Partial<Record<EvalSplit, HeldoutScore>> = {};
      if (heldoutOpts !== false) {
        const splits = new SplitTokens(opts.cacheDir ?? cacheDirectory());
        for (const split of heldoutOpts.splits ?? ["validation", "test"]) {
          const stream = splits.get(items.corpus, split, m.tokenizerFile, opts.corpus);
          const windows = heldoutWindows(stream.length, m.seq, heldoutOpts.maxTokens ?? 0);
          if (windows.length === 0)
            throw new PmaError(
              "USAGE",
              `the ${split} split has ${stream.length} tokens, too few for one window of ${m.seq} + 1`,
            );
          heldout[split] = summarizeLogprobs((await scorer.windowLogprobs(stream, windows, m.seq)).logprobs);
        }
      }
      return {
        checkpoint: m.checkpoint,
        heldout,
        tasks,
        average,
        chanceAverage: chance,
        seconds: (performance.now() - t0) / 1000,
      };
    } finally {
      await scorer.close();
    }
  });
}
