import { Worker } from "node:worker_threads";
import { PmaError } from "../../../common/errors.js";
import { checkBatched, checkGemm, gemmExtents, scaleOnly } from "../check.js";
import type { BatchedGemmArgs, GemmArgs, MatmulBackend } from "../matmul.js";
import { defaultThreads } from "../threads.js";
import { SharedArena } from "./arena.js";
import {
  CMD,
  CMD_QUIT,
  CMD_RUN,
  ERR,
  IDLE,
  POSTED,
  SEQ,
  SIGNAL_BYTES,
  STATE,
  TEAM_BYTES,
  postJob,
  readMessage,
  signalView,
  teamView,
  waitChange,
  work,
  type Signal,
  type Team,
} from "./control.js";
import { SCRATCH_BYTES, type Scratch, type WasmGemm } from "./driver.js";
import { gemmModule, instantiate, type GemmKernels } from "./module.js";
import { plan } from "./plan.js";
import type { WorkerInit } from "./worker.js";

export interface WasmOptions {
  /** Threads per gemm: the calling thread plus threads - 1 workers (default PMA_THREADS or all cores). */
  threads?: number;
  /** Shared memory to start with; it grows on demand up to 4 GiB. */
  initialBytes?: number;
}

export interface WasmBackend extends MatmulBackend {
  readonly name: "wasm";
  readonly threads: number;
  /** The shared memory every buffer from `alloc` lives in. */
  readonly memory: WebAssembly.Memory;
  /** True when `arr` is in the shared memory (computed on in place, no copies). */
  owns(arr: Float32Array): boolean;
}

interface Helper {
  worker: Worker;
  sig: Signal;
  seq: number;
}

function scratch(arena: SharedArena): Scratch {
  return {
    a: arena.allocBytes(SCRATCH_BYTES.a),
    b: arena.allocBytes(SCRATCH_BYTES.b),
    tile: arena.allocBytes(SCRATCH_BYTES.tile),
  };
}

async function startHelper(
  mod: WebAssembly.Module,
  arena: SharedArena,
  team: SharedArrayBuffer,
): Promise<Helper> {
  const signal = new SharedArrayBuffer(SIGNAL_BYTES);
  const init: WorkerInit = { module: mod, memory: arena.memory, team, signal, scratch: scratch(arena) };
  const worker = new Worker(new URL("./worker.js", import.meta.url), { workerData: init });
  await new Promise<void>((resolve, reject) => {
    worker.once("message", () => resolve());
    worker.once("error", reject);
    worker.once("exit", (code) =>
      reject(new PmaError("BACKEND_UNAVAILABLE", `wasm worker exited (${code}) before starting`)),
    );
  });
  worker.removeAllListeners();
  // A parked helper must not keep the process alive.
  worker.unref();
  return { worker, sig: signalView(signal), seq: 0 };
}

/**
 * f32x4 WebAssembly GEMM on all cores: one shared WebAssembly.Memory, the calling thread
 * plus `threads - 1` workers each computing a disjoint part of C, handed over through
 * Atomics so that `gemm` returns only when C is complete.
 */
export async function createWasmBackend(opts: WasmOptions = {}): Promise<WasmBackend> {
  const threads = opts.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1)
    throw new PmaError("USAGE", `wasm backend: threads=${threads} must be a positive integer`);
  const mod = await gemmModule();
  const arena = new SharedArena(
    opts.initialBytes ?? threads * (SCRATCH_BYTES.a + SCRATCH_BYTES.b) + (1 << 20),
  );
  const kernels: GemmKernels = instantiate(mod, arena.memory);
  const own = scratch(arena);
  const teamBuffer = new SharedArrayBuffer(TEAM_BYTES);
  const team: Team = teamView(teamBuffer);
  let helpers: Helper[] = await Promise.all(
    Array.from({ length: threads - 1 }, () => startHelper(mod, arena, teamBuffer)),
  );

  function run(g: WasmGemm): void {
    const p = plan(g, 1 + helpers.length);
    postJob(team, g, p);
    // Wake only as many helpers as there are chunks beyond the one this thread takes.
    const woken = helpers.slice(0, Math.min(helpers.length, p.count - 1));
    for (const h of woken) {
      Atomics.store(h.sig.ints, CMD, CMD_RUN);
      Atomics.store(h.sig.ints, STATE, POSTED);
      h.seq = (h.seq + 1) | 0;
      Atomics.store(h.sig.ints, SEQ, h.seq);
      Atomics.notify(h.sig.ints, SEQ);
    }
    let failure: unknown;
    try {
      work(kernels, own, team);
    } catch (e) {
      failure = e;
    }
    // A helper that never started is taken back; one that started must finish before C
    // (or a staging buffer, or the team block) can be touched again.
    for (const h of woken) {
      if (Atomics.compareExchange(h.sig.ints, STATE, POSTED, IDLE) === POSTED) continue;
      let state = Atomics.load(h.sig.ints, STATE);
      while (state !== IDLE) state = waitChange(h.sig.ints, STATE, state);
      if (Atomics.load(h.sig.ints, ERR) !== 0) failure ??= new Error(readMessage(h.sig));
    }
    if (failure !== undefined) {
      throw new PmaError(
        "INTERNAL",
        `wasm gemm failed: ${failure instanceof Error ? failure.message : failure}`,
        { cause: failure },
      );
    }
  }

  /** Byte address of element `off` of `arr`, copying the used range in when `arr` is not ours. */
  function place(
    arr: Float32Array,
    off: number,
    extent: number,
    temps: number[],
  ): [number, Float32Array | undefined] {
    if (arena.owns(arr)) return [arr.byteOffset + 4 * off, undefined];
    const copy = arena.alloc(extent);
    copy.set(arr.subarray(off, off + extent));
    temps.push(copy.byteOffset);
    return [copy.byteOffset, copy];
  }

  function gemmAny(g: GemmArgs, batch: number, sA: number, sB: number, sC: number): void {
    if (g.M === 0 || g.N === 0 || batch === 0) return;
    const ext = gemmExtents(g, batch, sA, sB, sC);
    const temps: number[] = [];
    try {
      const [a] = place(g.A, g.offA ?? 0, ext.a, temps);
      const [b] = place(g.B, g.offB ?? 0, ext.b, temps);
      const [c, cCopy] = place(g.C, g.offC ?? 0, ext.c, temps);
      run({
        transA: g.transA,
        transB: g.transB,
        M: g.M,
        N: g.N,
        K: g.K,
        alpha: g.alpha,
        a,
        lda: g.lda,
        b,
        ldb: g.ldb,
        beta: g.beta,
        c,
        ldc: g.ldc,
        batch,
        strideA: 4 * sA,
        strideB: 4 * sB,
        strideC: 4 * sC,
      });
      if (cCopy !== undefined) g.C.set(cCopy, g.offC ?? 0);
    } finally {
      for (const t of temps) arena.release(t);
    }
  }

  return {
    name: "wasm",
    get threads() {
      return 1 + helpers.length;
    },
    memory: arena.memory,
    owns: (arr) => arena.owns(arr),
    alloc: (n) => arena.alloc(n),
    free: (buf) => arena.release(buf),
    gemm(g: GemmArgs) {
      checkGemm(g);
      if (!scaleOnly(g)) gemmAny(g, 1, 0, 0, 0);
    },
    gemmBatched(g: BatchedGemmArgs) {
      checkBatched(g);
      if (!scaleOnly(g, g.batch, g.strideC)) gemmAny(g, g.batch, g.strideA, g.strideB, g.strideC);
    },
    dispose() {
      // Later calls still work, on the calling thread alone.
      for (const h of helpers) {
        Atomics.store(h.sig.ints, CMD, CMD_QUIT);
        Atomics.store(h.sig.ints, SEQ, (h.seq + 1) | 0);
        Atomics.notify(h.sig.ints, SEQ);
        void h.worker.terminate();
      }
      helpers = [];
    },
  };
}
