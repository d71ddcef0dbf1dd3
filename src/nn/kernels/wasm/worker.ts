/**
 * Worker thread of the wasm backend: instantiates the kernels on the shared memory, then
 * helps with each gemm the main thread posts until told to quit.
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  CMD,
  CMD_QUIT,
  ERR,
  IDLE,
  POSTED,
  RUNNING,
  SEQ,
  STATE,
  signalView,
  teamView,
  waitChange,
  work,
  writeMessage,
} from "./control.js";
import type { Scratch } from "./driver.js";
import { instantiate } from "./module.js";

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  team: SharedArrayBuffer;
  signal: SharedArrayBuffer;
  scratch: Scratch;
}

const init = workerData as WorkerInit;
const kernels = instantiate(init.module, init.memory);
const team = teamView(init.team);
const sig = signalView(init.signal);
// The main thread may post its first job as soon as it sees "ready", before this thread
// runs another line: count from the block's initial 0, never from a value read later.
let seen = 0;
parentPort?.postMessage("ready");

for (;;) {
  seen = waitChange(sig.ints, SEQ, seen);
  if (Atomics.load(sig.ints, CMD) === CMD_QUIT) break;
  // Lost to the main thread: it finished every chunk before this thread got to run.
  if (Atomics.compareExchange(sig.ints, STATE, POSTED, RUNNING) !== POSTED) continue;
  try {
    work(kernels, init.scratch, team);
    Atomics.store(sig.ints, ERR, 0);
  } catch (e) {
    writeMessage(sig, e instanceof Error ? e.message : String(e));
    Atomics.store(sig.ints, ERR, 1);
  }
  Atomics.store(sig.ints, STATE, IDLE);
  Atomics.notify(sig.ints, STATE);
}
