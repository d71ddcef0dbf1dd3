/**
 * Test-only float64 reference of the Llama / Mixtral forward, written directly from
 * the Hugging Face definitions with naive per-token loops and no code shared with the
 * engine. The engine is float32 (so its hot loops stay monomorphic and every matmul
 * goes through a backend); gradient checks compare its analytic gradients with central
 * finite differences of *this* float64 function, which are accurate to ~1e-9, far below
 * the float32 rounding being tolerated. A separate forward comparison pins that both
 * compute the same function, so together the checks show the engine's backward is the
 * derivative of the engine's forward.
 */
import assert from "node:assert/strict";
import type { ModelConfig } from "../src/nn/config.js";

export type Vec = Float64Array;
export type Params64 = Map<string, Float64Array>;

/** y[out] = W[out, in] x[in]. */
export function matvec(W: ArrayLike<number>, x: ArrayLike<number>, inF: number, outF: number): Vec {
  const y = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    let s = 0;
    for (let i = 0; i < inF; i++) s += W[o * inF + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w. */
export function rmsnorm64(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Vec {
  const n = x.length;
  let ms = 0;
  for (let i = 0; i < n; i++) ms += x[i]! * x[i]!;
  ms /= n;
  const r = 1 / Math.sqrt(ms + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = x[i]! * r * w[i]!;
  return y;
}

/** HF apply_rotary_pos_emb on one head vector: v*cos + rotate_half(v)*sin. */
export function rope64(v: ArrayLike<number>, pos: number, theta: number): Vec {
  const d = v.length;
  const half = d / 2;
  const out = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const i = j % half; // emb = cat(freqs, freqs)
    const ang = pos * Math.pow(theta, -(2 * i) / d);
    const rot = j < half ? -v[j + half]! : v[j - half]!; // rotate_half = cat(-x2, x1)
    out[j] = v[j]! * Math.cos(ang) + rot * Math.sin(ang);
  }
  return out;
}

export interface AttnDims {
  B: number;
  S: number;
  H: number;
  nh: number;
  nkv: number;
  hd: number;
  theta: number;
}

/** Causal GQA self-attention on rows xn[b*S + t]; returns o_proj output rows. */
export function attention64(
  xn: Vec[],
  wq: ArrayLike<number>,
  wk: ArrayLike<number>,
  wv: ArrayLike<number>,
  wo: ArrayLike<number>,
  d: AttnDims,
  stats?: { maxScore: number },
): Vec[] {
  const { B, S, H, nh, nkv, hd, theta } = d;
  const rep = nh / nkv;
  const q: Vec[] = [];
  const k: Vec[] = [];
  const v: Vec[] = [];
  for (const x of xn) {
    q.push(matvec(wq, x, H, nh * hd));
    k.push(matvec(wk, x, H, nkv * hd));
    v.push(matvec(wv, x, H, nkv * hd));
  }
  const out: Vec[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < S; t++) {
      const y = new Float64Array(nh * hd);
      for (let h = 0; h < nh; h++) {
        const g = Math.floor(h / rep); // repeat_kv
        const qh = rope64(q[b * S + t]!.subarray(h * hd, h * hd + hd), t, theta);
        const scores: number[] = [];
        const vals: Vec[] = [];
        for (let s = 0; s <= t; s++) {
          const kh = rope64(k[b * S + s]!.subarray(g * hd, g * hd + hd), s, theta);
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qh[i]! * kh[i]!;
          scores.push(dot / Math.sqrt(hd));
          vals.push(v[b * S + s]!.subarray(g * hd, g * hd + hd));
        }
        const m = Math.max(...scores);
        if (stats !== undefined) stats.maxScore = Math.max(stats.maxScore, m);
        const e = scores.map((x) => Math.exp(x - m));
        const z = e.reduce((a, c) => a + c, 0);
        for (let s = 0; s <= t; s++)
          for (let i = 0; i < hd; i++) y[h * hd + i]! += (e[s]! / z) * vals[s]![i]!;
      }
      out.push(matvec(wo, y, nh * hd, H));
    }
  }
  return out;
}

const silu = (x: number): number => x / (1 + Math.exp(-x));

/** Llama MLP: down(silu(gate x) * up x). */
export function mlp64(
  x: ArrayLike<number>,
  wg: ArrayLike<number>,
  wu: ArrayLike<number>,
  wd: ArrayLike<number>,
  H: number,
  I: number,
): Vec {
  const g = matvec(wg, x, H, I);
  const u = matvec(wu, x, H, I);
  const h = new Float64Array(I);
  for (let i = 0; i < I; i++) h[i] = silu(g[i]!) * u[i]!;
  return matvec(wd, h, I, H);
}

export interface Expert64 {
  w1: ArrayLike<number>;
  w3: ArrayLike<number>;
  w2: ArrayLike<number>;
}

export interface Moe64Out {
  out: Vec[];
  /** Router softmax per token. */
  probs: Vec[];
  /** Chosen experts per token, descending probability. */
  chosen: number[][];
  /** Smallest router-logit gap between the k-th and (k+1)-th expert over tokens. */
  minGap: number;
}

/** MixtralSparseMoeBlock: softmax router, top-k renormalised, weighted expert sum. */
export function moe64(
  xn: Vec[],
  wr: ArrayLike<number>,
  experts: Expert64[],
  H: number,
  I: number,
  k: number,
): Moe64Out {
  const E = experts.length;
  const res: Moe64Out = { out: [], probs: [], chosen: [], minGap: Infinity };
  for (const x of xn) {
    const logits = matvec(wr, x, H, E);
    const m = Math.max(...logits);
    const e = Array.from(logits, (l) => Math.exp(l - m));
    const z = e.reduce((a, c) => a + c, 0);
    const p = Float64Array.from(e, (v) => v / z);
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]! || a - b);
    const chosen = order.slice(0, k);
    if (k < E) res.minGap = Math.min(res.minGap, logits[order[k - 1]!]! - logits[order[k]!]!);
    const sum = chosen.reduce((a, c) => a + p[c]!, 0);
    const y = new Float64Array(H);
    for (const c of chosen) {
      const ex = experts[c]!;
      const o = mlp64(x, ex.w1, ex.w3, ex.w2, H, I);
      for (let i = 0; i < H; i++) y[i]! += (p[c]! / sum) * o[i]!;
    }
    res.out.push(y);
    res.probs.push(p);
    res.chosen.push(chosen);
  }
  return res;
}

export interface Model64Out {
  loss: number;
  ce: number;
  aux: number;
  logits: Vec[];
  /** Per MoE layer, per token: chosen experts. */
  chosen: number[][][];
  minGap: number;
  /** The largest attention score of any layer, head and position; the largest scored output logit; mean log Z. */
  attnLogitMax: number;
  outputLogitMax: number;
  outputLogZ: number;
}

/** Full causal LM forward + HF loss (mean CE over labels != -100 and mask, + aux). */
export function model64(
  c: ModelConfig,
  p: Params64,
  tokens: Int32Array,
  targets: Int32Array,
  B: number,
  S: number,
  mask?: Uint8Array,
): Model64Out {
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const get = (n: string): Float64Array => {
    const v = p.get(n);
    assert.ok(v !== undefined, `reference params lack ${n}`);
    return v;
  };
  const emb = get("model.embed_tokens.weight");
  let x: Vec[] = Array.from(tokens, (tok) => emb.slice(tok * H, tok * H + H));
  const dims: AttnDims = {
    B,
    S,
    H,
    nh: c.num_attention_heads,
    nkv: c.num_key_value_heads,
    hd: c.head_dim,
    theta: c.rope_theta,
  };
  const allProbs: Vec[] = [];
  const allChosen: number[][][] = [];
  let minGap = Infinity;
  const attnStats = { maxScore: -Infinity };
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const pre = `model.layers.${l}`;
    const xn = x.map((r) => rmsnorm64(r, get(`${pre}.input_layernorm.weight`), c.rms_norm_eps));
    const a = attention64(
      xn,
      get(`${pre}.self_attn.q_proj.weight`),
      get(`${pre}.self_attn.k_proj.weight`),
      get(`${pre}.self_attn.v_proj.weight`),
      get(`${pre}.self_attn.o_proj.weight`),
      dims,
      attnStats,
    );
    const x2 = x.map((r, t) => r.map((v, i) => v + a[t]![i]!));
    const xn2 = x2.map((r) => rmsnorm64(r, get(`${pre}.post_attention_layernorm.weight`), c.rms_norm_eps));
    let f: Vec[];
    if (c.num_local_experts === 0) {
      f = xn2.map((r) =>
        mlp64(
          r,
          get(`${pre}.mlp.gate_proj.weight`),
          get(`${pre}.mlp.up_proj.weight`),
          get(`${pre}.mlp.down_proj.weight`),
          H,
          I,
        ),
      );
    } else {
      const experts: Expert64[] = [];
      for (let e = 0; e < c.num_local_experts; e++) {
        const q = `${pre}.block_sparse_moe.experts.${e}`;
        experts.push({ w1: get(`${q}.w1.weight`), w3: get(`${q}.w3.weight`), w2: get(`${q}.w2.weight`) });
      }
      const m = moe64(xn2, get(`${pre}.block_sparse_moe.gate.weight`), experts, H, I, c.num_experts_per_tok);
      f = m.out;
      allProbs.push(...m.probs);
      allChosen.push(m.chosen);
      minGap = Math.min(minGap, m.minGap);
    }
    x = x2.map((r, t) => r.map((v, i) => v + f[t]![i]!));
  }
  const head = c.tie_word_embeddings ? emb : get("lm_head.weight");
  const logits = x.map((r) =>
    matvec(head, rmsnorm64(r, get("model.norm.weight"), c.rms_norm_eps), H, c.vocab_size),
  );
  let nll = 0;
  let n = 0;
  let outputLogitMax = -Infinity;
  let logZSum = 0;
  for (let t = 0; t < logits.length; t++) {
    if (targets[t] === -100 || (mask !== undefined && mask[t] === 0)) continue;
    const row = logits[t]!;
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    nll += lse - row[targets[t]!]!;
    outputLogitMax = Math.max(outputLogitMax, m);
    logZSum += lse;
    n++;
  }
  const ce = n > 0 ? nll / n : 0;
  let aux = 0;
  if (c.num_local_experts > 0 && c.router_aux_loss_coef > 0) {
    // HF load_balancing_loss_func over the concatenation of all layers' router outputs.
    const E = c.num_local_experts;
    const N = allProbs.length;
    const f = new Float64Array(E);
    const P = new Float64Array(E);
    for (const layer of allChosen) for (const ch of layer) for (const e of ch) f[e]! += 1 / N;
    for (const pr of allProbs) for (let e = 0; e < E; e++) P[e]! += pr[e]! / N;
    let s = 0;
    for (let e = 0; e < E; e++) s += f[e]! * P[e]!;
    aux = c.router_aux_loss_coef * E * s;
  }
  return {
    loss: ce + aux,
    ce,
    aux,
    logits,
    chosen: allChosen,
    minGap,
    attnLogitMax: attnStats.maxScore,
    outputLogitMax,
    outputLogZ: logZSum / n,
  };
}

/** Central finite differences of f with respect to every element of x (restored after). */
export function fdGrad(f: () => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const fp = f();
    x[i] = x0 - h;
    const fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/**
 * Asserts |a - e| <= atol + rtol * max|e| elementwise (a scale-aware bound: float32
 * rounding errors scale with the largest entries of the product, not each entry).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  rtol = 1e-4,
  atol = 1e-6,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  const tol = atol + rtol * scale;
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(
    worst <= tol,
    `${what}: max |diff| ${worst.toExponential(3)} at [${at}] (got ${actual[at]}, want ${expected[at]}) exceeds ${tol.toExponential(3)} (max |ref| ${scale.toExponential(3)})`,
  );
}

/** Deterministic test data without depending on the code under test. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function randn(rand: () => number, n: number, std = 1, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand();
    const v = rand();
    a[i] = mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return a;
}
