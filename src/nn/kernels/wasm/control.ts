import { JOB_SLOTS } from "./driver.js";

/**
 * The block one worker and the main thread share to hand over a job without messages
 * (so `gemm` can stay synchronous): the main thread writes the job, bumps SEQ and wakes
 * the worker; the worker runs it, copies SEQ into DONE and wakes the main thread.
 */
export const SEQ = 0;
export const DONE = 1;
export const CMD = 2;
export const ERR = 3;
export const CMD_RUN = 0;
export const CMD_QUIT = 1;
const JOB_AT = 64;
const MSG_AT = JOB_AT + JOB_SLOTS * 8;
const MSG_BYTES = 512;
export const CONTROL_BYTES = MSG_AT + MSG_BYTES;

/**
 * Polls before sleeping: back-to-back gemms in a training step arrive microseconds
 * apart, and a futex sleep/wake round trip costs tens of microseconds each time.
 */
export const SPIN = 20000;

export interface Control {
  ints: Int32Array;
  job: Float64Array;
  msg: Uint8Array;
}

export function controlView(sab: SharedArrayBuffer): Control {
  return {
    ints: new Int32Array(sab, 0, 4),
    job: new Float64Array(sab, JOB_AT, JOB_SLOTS),
    msg: new Uint8Array(sab, MSG_AT, MSG_BYTES),
  };
}

/** Waits until ints[at] differs from `value`; returns the new value. */
export function waitChange(ints: Int32Array, at: number, value: number): number {
  for (let i = 0; i < SPIN; i++) {
    const v = Atomics.load(ints, at);
    if (v !== value) return v;
  }
  for (;;) {
    Atomics.wait(ints, at, value);
    const v = Atomics.load(ints, at);
    if (v !== value) return v;
  }
}

export function writeMessage(c: Control, text: string): void {
  const bytes = new TextEncoder().encode(text).subarray(0, c.msg.length - 1);
  c.msg.fill(0);
  c.msg.set(bytes);
}

export function readMessage(c: Control): string {
  const end = c.msg.indexOf(0);
  return new TextDecoder().decode(c.msg.slice(0, end < 0 ? c.msg.length : end));
}
