/**
 * Sums of token log-probabilities of many short sequences under one model, batched.
 *
 * A request (ids, from) asks for sum_{t=from}^{n-1} log p(ids[t] | ids[0..t-1]). The
 * model only has to read ids[0..n-2]; with causal attention the logits at position t
 * depend on the first t+1 inputs only, so every request whose inputs are a prefix of
 * another's is answered by that other's row. Sorting the inputs makes such chains
 * adjacent: a next-word item whose candidates are single tokens then costs one row for
 * all of them, and a sentence shared by two tasks is read once. Rows are grouped by
 * length into a few sequence shapes (models sharing one parameter set) so short rows
 * are not padded to the longest.
 *
 * log p is computed in float64 from the float32 logits: log-softmax of the row (with
 * the engine's inlined exp, accurate to 1e-8 relative, far below float32 logits' own).
 */
import { PmaError } from "../common/errors.js";
import type { ModelConfig } from "../nn/config.js";
import { exp } from "../nn/layers/exp.js";
import { createModel, type Model } from "../nn/model.js";
import type { ParamSet } from "../nn/params.js";

export interface ScoreRequest {
  readonly ids: ArrayLike<number>;
  /** First scored position, >= 1 (position 0 has no context to be predicted from). */
  readonly from: number;
}

/** Rows to run and, per request, which row answers it. Depends only on the requests. */
export interface RowPlan {
  /** Input tokens of each row, longest first within a shape. */
  readonly rows: readonly Int32Array[];
  /** Row of each request. */
  readonly rowOf: Int32Array;
  readonly requests: readonly ScoreRequest[];
}

/** Row lengths are rounded up to a multiple of this (fewer shapes, little padding). */
const SHAPE_STEP = 16;

export function planRows(requests: readonly ScoreRequest[]): RowPlan {
  const inputs = requests.map((r, i) => {
    const n = r.ids.length;
    if (!Number.isInteger(r.from) || r.from < 1 || r.from >= n) {
      throw new PmaError(
        "USAGE",
        `score request ${i}: from must be in 1..${n - 1} for ${n} tokens, got ${r.from}`,
      );
    }
    return Int32Array.from({ length: n - 1 }, (_, t) => r.ids[t]!);
  });
  const order = inputs.map((_, i) => i).sort((a, b) => compare(inputs[a]!, inputs[b]!) || a - b);
  const rowOf = new Int32Array(requests.length);
  const rows: Int32Array[] = [];
  // Walk the sorted inputs backwards: an input that is a prefix of the next one (and so
  // of the whole chain after it) joins that row.
  let current = -1;
  for (let k = order.length - 1; k >= 0; k--) {
    const i = order[k]!;
    if (current < 0 || !isPrefix(inputs[i]!, rows[current]!)) {
      rows.push(inputs[i]!);
      current = rows.length - 1;
    }
    rowOf[i] = current;
  }
  return { rows, rowOf, requests };
}

function compare(a: Int32Array, b: Int32Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function isPrefix(a: Int32Array, b: Int32Array): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Scores row plans with one parameter set, through models of a few sequence lengths
 * that share it (created on first use and kept, so scoring many checkpoints of one
 * shape allocates nothing after the first).
 */
export class SequenceScorer {
  private readonly models = new Map<number, Model>();
  private readonly tokens: Map<number, Int32Array> = new Map();

  constructor(
    readonly params: ParamSet,
    readonly batch = 16,
  ) {
    if (!Number.isInteger(batch) || batch < 1)
      throw new PmaError("USAGE", `batch must be a positive integer, got ${batch}`);
  }

  get config(): ModelConfig {
    return this.params.config;
  }

  private model(seq: number): Model {
    let m = this.models.get(seq);
    if (m === undefined) {
      m = createModel(
        this.config,
        this.params.backend,
        { batch: this.batch, seq },
        { params: this.params, forwardOnly: true },
      );
      this.models.set(seq, m);
      this.tokens.set(seq, new Int32Array(this.batch * seq));
    }
    return m;
  }

  /** The summed log-probability of every request of the plan, in request order. */
  score(plan: RowPlan): Float64Array {
    const maxPos = this.config.max_position_embeddings;
    const V = this.config.vocab_size;
    // Requests per row, so each row's logits are read right after its forward.
    const byRow: number[][] = plan.rows.map(() => []);
    plan.rowOf.forEach((r, i) => byRow[r]!.push(i));
    const out = new Float64Array(plan.requests.length);
    const shapeOf = (n: number): number => Math.min(maxPos, Math.ceil(n / SHAPE_STEP) * SHAPE_STEP);
    const rowIds = plan.rows
      .map((_, i) => i)
      .sort((a, b) => plan.rows[b]!.length - plan.rows[a]!.length || a - b);
    for (const r of rowIds) {
      if (plan.rows[r]!.length > maxPos) {
        throw new PmaError(
          "USAGE",
          `a scored sequence needs ${plan.rows[r]!.length} positions but the model has max_position_embeddings ${maxPos}; build the task items with a smaller maxTokens`,
        );
      }
    }
    plan.requests.forEach(({ ids }, i) => {
      for (let t = 0; t < ids.length; t++) {
        const id = ids[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= V)
          throw new PmaError(
            "RANGE_INVALID",
            `score request ${i}: token id ${id} is outside the model's vocabulary (${V})`,
          );
      }
    });
    const lse = new Float64Array(maxPos);
    let k = 0;
    while (k < rowIds.length) {
      const seq = shapeOf(plan.rows[rowIds[k]!]!.length);
      const model = this.model(seq);
      const tokens = this.tokens.get(seq)!;
      const group: number[] = [];
      while (k < rowIds.length && group.length < this.batch && shapeOf(plan.rows[rowIds[k]!]!.length) === seq)
        group.push(rowIds[k++]!);
      tokens.fill(0);
      group.forEach((r, b) => tokens.set(plan.rows[r]!, b * seq));
      const logits = model.infer(tokens);
      group.forEach((r, b) => {
        // Log-sum-exp per position, computed once however many requests read it.
        lse.fill(NaN);
        for (const i of byRow[r]!) {
          const { ids, from } = plan.requests[i]!;
          let s = 0;
          for (let t = from; t < ids.length; t++) {
            const pos = b * seq + t - 1;
            let z = lse[t - 1]!;
            if (Number.isNaN(z)) lse[t - 1] = z = logSumExp(logits, pos * V, V);
            s += logits[pos * V + ids[t]!]! - z;
          }
          out[i] = s;
        }
      });
    }
    return out;
  }
}

function logSumExp(a: Float32Array, off: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (a[off + i]! > m) m = a[off + i]!;
  let z = 0;
  for (let i = 0; i < n; i++) z += exp(a[off + i]! - m);
  return m + Math.log(z);
}
