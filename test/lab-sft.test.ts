// Fine-tuning data and scoring: answers-only targets, and per-choice losses read from the
// logits against the model's own cross-entropy of each row alone.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { gradNormRoughness } from "../src/lab/fine-tune.js";
import { encodeQa, mcQuestions, qaPairs } from "../src/lab/sft-data.js";
import { scoreQa } from "../src/lab/sft-eval.js";
import { resolveConfig } from "../src/nn/config.js";
import { IGNORE_INDEX } from "../src/nn/layers/cross-entropy.js";
import { createWasmBackend, type MatmulBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { Tokenizer } from "../src/data/tokenizer.js";

// A byte-level tokenizer with no merges: every byte is one token; <eos> is 256.
const tok = new Tokenizer({
  tokens: Array.from({ length: 256 }, (_, i) => Uint8Array.of(i)),
  merges: [],
  specials: new Map([["<|endoftext|>", 256]]),
});
const EOS = 256;

test("encodeQa: inputs are eos+question+answer, only answer positions (and the closing eos) are targets", () => {
  const e = encodeQa(tok, EOS, { question: "Q?", answer: " ab" }, 10)!;
  assert.deepEqual([...e.tokens], [EOS, 81, 63, 32, 97, 98, 0, 0, 0, 0]);
  // Position t predicts token t+1; the answer starts at index 3 (" "), so targets begin at t = 2.
  assert.deepEqual(
    [...e.targets],
    [IGNORE_INDEX, IGNORE_INDEX, 32, 97, 98, EOS, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
  );
  assert.equal(e.scored, 4);
  assert.equal(encodeQa(tok, EOS, { question: "a long question", answer: " x" }, 8), null);
  const cut = encodeQa(tok, EOS, { question: "Q", answer: " abcdefgh" }, 6)!;
  assert.equal(cut.scored, 5);
});

test("WordNet QA: train and validation pairs are disjoint; questions have 4 distinct choices", () => {
  const train = new Set(qaPairs("train").map((p) => p.id));
  const qs = mcQuestions(50);
  assert.equal(qs.length, 50);
  for (const q of qs) {
    assert.ok(!train.has(q.pair.id));
    assert.equal(new Set(q.choices).size, 4);
    assert.equal(q.choices[0], q.pair.answer);
  }
});

let backend: MatmulBackend;
before(async () => {
  backend = await createWasmBackend({ threads: 1 });
});
after(() => backend.dispose());

test("scoreQa: per-choice losses equal the model's cross-entropy of each row alone", () => {
  const config = resolveConfig({
    vocab_size: 257,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    max_position_embeddings: 24,
    bos_token_id: EOS,
    eos_token_id: EOS,
  });
  const model = createModel(config, backend, { batch: 3, seq: 24 }, { seed: 4 });
  const one = createModel(config, backend, { batch: 1, seq: 24 }, { params: model.params });
  const questions = mcQuestions(3).map((q) => ({
    pair: { ...q.pair, question: "Q: x?\nA:" },
    choices: q.choices.map((c) => c.slice(0, 12)),
  }));
  const s = scoreQa(model, tok, EOS, questions);
  // Reference: each choice scored alone with the batch-1 model's mean cross-entropy.
  let correct = 0;
  let loss = 0;
  for (const q of questions) {
    const per = q.choices.map((c) => {
      const e = encodeQa(tok, EOS, { question: q.pair.question, answer: c }, 24)!;
      one.forward(e.tokens, e.targets);
      return one.lastLoss.ce;
    });
    loss += per[0]!;
    if (per.every((l, i) => i === 0 || l > per[0]!)) correct++;
  }
  assert.equal(s.questions, 3);
  assert.ok(Math.abs(s.answerLoss - loss / 3) < 1e-4, `${s.answerLoss} vs ${loss / 3}`);
  assert.equal(s.accuracy, correct / 3);
});

test("gradNormRoughness: a steady curve is smooth, a jumpy one is not", () => {
  const steady = Array.from({ length: 30 }, (_, i) => ({
    step: i + 1,
    loss: 1,
    lr: 1,
    gradNorm: 1 + 0.01 * i,
  }));
  const jumpy = steady.map((s, i) => ({ ...s, gradNorm: i % 7 === 6 ? 5 : 1 }));
  const a = gradNormRoughness(steady);
  const b = gradNormRoughness(jumpy);
  assert.equal(a.spikes, 0);
  assert.ok(b.spikes >= 3);
  assert.ok(b.meanAbsLogChange > 10 * a.meanAbsLogChange);
});
