/**
 * Scores a model on held-out WordNet questions: the mean loss per answer token of the
 * true answers, and 4-way multiple-choice accuracy (the choice with the lowest mean loss
 * per token wins). Per-row losses are read from the logits of one batched forward pass.
 */
import type { Model } from "../nn/model.js";
import { IGNORE_INDEX } from "../nn/layers/cross-entropy.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { encodeQa, type McQuestion } from "./sft-data.js";

export interface QaScore {
  /** Mean loss (nats) per answer token of the true answers. */
  answerLoss: number;
  /** Share of questions whose true answer has the lowest mean loss per token. */
  accuracy: number;
  questions: number;
}

/** Sum of next-token losses of the scored positions of each row of the last forward. */
function rowLosses(model: Model, targets: Int32Array): { sum: number; count: number }[] {
  const V = model.config.vocab_size;
  const S = model.seq;
  const logits = model.logits;
  const out: { sum: number; count: number }[] = [];
  for (let r = 0; r < model.batch; r++) {
    let sum = 0;
    let count = 0;
    for (let t = 0; t < S; t++) {
      const pos = r * S + t;
      const y = targets[pos]!;
      if (y === IGNORE_INDEX) continue;
      const base = pos * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[base + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[base + v]! - max);
      sum += max + Math.log(z) - logits[base + y]!;
      count++;
    }
    out.push({ sum, count });
  }
  return out;
}

/** The model's current parameters on `questions` (rows of the model's seq length). */
export function scoreQa(model: Model, tok: Tokenizer, eos: number, questions: McQuestion[]): QaScore {
  const S = model.seq;
  const B = model.batch;
  const rows: { q: number; c: number; tokens: Int32Array; targets: Int32Array }[] = [];
  questions.forEach((mq, q) =>
    mq.choices.forEach((answer, c) => {
      const e = encodeQa(tok, eos, { question: mq.pair.question, answer }, S);
      if (e !== null) rows.push({ q, c, tokens: e.tokens, targets: e.targets });
    }),
  );
  const perChoice = questions.map((mq) => mq.choices.map(() => NaN));
  const tokens = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  for (let i = 0; i < rows.length; i += B) {
    for (let r = 0; r < B; r++) {
      const row = rows[i + r];
      if (row === undefined) {
        tokens.fill(0, r * S, (r + 1) * S);
        targets.fill(IGNORE_INDEX, r * S, (r + 1) * S);
      } else {
        tokens.set(row.tokens, r * S);
        targets.set(row.targets, r * S);
      }
    }
    model.forward(tokens, targets);
    rowLosses(model, targets).forEach((l, r) => {
      const row = rows[i + r];
      if (row !== undefined && l.count > 0) perChoice[row.q]![row.c] = l.sum / l.count;
    });
  }
  let correct = 0;
  let answered = 0;
  let lossSum = 0;
  for (const losses of perChoice) {
    if (!Number.isFinite(losses[0]!)) continue;
    answered++;
    lossSum += losses[0]!;
    if (losses.every((l, c) => c === 0 || !(l <= losses[0]!))) correct++;
  }
  return { answerLoss: lossSum / answered, accuracy: correct / answered, questions: answered };
}
