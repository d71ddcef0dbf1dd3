/**
 * The data side of the trainer on the Brown corpus: corpus size per split, BPE training time,
 * encode speed, tokens per split, and the cached second run. Baseline measured in the same
 * run: the Hugging Face JavaScript tokenizer (@huggingface/tokenizers) encoding the same
 * text from the same tokenizer.json (checked to give the same ids).
 *
 *   node dist/bench/tokenizer.js [vocab]   (default 4096)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { brownCorpus } from "../src/data/brown.js";
import { SPLITS } from "../src/data/corpus.js";
import { prepareTokenizer, tokenizeSplit } from "../src/data/tokenizer-cache.js";
import { loadTokenizer, tokenizerToJson } from "../src/data/tokenizer-json.js";

const vocabSize = Number(process.argv[2] ?? 4096);
const cacheDir = mkdtempSync(join(tmpdir(), "pma-bench-tok-"));
const ms = (t0: number): number => performance.now() - t0;
const fmt = (n: number): string => n.toLocaleString("en-US", { maximumFractionDigits: 0 });

try {
  let t0 = performance.now();
  const corpus = brownCorpus();
  const texts = new Map(SPLITS.map((s) => [s, [...corpus.documents(s)].map((d) => d.text)]));
  const loadMs = ms(t0);

  console.log(`Brown corpus (built in ${loadMs.toFixed(0)} ms)`);
  console.log("split        docs      words   characters     tokens   chars/token");
  t0 = performance.now();
  const prepared = prepareTokenizer(corpus, { cacheDir, vocabSize });
  const prepareMs = ms(t0);
  const encodeRows: string[] = [];
  let coldTokens = 0;
  t0 = performance.now();
  const splits = SPLITS.map((s) => tokenizeSplit(corpus, s, prepared));
  const coldMs = ms(t0);
  SPLITS.forEach((s, i) => {
    const docs = texts.get(s)!;
    const words = docs.reduce((n, t) => n + t.split(/\s+/).filter((w) => w.length > 0).length, 0);
    const chars = docs.reduce((n, t) => n + t.length, 0);
    const tokens = splits[i]!.tokens.length - docs.length - 1; // without separators
    coldTokens += tokens;
    console.log(
      `${s.padEnd(10)} ${fmt(docs.length).padStart(6)} ${fmt(words).padStart(10)} ${fmt(chars).padStart(12)} ${fmt(tokens).padStart(10)} ${(chars / tokens).toFixed(2).padStart(12)}`,
    );
  });

  const st = prepared.stats;
  console.log(
    `\ntokenizer: vocab ${st.vocabSize}, ${st.merges} merges, ${fmt(st.wordTypes)} word types in the train split`,
  );
  console.log(
    `  count words ${st.countMs.toFixed(0)} ms + train BPE ${st.trainMs.toFixed(0)} ms (prepare total ${prepareMs.toFixed(0)} ms)`,
  );
  encodeRows.push(
    `  encode all splits, cold word cache: ${coldMs.toFixed(0)} ms, ${fmt(coldTokens / (coldMs / 1000))} tokens/s (incl. writing the cache files)`,
  );

  // Warm: the same tokenizer again, word cache filled. Baseline: the HF JS tokenizer.
  const all = SPLITS.flatMap((s) => texts.get(s)!);
  const tok = prepared.tokenizer;
  t0 = performance.now();
  let n = 0;
  for (const t of all) n += tok.encodeOrdinary(t).length;
  const warmMs = ms(t0);
  const fresh = loadTokenizer(join(prepared.dir, "tokenizer.json"));
  t0 = performance.now();
  for (const t of all) fresh.encodeOrdinary(t);
  const freshMs = ms(t0);
  const hf = new HfTokenizer(JSON.parse(JSON.stringify(tokenizerToJson(tok))), {});
  t0 = performance.now();
  let hfTokens = 0;
  for (const t of all) hfTokens += hf.encode(t, { add_special_tokens: false }).ids.length;
  const hfMs = ms(t0);
  encodeRows.push(
    `  encode all splits, fresh tokenizer:  ${freshMs.toFixed(0)} ms, ${fmt(n / (freshMs / 1000))} tokens/s`,
  );
  encodeRows.push(
    `  encode all splits, warm word cache:  ${warmMs.toFixed(0)} ms, ${fmt(n / (warmMs / 1000))} tokens/s`,
  );
  encodeRows.push(
    `  baseline @huggingface/tokenizers:   ${hfMs.toFixed(0)} ms, ${fmt(hfTokens / (hfMs / 1000))} tokens/s (same ids: ${hfTokens === n}); ratio fresh/baseline ${(hfMs / freshMs).toFixed(1)}x`,
  );
  console.log(encodeRows.join("\n"));

  t0 = performance.now();
  const again = brownCorpus();
  const cached = prepareTokenizer(again, { cacheDir, vocabSize });
  const cachedSplits = SPLITS.map((s) => tokenizeSplit(again, s, cached));
  const secondMs = ms(t0);
  const hit = cached.fromCache && cachedSplits.every((s) => s.fromCache);
  console.log(
    `\nsecond run (new corpus object, tokenizer + 3 token files from cache: ${hit}): ${secondMs.toFixed(0)} ms`,
  );
} finally {
  rmSync(cacheDir, { recursive: true, force: true });
}
