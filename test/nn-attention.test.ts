// Causal self-attention (RoPE, GQA, o_proj) against the float64 reference: forward
// values, and backward (dxn, dWqkv, dWo) against central finite differences.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { AttentionScratch, CausalSelfAttention } from "../src/nn/layers/attention.js";
import { ropeTables } from "../src/nn/layers/rope.js";
import type { AttnDims } from "./nn-ref64.js";
import { assertClose, attention64, fdGrad, lcg, randn } from "./nn-ref64.js";

function check(name: string, d: AttnDims): void {
  test(`attention ${name}`, () => {
    const be = createJsBackend();
    const r = lcg(11 + d.nh * 7 + d.nkv);
    const { B, S, H, nh, nkv, hd } = d;
    const T = B * S;
    const Dq = nh * hd,
      Dkv = nkv * hd;
    const xn = randn(r, T * H);
    const wqkv = randn(r, (Dq + 2 * Dkv) * H, 0.5);
    const wo = randn(r, H * Dq, 0.5);
    const dims = { batch: B, seq: S, hidden: H, heads: nh, kvHeads: nkv, headDim: hd };
    const scratch = new AttentionScratch(be, dims);
    const attn = new CausalSelfAttention(be, dims, ropeTables(S, hd, d.theta), scratch);
    const out = new Float32Array(T * H).fill(1);
    attn.forward(out, xn, wqkv, wo, true);

    const x64 = Float64Array.from(xn);
    const wqkv64 = Float64Array.from(wqkv);
    const wo64 = Float64Array.from(wo);
    const ref = (): Float64Array => {
      const rows = Array.from({ length: T }, (_, t) => x64.subarray(t * H, t * H + H));
      const wq = wqkv64.subarray(0, Dq * H);
      const wk = wqkv64.subarray(Dq * H, (Dq + Dkv) * H);
      const wv = wqkv64.subarray((Dq + Dkv) * H);
      const o = attention64(rows, wq, wk, wv, wo64, d);
      const flat = new Float64Array(T * H);
      o.forEach((row, t) => flat.set(row, t * H));
      return flat;
    };
    const y = ref();
    assertClose(
      out,
      y.map((v) => v + 1),
      "forward (accumulated onto the residual)",
      2e-6,
    );
    // Causality: changing the last token of batch 0 leaves earlier outputs unchanged.
    const before = y.slice();
    x64[(S - 1) * H]! += 1;
    const after = ref();
    x64[(S - 1) * H]! -= 1;
    assertClose(after.subarray(0, (S - 1) * H), before.subarray(0, (S - 1) * H), "causal mask", 0, 1e-12);
    assert.ok(Math.abs(after[(S - 1) * H]! - before[(S - 1) * H]!) > 1e-6);

    const dout = randn(r, T * H);
    const dxn = new Float32Array(T * H).fill(NaN);
    const dwqkv = new Float32Array(wqkv.length);
    const dwo = new Float32Array(wo.length);
    attn.backward(dxn, dwqkv, dwo, dout, xn, wqkv, wo);
    const L = (): number => {
      const o = ref();
      let s = 0;
      for (let i = 0; i < o.length; i++) s += dout[i]! * o[i]!;
      return s;
    };
    assertClose(dxn, fdGrad(L, x64), "dxn", 2e-5);
    assertClose(dwqkv, fdGrad(L, wqkv64), "dWqkv", 2e-5);
    assertClose(dwo, fdGrad(L, wo64), "dWo", 2e-5);
  });
}

check("MHA (4 heads, hd*heads != hidden)", { B: 2, S: 5, H: 6, nh: 4, nkv: 4, hd: 4, theta: 10000 });
check("GQA (4 query heads on 2 KV heads)", { B: 2, S: 5, H: 6, nh: 4, nkv: 2, hd: 4, theta: 10000 });
check("MQA (3 query heads on 1 KV head), small theta", {
  B: 1,
  S: 6,
  H: 5,
  nh: 3,
  nkv: 1,
  hd: 6,
  theta: 100,
});
