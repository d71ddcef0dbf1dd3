/**
 * Supervised fine-tuning on WordNet question-answer pairs, loss on the answers only
 * (paper section 4.4 / appendix 8). pma's trainer draws windows of a token stream, so
 * this stage has its own small loop over the same engine pieces (model, AdamW, LR
 * schedule, global-norm clipping); like the trainer, the rows of step s are a pure
 * function of (seed, s), so the baseline and PMA-init arms see the same examples.
 *
 * Runs in a lab worker; writes the fine-tuned weights as a checkpoint folder (config
 * and tokenizer copied from the initialisation) and returns the per-step log and the
 * held-out question scores.
 */
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { writeSafetensors } from "../formats/safetensors-writer.js";
import { AdamW } from "../nn/adamw.js";
import { createModel } from "../nn/model.js";
import { getBackend } from "../nn/kernels/index.js";
import { lrAt, type CosineSchedule } from "../nn/schedule.js";
import { uniform53 } from "../data/batches.js";
import { tokenizerFromJson } from "../data/tokenizer-json.js";
import { END_OF_TEXT } from "../data/tokenizer.js";
import { encodeTensors, readModelConfig, readWeights } from "../train/weights-io.js";
import { encodeQa, mcQuestions, qaPairs, type EncodedQa } from "./sft-data.js";
import { scoreQa, type QaScore } from "./sft-eval.js";
import { cpuSeconds } from "./cpu.js";
import type { JobEvent } from "./worker.js";

export interface SftJob {
  kind: "sft";
  /** Weights folder to start from (config.json, tokenizer.json, model.safetensors). */
  init: string;
  /** Output checkpoint folder (replaced). */
  out: string;
  lr: number;
  endLr: number;
  warmupSteps: number;
  steps: number;
  /** Rows (question-answer pairs) per step, and positions per row. */
  batch: number;
  seq: number;
  seed: number;
  /** Held-out multiple-choice questions scored before and after. */
  questions: number;
}

export interface SftStep {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

export interface SftResult {
  out: string;
  steps: SftStep[];
  before: QaScore;
  after: QaScore;
  seconds: number;
  /** CPU seconds of the worker (set by the parent; 0 when unknown). */
  cpuSeconds: number;
}

const COMPANIONS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"];
const REQUIRED = new Set(["config.json", "tokenizer.json"]);

export async function runSft(
  job: SftJob,
  signal: AbortSignal,
  emit: (e: JobEvent) => void,
): Promise<SftResult> {
  const t0 = performance.now();
  const config = await readModelConfig(job.init);
  const tok = tokenizerFromJson(
    JSON.parse(await readFile(join(job.init, "tokenizer.json"), "utf8")),
    join(job.init, "tokenizer.json"),
  );
  const eos = tok.specials.get(END_OF_TEXT);
  if (eos === undefined) throw new PmaError("INTERNAL", `${job.init}/tokenizer.json has no ${END_OF_TEXT}`);
  const backend = await getBackend();
  try {
    const model = createModel(config, backend, { batch: job.batch, seq: job.seq });
    model.params.load((await readWeights(job.init)).tensors);
    const questions = mcQuestions(job.questions);
    const before = scoreQa(model, tok, eos, questions);
    const pairs = qaPairs("train");
    const encoded = new Map<number, EncodedQa | null>();
    const optimizer = new AdamW(model.params, {
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
      maxGradNorm: 1,
    });
    // Counted in steps rather than tokens: each step is one batch of pairs.
    const schedule: CosineSchedule = {
      kind: "cosine",
      lr: job.lr,
      lrMin: job.endLr,
      warmupTokens: job.warmupSteps,
      decayTokens: Math.max(1, job.steps - job.warmupSteps),
    };
    const tokens = new Int32Array(job.batch * job.seq);
    const targets = new Int32Array(job.batch * job.seq);
    const log: SftStep[] = [];
    emit({ type: "start", step: 0, maxSteps: job.steps });
    for (let step = 0; step < job.steps; step++) {
      await new Promise<void>((r) => setImmediate(r));
      if (signal.aborted) throw new PmaError("INTERRUPTED", "fine-tuning stopped");
      for (let r = 0; r < job.batch; r++) {
        // Draw until a pair fits (almost all do); the draw sequence is still a pure function of (seed, step).
        let e: EncodedQa | null = null;
        for (let k = 0; e === null; k++) {
          const i = Math.floor(uniform53(job.seed, step, r * 64 + k) * pairs.length);
          if (!encoded.has(i)) encoded.set(i, encodeQa(tok, eos, pairs[i]!, job.seq));
          e = encoded.get(i)!;
        }
        tokens.set(e.tokens, r * job.seq);
        targets.set(e.targets, r * job.seq);
      }
      model.zeroGrad();
      const loss = model.forward(tokens, targets);
      model.backward();
      const lr = lrAt(schedule, step + 1);
      if (!Number.isFinite(loss))
        throw new PmaError("NONFINITE", `fine-tuning loss is ${loss} at step ${step + 1}`);
      const gradNorm = optimizer.step(lr);
      log.push({ step: step + 1, loss, gradNorm, lr });
      emit({ type: "step", step: step + 1, loss, gradNorm });
    }
    const after = scoreQa(model, tok, eos, questions);
    const staged = await StagedDir.create(job.out, true);
    try {
      await writeSafetensors(
        join(staged.staging, "model.safetensors"),
        encodeTensors(model.params.entries(), "F32"),
      );
      for (const f of COMPANIONS) {
        // config.json and tokenizer.json are needed to score the result; the others are courtesy copies.
        const copy = copyFile(join(job.init, f), join(staged.staging, f));
        await (REQUIRED.has(f) ? copy : copy.catch(() => undefined));
      }
      await writeFileAtomic(
        join(staged.staging, "sft_log.json"),
        JSON.stringify({
          job,
          steps: log,
          before,
          after,
          seconds: (performance.now() - t0) / 1000,
          cpuSeconds: cpuSeconds(),
        }) + "\n",
      );
      await staged.publish();
    } catch (e) {
      await staged.discard();
      throw e;
    }
    return {
      out: job.out,
      steps: log,
      before,
      after,
      seconds: (performance.now() - t0) / 1000,
      cpuSeconds: cpuSeconds(),
    };
  } finally {
    backend.dispose();
  }
}
