/**
 * A lab job in a child process: one pma training run (train()) or one fine-tuning run.
 * Two of these side by side use the two cores better than one process with two BLAS
 * threads (most of a step is single-threaded elementwise work), so the lab trains in
 * children and keeps the parent for merging, scoring and bookkeeping.
 *
 * Protocol (process.send, advanced serialization): the parent sends one
 * { type: "job", job } and may send { type: "abort" }; the child answers with
 * JobEvent messages and finally { type: "done" } or { type: "error" }.
 */
import { isPmaError } from "../common/errors.js";
import { train } from "../train/loop.js";
import { cpuSeconds } from "./cpu.js";
import { runSft, type SftJob } from "./sft-train.js";

export interface TrainJob {
  kind: "train";
  config?: unknown;
  out?: string;
  resume?: string;
  optimizerFrom?: string;
  weightsOnly?: boolean;
  force?: boolean;
  cacheDir?: string;
}

export type LabJob = TrainJob | SftJob;

export type JobEvent =
  | { type: "start"; step: number; maxSteps: number }
  | { type: "step"; step: number; loss: number; gradNorm: number }
  | { type: "checkpoint"; path: string; step: number; tokens: number }
  | { type: "note"; message: string };

export type WorkerMessage =
  | JobEvent
  | { type: "done"; result: unknown; cpuSeconds: number }
  | { type: "error"; message: string; code: string | null };

async function runJob(job: LabJob, signal: AbortSignal, emit: (e: JobEvent) => void): Promise<unknown> {
  if (job.kind === "sft") return runSft(job, signal, emit);
  const { kind: _kind, ...opts } = job;
  const r = await train({
    ...opts,
    signal,
    onEvent(e) {
      if (e.type === "start") emit({ type: "start", step: e.step, maxSteps: e.maxSteps });
      else if (e.type === "step")
        emit({ type: "step", step: e.record.step, loss: e.record.loss, gradNorm: e.record.grad_norm });
      else if (e.type === "checkpoint")
        emit({ type: "checkpoint", path: e.path, step: e.step, tokens: e.tokens });
      else if (e.type === "note") emit({ type: "note", message: e.message });
    },
  });
  return {
    step: r.step,
    tokens: r.tokens,
    interrupted: r.interrupted,
    tokensPerSecond: r.tokensPerSecond,
    trainSeconds: r.trainSeconds,
  };
}

/** The argument jobs.ts starts workers with, so importing this module elsewhere does nothing. */
export const WORKER_FLAG = "--pma-lab-worker";

if (process.send !== undefined && process.argv.includes(WORKER_FLAG)) {
  const send = (m: WorkerMessage): void => void process.send!(m);
  const abort = new AbortController();
  process.on("message", (m: { type: string; job?: LabJob }) => {
    if (m.type === "abort") abort.abort();
    if (m.type !== "job" || m.job === undefined) return;
    runJob(m.job, abort.signal, send).then(
      (result) => {
        send({ type: "done", result, cpuSeconds: cpuSeconds() });
        process.disconnect();
      },
      (e: unknown) => {
        send({
          type: "error",
          message: e instanceof Error ? e.message : String(e),
          code: isPmaError(e) ? e.code : null,
        });
        process.disconnect();
      },
    );
  });
  // The parent going away (Ctrl-C of pma lab) stops the job cleanly.
  process.on("disconnect", () => abort.abort());
  process.on("SIGINT", () => abort.abort());
}
