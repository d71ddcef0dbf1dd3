import type { MatmulBackend } from "../kernels/matmul.js";
import { linearBackward, linearForward } from "./linear.js";
import type { RopeTables } from "./rope.js";
import { ropeBackward, ropeForward } from "./rope.js";
import { causalSoftmaxBackward, causalSoftmaxForward } from "./softmax.js";

export interface AttentionDims {
  batch: number;
  seq: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/**
 * Temporaries every attention layer needs only during its own forward or backward;
 * one set is shared by all layers of a model. A forward-only model passes
 * withGrad = false: the backward's temporaries (datt alone is [B, nh, S, S]) stay empty.
 */
export class AttentionScratch {
  readonly qkv: Float32Array;
  readonly yh: Float32Array;
  readonly datt: Float32Array;
  readonly dq: Float32Array;
  readonly dk: Float32Array;
  readonly dv: Float32Array;
  readonly dy: Float32Array;

  constructor(backend: MatmulBackend, d: AttentionDims, withGrad = true) {
    const T = d.batch * d.seq;
    const q = d.heads * d.headDim;
    const kv = d.kvHeads * d.headDim;
    const gradAlloc = (n: number): Float32Array => (withGrad ? backend.alloc(n) : new Float32Array(0));
    this.qkv = backend.alloc(T * (q + 2 * kv));
    this.yh = backend.alloc(T * q);
    this.datt = gradAlloc(d.batch * d.heads * d.seq * d.seq);
    this.dq = gradAlloc(T * q);
    this.dk = gradAlloc(T * kv);
    this.dv = gradAlloc(T * kv);
    this.dy = gradAlloc(T * q);
  }
}

/**
 * Causal multi-head self-attention with grouped KV heads and RoPE, as HF Llama:
 * qkv = x Wqkv^T; rotate q, k; softmax(q k^T / sqrt(hd)) v per head; o_proj.
 *
 * Layout: after projection, q/k/v are permuted to [batch, head, seq, hd]. Query heads
 * h = g*r .. g*r + r-1 share KV head g (HF repeat_kv), so in this layout the r query
 * heads of a group are one contiguous [r*seq, hd] block and every (batch, group) pair
 * is a single GEMM against its K or V block: one batched call per product, and the
 * GQA sum over the r heads falls out of the K dimension of the dK/dV GEMMs.
 */
export class CausalSelfAttention {
  private readonly backend: MatmulBackend;
  private readonly d: AttentionDims;
  private readonly rope: RopeTables;
  private readonly s: AttentionScratch;
  /** Saved for the backward: rotated q [B,nh,S,hd], rotated k and v [B,nkv,S,hd]. */
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** Attention probabilities [B, nh, S, S] (zeros above the diagonal). */
  readonly att: Float32Array;
  /** Concatenated head outputs [T, nh*hd], the o_proj input. */
  readonly y: Float32Array;
  /** The largest attention logit (q.k / sqrt(hd), before the softmax) of the last forward. */
  maxLogit = NaN;

  constructor(backend: MatmulBackend, dims: AttentionDims, rope: RopeTables, scratch: AttentionScratch) {
    this.backend = backend;
    this.d = dims;
    this.rope = rope;
    this.s = scratch;
    const T = dims.batch * dims.seq;
    this.q = backend.alloc(T * dims.heads * dims.headDim);
    this.k = backend.alloc(T * dims.kvHeads * dims.headDim);
    this.v = backend.alloc(T * dims.kvHeads * dims.headDim);
    this.att = backend.alloc(dims.batch * dims.heads * dims.seq * dims.seq);
    this.y = backend.alloc(T * dims.heads * dims.headDim);
  }

  /** out (+)= attention(xn); `accumulate` adds onto out (the residual stream). */
  forward(
    out: Float32Array,
    xn: Float32Array,
    wqkv: Float32Array,
    wo: Float32Array,
    accumulate: boolean,
  ): void {
    const { batch: B, seq: S, hidden: H, heads: nh, kvHeads: nkv, headDim: hd } = this.d;
    const T = B * S;
    const Dq = nh * hd;
    const Dkv = nkv * hd;
    const D = Dq + 2 * Dkv;
    const r = nh / nkv;
    const qkv = this.s.qkv;
    // Locals rather than `this.` fields in the copy loops keep the arrays in registers.
    const { q, k, v, y, rope } = this;
    linearForward(this.backend, qkv, xn, wqkv, T, H, D);

    for (let b = 0; b < B; b++) {
      for (let t = 0; t < S; t++) {
        const row = (b * S + t) * D;
        for (let h = 0; h < nh; h++) ropeForward(q, ((b * nh + h) * S + t) * hd, qkv, row + h * hd, rope, t);
        for (let g = 0; g < nkv; g++) {
          const dst = ((b * nkv + g) * S + t) * hd;
          ropeForward(k, dst, qkv, row + Dq + g * hd, rope, t);
          const src = row + Dq + Dkv + g * hd;
          for (let i = 0; i < hd; i++) v[dst + i] = qkv[src + i]!;
        }
      }
    }

    const groups = B * nkv;
    const M = r * S;
    this.backend.gemmBatched({
      transA: false,
      transB: true,
      M,
      N: S,
      K: hd,
      alpha: 1 / Math.sqrt(hd),
      A: q,
      lda: hd,
      B: k,
      ldb: hd,
      beta: 0,
      C: this.att,
      ldc: S,
      batch: groups,
      strideA: M * hd,
      strideB: S * hd,
      strideC: M * S,
    });
    this.maxLogit = causalSoftmaxForward(this.att, B * nh * S, S);
    const yh = this.s.yh;
    this.backend.gemmBatched({
      transA: false,
      transB: false,
      M,
      N: hd,
      K: S,
      alpha: 1,
      A: this.att,
      lda: S,
      B: v,
      ldb: hd,
      beta: 0,
      C: yh,
      ldc: hd,
      batch: groups,
      strideA: M * S,
      strideB: S * hd,
      strideC: M * hd,
    });

    // [B, nh, S, hd] -> [T, nh*hd] (HF transposes heads back before o_proj).
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < nh; h++) {
        for (let t = 0; t < S; t++) {
          const src = ((b * nh + h) * S + t) * hd;
          const dst = (b * S + t) * Dq + h * hd;
          for (let i = 0; i < hd; i++) y[dst + i] = yh[src + i]!;
        }
      }
    }
    this.backend.gemm({
      transA: false,
      transB: true,
      M: T,
      N: H,
      K: Dq,
      alpha: 1,
      A: y,
      lda: Dq,
      B: wo,
      ldb: Dq,
      beta: accumulate ? 1 : 0,
      C: out,
      ldc: H,
    });
  }

  /**
   * From dout (gradient of the layer output) computes dxn (overwritten) and adds the
   * weight gradients into dwqkv and dwo. Uses the state saved by the last forward.
   */
  backward(
    dxn: Float32Array,
    dwqkv: Float32Array,
    dwo: Float32Array,
    dout: Float32Array,
    xn: Float32Array,
    wqkv: Float32Array,
    wo: Float32Array,
  ): void {
    const { batch: B, seq: S, hidden: H, heads: nh, kvHeads: nkv, headDim: hd } = this.d;
    const T = B * S;
    const Dq = nh * hd;
    const Dkv = nkv * hd;
    const D = Dq + 2 * Dkv;
    const r = nh / nkv;
    const { dy, yh: dyh, datt, dq, dk, dv, qkv: dqkv } = this.s;
    const rope = this.rope;

    linearBackward(this.backend, dy, dwo, dout, this.y, wo, T, Dq, H);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < nh; h++) {
        for (let t = 0; t < S; t++) {
          const dst = ((b * nh + h) * S + t) * hd;
          const src = (b * S + t) * Dq + h * hd;
          for (let i = 0; i < hd; i++) dyh[dst + i] = dy[src + i]!;
        }
      }
    }

    const groups = B * nkv;
    const M = r * S;
    const scale = 1 / Math.sqrt(hd);
    // dP = dY V^T ; dV = P^T dY (sums the r query heads of the group).
    this.backend.gemmBatched({
      transA: false,
      transB: true,
      M,
      N: S,
      K: hd,
      alpha: 1,
      A: dyh,
      lda: hd,
      B: this.v,
      ldb: hd,
      beta: 0,
      C: datt,
      ldc: S,
      batch: groups,
      strideA: M * hd,
      strideB: S * hd,
      strideC: M * S,
    });
    this.backend.gemmBatched({
      transA: true,
      transB: false,
      M: S,
      N: hd,
      K: M,
      alpha: 1,
      A: this.att,
      lda: S,
      B: dyh,
      ldb: hd,
      beta: 0,
      C: dv,
      ldc: hd,
      batch: groups,
      strideA: M * S,
      strideB: M * hd,
      strideC: S * hd,
    });
    causalSoftmaxBackward(datt, this.att, B * nh * S, S);
    // dQ = scale dS K ; dK = scale dS^T Q.
    this.backend.gemmBatched({
      transA: false,
      transB: false,
      M,
      N: hd,
      K: S,
      alpha: scale,
      A: datt,
      lda: S,
      B: this.k,
      ldb: hd,
      beta: 0,
      C: dq,
      ldc: hd,
      batch: groups,
      strideA: M * S,
      strideB: S * hd,
      strideC: M * hd,
    });
    this.backend.gemmBatched({
      transA: true,
      transB: false,
      M: S,
      N: hd,
      K: M,
      alpha: scale,
      A: datt,
      lda: S,
      B: this.q,
      ldb: hd,
      beta: 0,
      C: dk,
      ldc: hd,
      batch: groups,
      strideA: M * S,
      strideB: M * hd,
      strideC: S * hd,
    });

    for (let b = 0; b < B; b++) {
      for (let t = 0; t < S; t++) {
        const row = (b * S + t) * D;
        for (let h = 0; h < nh; h++)
          ropeBackward(dqkv, row + h * hd, dq, ((b * nh + h) * S + t) * hd, rope, t);
        for (let g = 0; g < nkv; g++) {
          const src = ((b * nkv + g) * S + t) * hd;
          ropeBackward(dqkv, row + Dq + g * hd, dk, src, rope, t);
          const dst = row + Dq + Dkv + g * hd;
          for (let i = 0; i < hd; i++) dqkv[dst + i] = dv[src + i]!;
        }
      }
    }
    linearBackward(this.backend, dxn, dwqkv, dqkv, xn, wqkv, T, H, D);
  }
}
