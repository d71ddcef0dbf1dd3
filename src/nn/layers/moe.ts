import type { MatmulBackend } from "../kernels/matmul.js";
import { linearBackward, linearForward } from "./linear.js";
import { swigluBackward, swigluForward } from "./swiglu.js";

export interface MoeDims {
  tokens: number;
  hidden: number;
  intermediate: number;
  experts: number;
  topK: number;
}

/** Backward temporaries shared by all MoE layers of a model; empty for a forward-only model. */
export class MoeScratch {
  readonly deo: Float32Array;
  readonly dh: Float32Array;
  readonly dgu: Float32Array;
  readonly dxe: Float32Array;
  readonly dlogits: Float32Array;
  readonly dp: Float64Array;
  /** d(loss)/d(routing weight) of one token's k slots. */
  readonly dw: Float64Array;

  constructor(backend: MatmulBackend, d: MoeDims, withGrad = true) {
    const rows = d.tokens * d.topK;
    const gradAlloc = (n: number): Float32Array => (withGrad ? backend.alloc(n) : new Float32Array(0));
    this.deo = gradAlloc(rows * d.hidden);
    this.dh = gradAlloc(rows * d.intermediate);
    this.dgu = gradAlloc(rows * 2 * d.intermediate);
    this.dxe = gradAlloc(rows * d.hidden);
    this.dlogits = gradAlloc(d.tokens * d.experts);
    this.dp = new Float64Array(withGrad ? d.experts : 0);
    this.dw = new Float64Array(withGrad ? d.topK : 0);
  }
}

/**
 * Mixtral sparse MoE block: router logits = x Wr^T, p = softmax over E experts (f32),
 * the top-k experts per token with weights p_j / sum of chosen p (Mixtral renormalises),
 * output = sum_j w_j * expert_j(x) with SwiGLU experts w2(silu(w1 x) * w3 x).
 *
 * Experts compute only their routed tokens: rows are gathered into expert order (token
 * order within an expert, so results are deterministic), each expert does one GEMM on
 * its contiguous slice, and outputs are combined back per token in slot order.
 *
 * The load-balancing loss is global over layers (HF concatenates all layers' router
 * logits), so this layer only reports its counts and probability sums; the model
 * combines them and hands each layer d(aux)/dp in the backward.
 */
export class MoeBlock {
  private readonly backend: MatmulBackend;
  private readonly d: MoeDims;
  private readonly s: MoeScratch;
  /** Router probabilities [T, E] of the last forward. */
  readonly probs: Float32Array;
  /** Chosen experts [T, k], in descending probability, and their renormalised weights. */
  readonly topIdx: Int32Array;
  readonly topW: Float32Array;
  /** Tokens routed to each expert (summed over the k slots) in the last forward. */
  readonly counts: Int32Array;
  /** Sum over tokens of p[t, e] (double), the aux loss's P_e numerator. */
  readonly probSum: Float64Array;
  /** Row of slot (t, j) in expert order, and the token of each expert-ordered row. */
  private readonly rowOf: Int32Array;
  private readonly tokenOf: Int32Array;
  private readonly start: Int32Array;
  private readonly cursor: Int32Array;
  private readonly xe: Float32Array;
  private readonly gu: Float32Array;
  private readonly sig: Float32Array;
  private readonly h: Float32Array;
  private readonly eo: Float32Array;

  constructor(backend: MatmulBackend, dims: MoeDims, scratch: MoeScratch) {
    this.backend = backend;
    this.d = dims;
    this.s = scratch;
    const { tokens: T, hidden: H, intermediate: I, experts: E, topK: k } = dims;
    const rows = T * k;
    this.probs = backend.alloc(T * E);
    this.topIdx = new Int32Array(rows);
    this.topW = new Float32Array(rows);
    this.counts = new Int32Array(E);
    this.probSum = new Float64Array(E);
    this.rowOf = new Int32Array(rows);
    this.tokenOf = new Int32Array(rows);
    this.start = new Int32Array(E + 1);
    this.cursor = new Int32Array(E);
    this.xe = backend.alloc(rows * H);
    this.gu = backend.alloc(rows * 2 * I);
    this.sig = new Float32Array(rows * I);
    this.h = backend.alloc(rows * I);
    this.eo = backend.alloc(rows * H);
  }

  /** out (+)= moe(xn). */
  forward(
    out: Float32Array,
    xn: Float32Array,
    wRouter: Float32Array,
    w13: readonly Float32Array[],
    w2: readonly Float32Array[],
    accumulate: boolean,
  ): void {
    const { tokens: T, hidden: H, intermediate: I, experts: E, topK: k } = this.d;
    const p = this.probs;
    linearForward(this.backend, p, xn, wRouter, T, H, E);
    this.route();

    // Gather routed rows in expert order.
    const { rowOf, tokenOf, start, counts } = this;
    const fill = this.cursor;
    for (let e = 0; e < E; e++) fill[e] = start[e]!;
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < k; j++) {
        const e = this.topIdx[t * k + j]!;
        const row = fill[e]!++;
        rowOf[t * k + j] = row;
        tokenOf[row] = t;
      }
    }
    const rows = T * k;
    const xe = this.xe;
    for (let row = 0; row < rows; row++) {
      const src = tokenOf[row]! * H;
      const dst = row * H;
      for (let i = 0; i < H; i++) xe[dst + i] = xn[src + i]!;
    }

    for (let e = 0; e < E; e++) {
      const c = counts[e]!;
      linearForward(this.backend, this.gu, this.xe, w13[e]!, c, H, 2 * I, start[e]! * H, start[e]! * 2 * I);
    }
    swigluForward(this.h, this.sig, this.gu, rows, I);
    for (let e = 0; e < E; e++) {
      const c = counts[e]!;
      linearForward(this.backend, this.eo, this.h, w2[e]!, c, I, H, start[e]! * I, start[e]! * H);
    }

    // Combine per token in slot order: a fixed summation order, whatever the routing.
    for (let t = 0; t < T; t++) {
      const o = t * H;
      if (!accumulate) out.fill(0, o, o + H);
      for (let j = 0; j < k; j++) {
        const w = this.topW[t * k + j]!;
        const src = rowOf[t * k + j]! * H;
        for (let i = 0; i < H; i++) out[o + i]! += w * this.eo[src + i]!;
      }
    }
  }

  /** Softmax over router logits (in place in probs), top-k, renormalised weights, counts. */
  private route(): void {
    const { tokens: T, experts: E, topK: k } = this.d;
    const p = this.probs;
    this.counts.fill(0);
    this.probSum.fill(0);
    for (let t = 0; t < T; t++) {
      const o = t * E;
      let max = -Infinity;
      for (let e = 0; e < E; e++) if (p[o + e]! > max) max = p[o + e]!;
      let sum = 0;
      for (let e = 0; e < E; e++) {
        const v = Math.exp(p[o + e]! - max);
        p[o + e] = v;
        sum += v;
      }
      for (let e = 0; e < E; e++) {
        p[o + e]! /= sum;
        this.probSum[e]! += p[o + e]!;
      }
      // k passes of argmax: E is small (4..64). Ties go to the lower expert index.
      let chosenSum = 0;
      for (let j = 0; j < k; j++) {
        let best = -1;
        let bestP = -Infinity;
        for (let e = 0; e < E; e++) {
          const v = p[o + e]!;
          if (v > bestP && !this.taken(t, j, e)) {
            best = e;
            bestP = v;
          }
        }
        this.topIdx[t * k + j] = best;
        this.topW[t * k + j] = bestP;
        chosenSum += bestP;
        this.counts[best]!++;
      }
      for (let j = 0; j < k; j++) this.topW[t * k + j]! /= chosenSum;
    }
    this.start[0] = 0;
    for (let e = 0; e < E; e++) this.start[e + 1] = this.start[e]! + this.counts[e]!;
  }

  private taken(t: number, j: number, e: number): boolean {
    const k = this.d.topK;
    for (let i = 0; i < j; i++) if (this.topIdx[t * k + i] === e) return true;
    return false;
  }

  /**
   * dxn = d/dxn (overwritten); weight gradients added. `auxGrad[e]` is d(loss)/d p[t, e]
   * from the load-balancing loss (the same for every token of the layer), or null.
   */
  backward(
    dxn: Float32Array,
    dwRouter: Float32Array,
    dw13: readonly Float32Array[],
    dw2: readonly Float32Array[],
    dout: Float32Array,
    xn: Float32Array,
    wRouter: Float32Array,
    w13: readonly Float32Array[],
    w2: readonly Float32Array[],
    auxGrad: Float64Array | null,
  ): void {
    const { tokens: T, hidden: H, intermediate: I, experts: E, topK: k } = this.d;
    const { deo, dh, dgu, dxe, dlogits, dp, dw: dwSlot } = this.s;
    const { rowOf, start, counts, eo, probs: p } = this;

    for (let t = 0; t < T; t++) {
      const o = t * H;
      const pr = t * E;
      // d(loss)/d(w_j) = <dout_t, expert_j(x_t)>, and d eo = w_j * dout_t.
      let chosenSum = 0;
      let dotWW = 0;
      for (let j = 0; j < k; j++) {
        const row = rowOf[t * k + j]! * H;
        const w = this.topW[t * k + j]!;
        let dw = 0;
        for (let i = 0; i < H; i++) {
          dw += dout[o + i]! * eo[row + i]!;
          deo[row + i] = w * dout[o + i]!;
        }
        dwSlot[j] = dw;
        dotWW += dw * w;
        chosenSum += p[pr + this.topIdx[t * k + j]!]!;
      }
      // w_j = p_j / sum_chosen p  =>  dp_m = (dw_m - sum_j dw_j w_j) / sum_chosen p.
      for (let e = 0; e < E; e++) dp[e] = auxGrad === null ? 0 : auxGrad[e]!;
      for (let j = 0; j < k; j++) dp[this.topIdx[t * k + j]!]! += (dwSlot[j]! - dotWW) / chosenSum;
      // Softmax backward to the router logits.
      let dot = 0;
      for (let e = 0; e < E; e++) dot += dp[e]! * p[pr + e]!;
      for (let e = 0; e < E; e++) dlogits[pr + e] = p[pr + e]! * (dp[e]! - dot);
    }
    linearBackward(this.backend, dxn, dwRouter, dlogits, xn, wRouter, T, H, E);

    for (let e = 0; e < E; e++) {
      const c = counts[e]!;
      const s0 = start[e]!;
      linearBackward(this.backend, dh, dw2[e]!, deo, this.h, w2[e]!, c, I, H, false, s0 * I, s0 * H, s0 * I);
    }
    swigluBackward(dgu, dh, this.gu, this.sig, T * k, I);
    for (let e = 0; e < E; e++) {
      const c = counts[e]!;
      const s0 = start[e]!;
      linearBackward(
        this.backend,
        dxe,
        dw13[e]!,
        dgu,
        this.xe,
        w13[e]!,
        c,
        H,
        2 * I,
        false,
        s0 * H,
        s0 * 2 * I,
        s0 * H,
      );
    }
    for (let t = 0; t < T; t++) {
      const o = t * H;
      for (let j = 0; j < k; j++) {
        const row = rowOf[t * k + j]! * H;
        for (let i = 0; i < H; i++) dxn[o + i]! += dxe[row + i]!;
      }
    }
  }
}
