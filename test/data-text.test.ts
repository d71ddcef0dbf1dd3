/**
 * `pma eval --data`: the tokenizer path (@huggingface/tokenizers) against pma's own
 * tokenizer on a pma checkpoint and against the ids the Hugging Face tokenizers project
 * publishes for its RoBERTa fixture; the loss against a float64 forward pass; bits per
 * byte from independently counted bytes; the cache; and the errors on bad input.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { isPmaError } from "../src/common/errors.js";
import { loadHfTokenizer } from "../src/data/hf-tokenizer.js";
import { readTextDocuments } from "../src/data/text-documents.js";
import { tokenizeTextFile } from "../src/data/text-tokens.js";
import { evaluateOnData } from "../src/eval/data-eval.js";
import { closeLlamaCpp } from "../src/eval/llama-cpp.js";
import { loadNodeLlamaCpp } from "../src/eval/node-llama-cpp.js";
import { brownCorpus } from "../src/data/brown.js";
import { loadTokenizer } from "../src/data/tokenizer-json.js";
import { readModelConfig, readWeights } from "../src/train/weights-io.js";
import { referenceLogProb } from "./helpers/eval-reference.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { trainTinyRun } from "./helpers/tiny-run.js";

const llamaCppMissing = await loadNodeLlamaCpp().then(
  () => null,
  (e: Error) => e.message,
);
const ROBERTA = fileURLToPath(new URL("../../test/fixtures/tokenizers/roberta.json", import.meta.url));

test("the RoBERTa tokenizer.json gives the ids its project's own tests publish", () => {
  const tok = loadHfTokenizer(ROBERTA);
  // tokenizers/tests/documentation.rs, load_tokenizer: "This is an example" -> [713, 16, 41, 1246].
  assert.deepEqual(tok.encode("This is an example"), [713, 16, 41, 1246]);
  // No special tokens are added around the text (the file's RobertaProcessing would add <s> and </s>).
  assert.equal(tok.encode("").length, 0);
  assert.deepEqual(tok.separator, { token: "</s>", id: 2 });
  assert.equal(tok.vocabSize, 50265);
});

function assertPmaError(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isPmaError(e), `expected a PmaError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

describe("held-out text files", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const file = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text);
    return p;
  };
  before(async () => (tmp = await tempDir("pma-data-text-")));
  after(async () => tmp?.cleanup());

  test(".txt documents are separated by blank lines; .jsonl takes the named field", () => {
    const t = readTextDocuments(file("a.txt", "one\nline two\n\n \n\nthree é\r\n\r\nfour\n"));
    assert.deepEqual(t.documents, ["one\nline two", "three é", "four"]);
    assert.equal(t.bytes, Buffer.byteLength("one\nline two") + Buffer.byteLength("three é") + 4);
    const j = readTextDocuments(file("b.jsonl", '{"content":"alpha","id":1}\n\n{"content":"béta"}\n'), {
      textField: "content",
    });
    assert.deepEqual(j.documents, ["alpha", "béta"]);
  });

  test("bad input: empty data, JSONL without the field, unreadable tokenizer.json", () => {
    assertPmaError(
      () => readTextDocuments(file("empty.txt", " \n\n\t\n")),
      "DATA_INVALID",
      /empty\.txt: no text in the held-out data/,
    );
    assertPmaError(
      () => readTextDocuments(file("c.jsonl", '{"body":"x"}\n'), { textField: "text" }),
      "FORMAT_UNSUPPORTED",
      /c\.jsonl:1: no string field "text" \(absent; fields: body\); name the text field with --text-field/,
    );
    assertPmaError(
      () => readTextDocuments(file("d.jsonl", "{oops\n")),
      "FORMAT_UNSUPPORTED",
      /d\.jsonl:1: not valid JSON/,
    );
    assertPmaError(
      () => readTextDocuments(file("e.csv", "a,b\n")),
      "USAGE",
      /must be a \.txt file .* or a \.jsonl file/,
    );
    assertPmaError(
      () => loadHfTokenizer(file("tokenizer.json", '{"model": {"type": "NoSuchModel"}, "decoder": null}')),
      "FORMAT_UNSUPPORTED",
      /tokenizer\.json: @huggingface\/tokenizers .* cannot read this tokenizer/,
    );
    assertPmaError(
      () => loadHfTokenizer(file("broken.json", '{"model": ')),
      "FORMAT_UNSUPPORTED",
      /broken\.json: the tokenizer is not valid JSON/,
    );
    assertPmaError(
      () => loadHfTokenizer(join(tmp.dir, "absent", "tokenizer.json")),
      "IO",
      /cannot read the tokenizer/,
    );
  });
});

describe("pma eval --data on a pma checkpoint", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let ckpt: string;
  let cache: string;
  let dataFile: string;
  let docs: string[];
  before(async () => {
    tmp = await tempDir("pma-data-eval-");
    cache = join(tmp.dir, "cache");
    const run = trainTinyRun(tmp.dir, cache);
    ckpt = join(run, "checkpoint-192");
    docs = [...brownCorpus().documents("validation")].slice(0, 12).map((d) => d.text.trim());
    docs.push("Unicode: naïve café — “quotes”, emoji 🙂, CJK 漢字, tabs\tand  double  spaces.");
    dataFile = join(tmp.dir, "heldout.txt");
    writeFileSync(dataFile, docs.map((d) => d.replace(/\n\s*\n/g, "\n")).join("\n\n") + "\n");
  });
  after(async () => tmp?.cleanup());

  test("@huggingface/tokenizers encodes exactly as pma's tokenizer with the checkpoint's tokenizer.json", () => {
    const file = join(ckpt, "tokenizer.json");
    const hf = loadHfTokenizer(file);
    const pma = loadTokenizer(file);
    let tokens = 0;
    for (const d of docs) {
      const want = [...pma.encodeOrdinary(d)];
      assert.deepEqual(hf.encode(d), want);
      tokens += want.length;
    }
    assert.ok(tokens > 5000, `compared ${tokens} tokens`);
    assert.deepEqual(hf.separator, { token: "<|endoftext|>", id: pma.specials.get("<|endoftext|>") });
  });

  test("loss matches a float64 forward pass over the same windows; bits per byte; the cache", async () => {
    const r = await evaluateOnData(ckpt, { data: dataFile, cacheDir: cache, maxTokens: 48 });
    assert.equal(r.seq, 16);
    assert.equal(r.windows, 3);
    assert.equal(r.tokens, 48);
    const t = tokenizeTextFile(dataFile, join(ckpt, "tokenizer.json"), cache);
    assert.equal(t.fromCache, true);
    assert.equal(r.dataTokens, t.tokens.length);
    const written = readTextDocuments(dataFile).documents;
    assert.equal(
      r.dataBytes,
      written.reduce((a, d) => a + Buffer.byteLength(d, "utf8"), 0),
    );
    const config = await readModelConfig(ckpt);
    const w = await readWeights(ckpt);
    const p64 = new Map([...w.tensors].map(([k, v]) => [k, Float64Array.from(v.data)]));
    // The same evenly spaced windows as train/heldout.ts: all = floor((n-1)/16), offsets floor(i*all/3)*16.
    const all = Math.floor((t.tokens.length - 1) / 16);
    let sum = 0;
    for (let i = 0; i < 3; i++) {
      const o = Math.floor((i * all) / 3) * 16;
      sum -= referenceLogProb(config, p64, t.tokens.subarray(o, o + 17), 1);
    }
    const want = sum / 48;
    assert.ok(Math.abs(r.loss - want) < 1e-4, `loss ${r.loss} vs float64 ${want}`);
    assert.ok(Math.abs(r.bitsPerByte - ((want / Math.LN2) * t.tokens.length) / r.dataBytes) < 1e-4);
  });

  test(
    "llama.cpp scores the same packed windows as pma's engine (folder converted on the fly)",
    { skip: llamaCppMissing ?? false },
    async (t) => {
      const pma = await evaluateOnData(ckpt, { data: dataFile, cacheDir: cache, maxTokens: 256 });
      const cpp = await evaluateOnData(ckpt, {
        data: dataFile,
        cacheDir: cache,
        maxTokens: 256,
        engine: "llama.cpp",
        llamaCpp: { threads: 1 },
      });
      await closeLlamaCpp();
      t.diagnostic(`pma ${pma.loss}, llama.cpp ${cpp.loss}`);
      assert.equal(cpp.engine, "llama.cpp");
      assert.deepEqual(
        [cpp.tokens, cpp.windows, cpp.dataTokens, cpp.dataBytes],
        [pma.tokens, pma.windows, pma.dataTokens, pma.dataBytes],
      );
      assert.ok(Math.abs(cpp.loss - pma.loss) < 1e-4, `pma ${pma.loss} vs llama.cpp ${cpp.loss}`);
    },
  );

  test("text shorter than one window, and a tokenizer that does not fit the model, are clear errors", async () => {
    const short = join(tmp.dir, "short.txt");
    writeFileSync(short, "Too short.\n");
    await assert.rejects(
      evaluateOnData(ckpt, { data: short, cacheDir: cache }),
      (e: unknown) =>
        isPmaError(e) &&
        e.code === "DATA_INVALID" &&
        /short\.txt: the held-out text is \d+ tokens with this tokenizer, shorter than one window of 16 \+ 1/.test(
          e.message,
        ),
    );
    await assert.rejects(
      evaluateOnData(ckpt, { data: dataFile, cacheDir: cache, tokenizer: ROBERTA }),
      (e: unknown) =>
        isPmaError(e) &&
        /roberta\.json: the tokenizer produces id \d+, outside the model's vocabulary of 384/.test(e.message),
    );
  });

  test("the CLI: --data with --json, .jsonl with --text-field, and exit 1 without a stack trace", () => {
    const jsonl = join(tmp.dir, "heldout.jsonl");
    writeFileSync(jsonl, docs.map((d) => JSON.stringify({ body: d })).join("\n") + "\n");
    const env = { ...process.env, PMA_CACHE_DIR: cache };
    const ok = spawnSync(
      process.execPath,
      [PMA_CLI, "eval", ckpt, "--data", jsonl, "--text-field", "body", "--max-tokens", "64", "--json"],
      { encoding: "utf8", env },
    );
    assert.equal(ok.status, 0, ok.stderr);
    const r = JSON.parse(ok.stdout) as {
      loss: number;
      bitsPerByte: number;
      tokens: number;
      documents: number;
    };
    assert.equal(r.tokens, 64);
    assert.equal(r.documents, docs.length);
    assert.ok(r.loss > 0 && r.bitsPerByte > 0);
    const bad = spawnSync(process.execPath, [PMA_CLI, "eval", ckpt, "--data", jsonl], {
      encoding: "utf8",
      env,
    });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /no string field "text"/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
  });
});
