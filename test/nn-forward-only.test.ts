// The forward-only (evaluation) model against the training forward: the same kernels
// in the same order on the same data, so losses, logits and log-probs must be exactly
// equal (not close), on every backend, for dense and MoE models, with f32 weights and
// with a bf16 checkpoint as the eval path loads it. Its activation memory must be
// smaller and must not grow with depth.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { pmaWindowLogprobs } from "../src/eval/token-logprobs.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { activationBytes } from "../src/nn/activation-bytes.js";
import type { ModelConfig } from "../src/nn/config.js";
import { resolveConfig } from "../src/nn/config.js";
import { createJsBackend } from "../src/nn/kernels/js.js";
import { getBackend, type BackendName, type MatmulBackend } from "../src/nn/kernels/index.js";
import { IGNORE_INDEX } from "../src/nn/layers/cross-entropy.js";
import { createModel } from "../src/nn/model.js";
import { heldoutWindows } from "../src/data/heldout-windows.js";
import { HeldoutEvaluator } from "../src/train/heldout.js";
import { encodeTensors, readWeights } from "../src/train/weights-io.js";
import { rng } from "./helpers/fixtures.js";

const SEQ = 8;
const dense = (layers: number): ModelConfig =>
  resolveConfig({
    vocab_size: 41,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: layers,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: SEQ,
  });
const moe = (layers: number): ModelConfig =>
  resolveConfig({
    vocab_size: 41,
    hidden_size: 16,
    intermediate_size: 12,
    num_hidden_layers: layers,
    num_attention_heads: 2,
    max_position_embeddings: SEQ,
    num_local_experts: 4,
  });

async function backends(): Promise<[BackendName, MatmulBackend][]> {
  const out: [BackendName, MatmulBackend][] = [["js", createJsBackend()]];
  for (const name of ["wasm", "blas"] as BackendName[]) {
    try {
      out.push([name, await getBackend(name)]);
    } catch (e) {
      if (!isPmaError(e, "BACKEND_UNAVAILABLE")) throw e;
    }
  }
  return out;
}

/** Rounds the parameters through a bf16 safetensors file, read back as evaluation reads it. */
async function loadAsBf16(params: ReturnType<typeof createModel>["params"], dir: string): Promise<void> {
  const file = join(dir, "model.safetensors");
  await writeSafetensors(file, encodeTensors(params.entries(), "BF16"));
  const w = await readWeights(file);
  assert.equal(w.dtype, "BF16");
  params.load(w.tensors);
}

test("forward-only scoring is bit-identical to the training forward (dense, MoE; f32, bf16; every backend)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "pma-fwd-only-"));
  const all = await backends();
  try {
    for (const [name, be] of all) {
      for (const config of [dense(3), moe(3)]) {
        for (const dtype of ["f32", "bf16"]) {
          const what = `${name} ${config.num_local_experts > 0 ? "moe" : "dense"} ${dtype}`;
          // Batch 3 over 7 windows: several forwards through the reused buffers, and a padded last batch.
          const train = createModel(config, be, { batch: 3, seq: SEQ }, { seed: 7 });
          if (dtype === "bf16") await loadAsBf16(train.params, dir);
          const fast = createModel(
            config,
            be,
            { batch: 3, seq: SEQ },
            { params: train.params, forwardOnly: true },
          );
          const r = rng(11);
          const stream = Uint16Array.from({ length: SEQ * 7 + 1 }, () => Math.floor(r() * config.vocab_size));

          assert.deepEqual(
            new HeldoutEvaluator(fast, stream).run(),
            new HeldoutEvaluator(train, stream).run(),
            `${what}: held-out loss`,
          );
          const windows = heldoutWindows(stream.length, SEQ);
          const lpFast = pmaWindowLogprobs(fast, stream, windows).logprobs;
          const lpTrain = pmaWindowLogprobs(train, stream, windows).logprobs;
          assert.deepEqual(lpFast, lpTrain, `${what}: log-probs`);

          // Loss parts with a mask and ignored targets (the MoE aux loss included), and the routing.
          const tokens = Int32Array.from({ length: 3 * SEQ }, () => Math.floor(r() * config.vocab_size));
          const targets = Int32Array.from(tokens, (t, i) =>
            i % 5 === 0 ? IGNORE_INDEX : (t * 7 + 3) % config.vocab_size,
          );
          const mask = Uint8Array.from(tokens, (_, i) => (i % 4 === 1 ? 0 : 1));
          assert.equal(
            fast.forward(tokens, targets, mask),
            train.forward(tokens, targets, mask),
            `${what}: loss`,
          );
          assert.deepEqual(fast.lastLoss, train.lastLoss, `${what}: loss parts`);
          // One block reused for every layer still reports the largest attention logit of all layers.
          assert.deepEqual(fast.lastLogitStats, train.lastLogitStats, `${what}: logit monitors`);
          assert.deepEqual(fast.logits, train.logits, `${what}: logits`);
          assert.deepEqual(fast.expertCounts(), train.expertCounts(), `${what}: expert counts`);
          assert.throws(() => fast.backward(), { code: "USAGE" });
        }
      }
    }
  } finally {
    for (const [, be] of all) be.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});

test("forward-only activation memory is smaller and independent of depth", () => {
  const be = createJsBackend();
  for (const config of [dense, moe]) {
    const bytes = (layers: number, forwardOnly: boolean): number =>
      activationBytes(createModel(config(layers), be, { batch: 2, seq: SEQ }, { forwardOnly }));
    const fast = [1, 2, 6].map((l) => bytes(l, true));
    const train = [1, 2, 6].map((l) => bytes(l, false));
    // Only the [layer, expert] router statistics grow with depth: a few bytes, no activation.
    const statsPerLayer = 12 * config(1).num_local_experts;
    assert.equal(fast[1]! - fast[0]!, statsPerLayer, `forward-only bytes ${fast}`);
    assert.equal(fast[2]! - fast[0]!, 5 * statsPerLayer, `forward-only bytes ${fast}`);
    // The training forward keeps a block of activations per layer: linear in depth.
    assert.ok(train[1]! - train[0]! > 20 * statsPerLayer + 1000, `training bytes grow per layer: ${train}`);
    assert.equal(train[2]! - train[1]!, 4 * (train[1]! - train[0]!), `training bytes: ${train}`);
    for (let i = 0; i < 3; i++)
      assert.ok(fast[i]! < train[i]!, `forward-only ${fast[i]} < training ${train[i]}`);
    // At depth 6 the training forward holds several times what evaluation needs.
    assert.ok(train[2]! > 3 * fast[2]!, `6 layers: training ${train[2]} vs forward-only ${fast[2]}`);
  }
});
