/**
 * Held-out evaluation throughput: the training forward (every layer's activations kept
 * for a backward that never comes) against the forward-only model (one set of layer
 * buffers reused, no residual copies, no gradient scratch), on the same parameters and
 * the same windows in the same run. Repeats alternate the two paths so load drift on
 * the machine hits both alike; the median of each is reported. The losses must be
 * identical, and the script fails if they are not.
 *
 *   node dist/bench/eval.js [repeats=5] [tokens=16384] [backend=auto]
 *
 * Models: the lab's quick dense (d_model 128, 4 layers) and a wider one (d_model 256,
 * 6 layers), both vocab 4096 and seq 128, evaluated in batches of 16 windows as
 * `pma eval` does. Random init and random tokens: speed does not depend on the values.
 */
import { activationBytes } from "../src/nn/activation-bytes.js";
import { resolveConfig, type ModelConfig } from "../src/nn/config.js";
import type { BackendName } from "../src/nn/kernels/index.js";
import { describeBackend, getBackend } from "../src/nn/kernels/index.js";
import { createModel, type Model } from "../src/nn/model.js";
import { Rng } from "../src/nn/rng.js";
import { HeldoutEvaluator, type HeldoutLoss } from "../src/train/heldout.js";

const repeats = Number(process.argv[2] ?? 5);
const tokens = Number(process.argv[3] ?? 16384);
const backendName =
  process.argv[4] === undefined || process.argv[4] === "auto" ? undefined : (process.argv[4] as BackendName);
const SEQ = 128;
const BATCH = 16;

const models: { name: string; config: ModelConfig }[] = [
  {
    name: "quick dense (d128 L4)",
    config: resolveConfig({
      vocab_size: 4096,
      hidden_size: 128,
      intermediate_size: 344,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      max_position_embeddings: SEQ,
    }),
  },
  {
    name: "wide dense (d256 L6)",
    config: resolveConfig({
      vocab_size: 4096,
      hidden_size: 256,
      intermediate_size: 688,
      num_hidden_layers: 6,
      num_attention_heads: 8,
      max_position_embeddings: SEQ,
    }),
  },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function timeRun(ev: HeldoutEvaluator): { ms: number; r: HeldoutLoss } {
  const t0 = performance.now();
  const r = ev.run();
  return { ms: performance.now() - t0, r };
}

const mib = (m: Model): string => (activationBytes(m) / 2 ** 20).toFixed(1);

const be = await getBackend(backendName);
try {
  console.log(describeBackend(be).summary);
  console.log(
    `held-out eval: ${tokens} tokens per run (seq ${SEQ}, batch ${BATCH}), median of ${repeats} runs per path`,
  );
  for (const { name, config } of models) {
    const rng = new Rng(1);
    const stream = Uint16Array.from({ length: tokens + 1 }, () => rng.int(config.vocab_size));
    const train = createModel(config, be, { batch: BATCH, seq: SEQ }, { seed: 1 });
    const fast = createModel(
      config,
      be,
      { batch: BATCH, seq: SEQ },
      { params: train.params, forwardOnly: true },
    );
    const evTrain = new HeldoutEvaluator(train, stream);
    const evFast = new HeldoutEvaluator(fast, stream);
    // Warm-up (JIT, BLAS threads, page faults on fresh buffers), then alternate.
    timeRun(evTrain);
    timeRun(evFast);
    const msTrain: number[] = [];
    const msFast: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const a = timeRun(evTrain);
      const b = timeRun(evFast);
      if (a.r.loss !== b.r.loss || a.r.tokens !== b.r.tokens) {
        throw new Error(`${name}: the paths disagree: loss ${a.r.loss} vs ${b.r.loss}`);
      }
      msTrain.push(a.ms);
      msFast.push(b.ms);
    }
    const n = evTrain.windows.length * SEQ;
    const tpsTrain = n / (median(msTrain) / 1000);
    const tpsFast = n / (median(msFast) / 1000);
    console.log(`\n${name}: ${train.params.numel} parameters, ${n} tokens scored, losses identical`);
    console.log(
      `  training forward  ${tpsTrain.toFixed(0).padStart(8)} tok/s   activations ${mib(train)} MiB`,
    );
    console.log(`  forward-only      ${tpsFast.toFixed(0).padStart(8)} tok/s   activations ${mib(fast)} MiB`);
    console.log(`  speed ratio (forward-only / training forward): ${(tpsFast / tpsTrain).toFixed(3)}`);
  }
} finally {
  be.dispose();
}
