// The model on every matmul backend available here computes the same loss and
// gradients as on the js reference backend (float32 tolerance: the backends sum in
// different orders). Catches buffers that bypass backend.alloc, which only the
// WebAssembly backend (computing in its own memory) would expose.
import assert from "node:assert/strict";
import { test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { resolveConfig } from "../src/nn/config.js";
import type { BackendName, MatmulBackend } from "../src/nn/kernels/index.js";
import { createJsBackend, getBackend } from "../src/nn/kernels/index.js";
import { createModel } from "../src/nn/model.js";
import { assertClose, lcg } from "./nn-ref64.js";

const B = 2,
  S = 16;
const configs = [
  resolveConfig({
    vocab_size: 50,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 16,
  }),
  resolveConfig({
    vocab_size: 50,
    hidden_size: 32,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 16,
    num_local_experts: 4,
  }),
];

function run(
  be: MatmulBackend,
  c: (typeof configs)[number],
): { loss: number; logits: Float32Array; grad: Float32Array; counts: Int32Array } {
  const model = createModel(c, be, { batch: B, seq: S }, { seed: 4 });
  // A decisive router (std 1 instead of 0.02), so float32 summation-order differences
  // between backends cannot flip a top-k choice.
  for (const l of model.params.w.layers) l.router?.forEach((v, i, a) => (a[i] = v * 50));
  const r = lcg(5);
  const tokens = Int32Array.from({ length: B * S }, () => Math.floor(r() * c.vocab_size));
  const targets = Int32Array.from({ length: B * S }, () => Math.floor(r() * c.vocab_size));
  model.zeroGrad();
  const loss = model.forward(tokens, targets);
  const logits = Float32Array.from(model.logits);
  model.backward();
  return { loss, logits, grad: Float32Array.from(model.params.grad), counts: model.expertCounts() };
}

for (const name of ["wasm", "blas"] as BackendName[]) {
  test(`model on the ${name} backend matches the js backend`, async (t) => {
    let be: MatmulBackend;
    try {
      be = await getBackend(name);
    } catch (e) {
      if (isPmaError(e, "BACKEND_UNAVAILABLE")) {
        t.skip(`${name} backend not available here`);
        return;
      }
      throw e;
    }
    try {
      for (const c of configs) {
        const ref = run(createJsBackend(), c);
        const got = run(be, c);
        assert.deepEqual(got.counts, ref.counts);
        assert.ok(Math.abs(got.loss - ref.loss) < 1e-5 * ref.loss, `loss ${got.loss} vs ${ref.loss}`);
        assertClose(got.logits, ref.logits, `${name} logits`, 1e-4);
        assertClose(got.grad, ref.grad, `${name} gradient`, 1e-3);
      }
    } finally {
      be.dispose();
    }
  });
}
