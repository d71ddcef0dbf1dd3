/**
 * Worker thread of the wasm backend: instantiates the kernels on the shared memory, then
 * runs the jobs the main thread posts through its control block until told to quit.
 */
import { parentPort, workerData } from "node:worker_threads";
import { CMD, CMD_QUIT, DONE, ERR, SEQ, controlView, waitChange, writeMessage } from "./control.js";
import { runJob, type Scratch } from "./driver.js";
import { instantiate } from "./module.js";

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  scratch: Scratch;
}

const init = workerData as WorkerInit;
const kernels = instantiate(init.module, init.memory);
const ctl = controlView(init.control);
parentPort?.postMessage("ready");

let seen = Atomics.load(ctl.ints, SEQ);
for (;;) {
  seen = waitChange(ctl.ints, SEQ, seen);
  if (Atomics.load(ctl.ints, CMD) === CMD_QUIT) break;
  try {
    runJob(kernels, init.scratch, ctl.job);
    Atomics.store(ctl.ints, ERR, 0);
  } catch (e) {
    writeMessage(ctl, e instanceof Error ? e.message : String(e));
    Atomics.store(ctl.ints, ERR, 1);
  }
  Atomics.store(ctl.ints, DONE, seen);
  Atomics.notify(ctl.ints, DONE);
}
