// AdamW against a hand-written float64 transcription of torch.optim.AdamW +
// clip_grad_norm_, on a real parameter set (so the decay rule by tensor rank is used).
import assert from "node:assert/strict";
import { test } from "node:test";
import { AdamW } from "../src/nn/adamw.js";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { ParamSet } from "../src/nn/params.js";
import { assertClose, lcg, randn } from "./nn-ref64.js";

const cfg = resolveConfig({
  vocab_size: 11,
  hidden_size: 4,
  intermediate_size: 6,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  max_position_embeddings: 8,
});

function setup(seed: number): ParamSet {
  const ps = new ParamSet(cfg, createJsBackend());
  ps.data.set(randn(lcg(seed), ps.numel, 0.5));
  return ps;
}

interface Ref {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  t: number;
}

/** torch AdamW step in float64, with clip_grad_norm_'s max/(norm + 1e-6) scaling. */
function refStep(
  s: Ref,
  g: Float32Array,
  decays: boolean[],
  lr: number,
  o: { b1: number; b2: number; eps: number; wd: number; clip: number },
): number {
  let n2 = 0;
  for (const x of g) n2 += x * x;
  const norm = Math.sqrt(n2);
  const c = o.clip > 0 && norm > o.clip ? o.clip / (norm + 1e-6) : 1;
  s.t++;
  for (let i = 0; i < g.length; i++) {
    const gi = g[i]! * c;
    s.m[i] = o.b1 * s.m[i]! + (1 - o.b1) * gi;
    s.v[i] = o.b2 * s.v[i]! + (1 - o.b2) * gi * gi;
    if (decays[i]) s.p[i]! *= 1 - lr * o.wd;
    const mhat = s.m[i]! / (1 - o.b1 ** s.t);
    const vhat = s.v[i]! / (1 - o.b2 ** s.t);
    s.p[i]! -= (lr * mhat) / (Math.sqrt(vhat) + o.eps);
  }
  return norm;
}

function decayMask(ps: ParamSet): boolean[] {
  const d = new Array<boolean>(ps.numel).fill(false);
  for (const i of ps.infos) for (let k = 0; k < i.size; k++) d[i.offset + k] = i.shape.length >= 2;
  return d;
}

test("two AdamW steps match the float64 update (bias correction, decoupled decay)", () => {
  const ps = setup(1);
  const o = { b1: 0.8, b2: 0.9, eps: 1e-6, wd: 0.3, clip: 0 };
  const opt = new AdamW(ps, { beta1: o.b1, beta2: o.b2, eps: o.eps, weightDecay: o.wd, maxGradNorm: 0 });
  const ref: Ref = {
    p: Float64Array.from(ps.data),
    m: new Float64Array(ps.numel),
    v: new Float64Array(ps.numel),
    t: 0,
  };
  const dm = decayMask(ps);
  const r = lcg(2);
  for (const lr of [0.01, 0.003]) {
    ps.grad.set(randn(r, ps.numel, 0.1));
    const norm = opt.step(lr);
    const refNorm = refStep(ref, ps.grad, dm, lr, o);
    assert.ok(Math.abs(norm - refNorm) < 1e-9 * refNorm);
    assertClose(ps.data, ref.p, `params after step ${ref.t}`, 1e-6, 0);
    assertClose(opt.m, ref.m, "m", 1e-6, 0);
    assertClose(opt.v, ref.v, "v", 1e-6, 0);
  }
  assert.equal(opt.steps, 2);
});

test("weight decay applies to matrices only: zero gradient shrinks matrices, leaves norm gains", () => {
  const ps = setup(3);
  const before = Float32Array.from(ps.data);
  const opt = new AdamW(ps, { weightDecay: 0.5 });
  ps.zeroGrad();
  opt.step(0.1);
  for (const i of ps.infos) {
    const factor = i.shape.length >= 2 ? 1 - 0.1 * 0.5 : 1;
    const a = ps.get(i.name);
    for (let k = 0; k < i.size; k++) assert.equal(a[k], Math.fround(before[i.offset + k]! * factor), i.name);
  }
  assert.equal(
    ps.infos.filter((i) => !i.decay).every((i) => i.name.endsWith("norm.weight")),
    true,
  );
});

test("global norm clipping: pre-clip norm returned, update uses clipped gradients", () => {
  const ps = setup(4);
  const o = { b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0.1, clip: 1 };
  const opt = new AdamW(ps); // defaults: 0.9, 0.95, 1e-8, 0.1, clip 1
  const ref: Ref = {
    p: Float64Array.from(ps.data),
    m: new Float64Array(ps.numel),
    v: new Float64Array(ps.numel),
    t: 0,
  };
  const g = randn(lcg(5), ps.numel);
  let n = 0;
  for (const x of g) n += x * x;
  const scale = 10 / Math.sqrt(n);
  ps.grad.set(g.map((x) => x * scale)); // norm 10 > 1
  const gradBefore = Float32Array.from(ps.grad);
  const norm = opt.step(0.01);
  assert.ok(Math.abs(norm - 10) < 1e-4, `norm ${norm}`);
  assert.deepEqual(ps.grad, gradBefore, "the gradient buffer is not modified");
  refStep(ref, gradBefore, decayMask(ps), 0.01, o);
  assertClose(ps.data, ref.p, "clipped update", 1e-6, 0);
  assertClose(opt.m, ref.m, "clipped m", 1e-6, 0);
  // With the first step only the clipped m differs from unclipped m by the factor 1/10.
  assert.ok(
    Math.abs(opt.m[0]! - 0.1 * gradBefore[0]! * (1 / (10 + 1e-6))) < 1e-6 * Math.abs(gradBefore[0]!) + 1e-12,
  );
});

test("state export/import continues bit-identically; non-finite gradients are refused", () => {
  const a = setup(6);
  const optA = new AdamW(a);
  const r = lcg(7);
  for (let s = 0; s < 2; s++) {
    a.grad.set(randn(r, a.numel, 0.2));
    optA.step(0.01);
  }
  const st = optA.exportState();
  assert.equal(st.step, 2);
  assert.equal(st.tensors.length, 2 * a.infos.length);
  assert.ok(st.tensors.some((t) => t.name === "model.norm.weight.exp_avg_sq"));
  const b = new ParamSet(cfg, createJsBackend());
  b.data.set(a.data);
  const optB = new AdamW(b);
  optB.importState({
    step: st.step,
    tensors: st.tensors.map((t) => ({ ...t, data: Float32Array.from(t.data) })),
  });
  const g = randn(r, a.numel, 0.2);
  a.grad.set(g);
  b.grad.set(g);
  optA.step(0.005);
  optB.step(0.005);
  assert.deepEqual(b.data, a.data);
  assert.equal(optB.steps, 3);

  const bad = st.tensors.map((t) => ({ ...t, data: Float32Array.from(t.data) }));
  bad.pop();
  assert.throws(() => optB.importState({ step: 1, tensors: bad }), { code: "TENSOR_NOT_FOUND" });

  const snapshot = Float32Array.from(a.data);
  a.grad[5] = NaN;
  assert.throws(() => optA.step(0.01), { code: "NONFINITE" });
  assert.deepEqual(a.data, snapshot);
  assert.equal(optA.steps, 3);
});
