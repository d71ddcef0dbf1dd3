// Sequence log-likelihoods as the zero-shot tasks use them: batched, padded, grouped by
// length into several model shapes, with requests that share a prefix answered by one
// row. Each sum must equal an independent float64 computation: the naive reference
// forward of nn-ref64.ts run on that sequence alone, then a float64 log-softmax.
import assert from "node:assert/strict";
import { test } from "node:test";
import { planRows, SequenceScorer, type ScoreRequest } from "../src/eval/logprob.js";
import { resolveConfig, type ModelConfig } from "../src/nn/config.js";
import { randomParams, referenceLogProb } from "./helpers/eval-reference.js";
import { lcg, type Params64 } from "./nn-ref64.js";

const V = 23;

const reference = (c: ModelConfig, p64: Params64, q: ScoreRequest): number =>
  referenceLogProb(c, p64, q.ids, q.from);

function requests(seed: number): ScoreRequest[] {
  const r = lcg(seed);
  const tok = (): number => Math.floor(r() * V);
  const out: ScoreRequest[] = [];
  // Next-word style: one context, several one-token and two-token continuations.
  const ctx = Array.from({ length: 11 }, tok);
  for (let k = 0; k < 4; k++) out.push({ ids: [...ctx, tok()], from: ctx.length });
  out.push({ ids: [...ctx, 3, 4], from: ctx.length }, { ids: [...ctx, 3, 9], from: ctx.length });
  // Minimal-pair style: whole sentences of lengths across several 16-token shapes.
  for (const n of [2, 5, 16, 17, 18, 31, 33, 40]) out.push({ ids: Array.from({ length: n }, tok), from: 1 });
  // An exact duplicate and a strict prefix of another request.
  out.push({ ...out[8]! }, { ids: Array.from(out[12]!.ids).slice(0, 9), from: 4 });
  return out;
}

for (const [name, extra] of [
  ["dense", {}],
  ["MoE (4 experts, top-2)", { num_local_experts: 4, num_experts_per_tok: 2 }],
] as const) {
  test(`summed log-probs equal a float64 reference sequence by sequence: ${name}`, () => {
    const c = resolveConfig({
      vocab_size: V,
      hidden_size: 16,
      intermediate_size: 24,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      max_position_embeddings: 40,
      bos_token_id: 0,
      eos_token_id: 0,
      ...extra,
    });
    const { params, p64 } = randomParams(c, 7);
    const reqs = requests(11);
    const plan = planRows(reqs);
    // Shared prefixes collapse: 4 one-token continuations share a row, the duplicate and the prefix join theirs.
    assert.ok(plan.rows.length <= reqs.length - 5, `${plan.rows.length} rows for ${reqs.length} requests`);
    // Batch 3: several forward passes per shape, the last ones padded.
    const got = new SequenceScorer(params, 3).score(plan);
    reqs.forEach((q, i) => {
      const want = reference(c, p64, q);
      assert.ok(
        Math.abs(got[i]! - want) <= 2e-5 * (1 + Math.abs(want)),
        `request ${i} (${q.ids.length} tokens from ${q.from}): ${got[i]} vs ${want}`,
      );
    });
    // Scoring the same plan again, or with another batch size, gives the same numbers.
    assert.deepEqual(new SequenceScorer(params, 3).score(plan), got);
    const other = new SequenceScorer(params, 8).score(plan);
    reqs.forEach((_, i) => assert.ok(Math.abs(other[i]! - got[i]!) <= 1e-5 * (1 + Math.abs(got[i]!))));
  });
}

test("requests are checked: from in range, ids in the vocabulary, length within the model's positions", () => {
  const c = resolveConfig({
    vocab_size: V,
    hidden_size: 8,
    intermediate_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    max_position_embeddings: 8,
    bos_token_id: 0,
    eos_token_id: 0,
  });
  const s = new SequenceScorer(randomParams(c, 1).params, 2);
  assert.throws(() => planRows([{ ids: [1, 2, 3], from: 0 }]), /from must be in 1\.\.2/);
  assert.throws(() => planRows([{ ids: [1, 2, 3], from: 3 }]), /from must be in 1\.\.2/);
  assert.throws(() => s.score(planRows([{ ids: [1, V, 3], from: 1 }])), /outside the model's vocabulary/);
  assert.throws(
    () => s.score(planRows([{ ids: Array.from({ length: 10 }, () => 1), from: 1 }])),
    /max_position_embeddings 8/,
  );
});
