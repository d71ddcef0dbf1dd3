/**
 * CPU slots and child-process jobs. The lab notes found two training processes side by
 * side to be the most throughput on two cores; the parent's own scoring counts as one
 * of the slots, so the machine is never asked to do three things at once.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { PmaError, type PmaErrorCode } from "../common/errors.js";
import type { JobEvent, LabJob, WorkerMessage } from "./worker.js";

export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    this.free = size;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.free++;
  }

  async with<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

const WORKER = fileURLToPath(new URL("./worker.js", import.meta.url));

/**
 * Runs one job in a child process with one matmul thread. Resolves with the job's
 * result; rejects with the child's error (as a PmaError with its code) or if it dies.
 */
export interface ChildResult {
  result: unknown;
  /** CPU seconds the child used (all its threads). */
  cpuSeconds: number;
}

/** CPU seconds used by all lab workers of this process so far (for the time breakdown). */
export const childCpu = { seconds: 0 };

export function runInChild(
  job: LabJob,
  onEvent: (e: JobEvent) => void,
  signal?: AbortSignal,
): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    // The flag is the worker module's own constant (not imported: that would load the trainer here).
    const child = fork(WORKER, ["--pma-lab-worker"], {
      env: { ...process.env, PMA_THREADS: "1", OPENBLAS_NUM_THREADS: "1" },
      serialization: "advanced",
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let settled = false;
    const onAbort = (): void => void child.send({ type: "abort" });
    signal?.addEventListener("abort", onAbort);
    const finish = (f: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      f();
    };
    child.on("message", (m: WorkerMessage) => {
      if (m.type === "done") {
        childCpu.seconds += m.cpuSeconds;
        finish(() => resolvePromise({ result: m.result, cpuSeconds: m.cpuSeconds }));
      } else if (m.type === "error")
        finish(() => reject(new PmaError((m.code ?? "INTERNAL") as PmaErrorCode, m.message)));
      else onEvent(m);
    });
    child.on("exit", (code, sig) => {
      finish(() =>
        reject(
          new PmaError(
            "INTERNAL",
            `lab worker exited (${sig ?? `status ${code}`}) before finishing its job${stderr === "" ? "" : `:\n${stderr}`}`,
          ),
        ),
      );
    });
    child.on("error", (e) =>
      finish(() => reject(new PmaError("INTERNAL", `cannot start a lab worker: ${e.message}`, { cause: e }))),
    );
    child.send({ type: "job", job });
    if (signal?.aborted === true) onAbort();
  });
}
