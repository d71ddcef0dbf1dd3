import { runGemm, type Scratch, type WasmGemm } from "./driver.js";
import type { GemmKernels } from "./module.js";
import { chunk, type Plan } from "./plan.js";

/**
 * Shared blocks through which the main thread hands a gemm to its workers without
 * messages, so that `gemm` stays synchronous.
 *
 * The team block holds the current gemm, its plan, and the counter from which every
 * thread claims chunks. Each worker also has its own signal block with a state word:
 * the main thread sets POSTED and bumps SEQ to wake it; the worker moves POSTED to
 * RUNNING, claims chunks until none are left, and sets IDLE. When the main thread has
 * run out of chunks it takes back a worker still in POSTED (one the OS has not yet
 * scheduled: waiting for it would only add its wake-up latency) and waits for one in
 * RUNNING. A worker only reads the team block while RUNNING, so the block can be
 * reused as soon as every worker is IDLE.
 */
export const SEQ = 0;
export const STATE = 1;
export const CMD = 2;
export const ERR = 3;
export const IDLE = 0;
export const POSTED = 1;
export const RUNNING = 2;
export const CMD_RUN = 0;
export const CMD_QUIT = 1;
const MSG_AT = 64;
const MSG_BYTES = 512;
export const SIGNAL_BYTES = MSG_AT + MSG_BYTES;

const JOB_AT = 64;
const JOB_SLOTS = 20;
export const TEAM_BYTES = JOB_AT + JOB_SLOTS * 8;

/**
 * Polls before sleeping: back-to-back gemms in a training step arrive microseconds
 * apart, and a futex sleep/wake round trip costs tens of microseconds each time.
 */
export const SPIN = 20000;

export interface Signal {
  ints: Int32Array;
  msg: Uint8Array;
}

export interface Team {
  counter: Int32Array;
  job: Float64Array;
}

export function signalView(sab: SharedArrayBuffer): Signal {
  return { ints: new Int32Array(sab, 0, 4), msg: new Uint8Array(sab, MSG_AT, MSG_BYTES) };
}

export function teamView(sab: SharedArrayBuffer): Team {
  return { counter: new Int32Array(sab, 0, 1), job: new Float64Array(sab, JOB_AT, JOB_SLOTS) };
}

/** Publishes g and its plan and resets the chunk counter (before any worker is woken). */
export function postJob(t: Team, g: WasmGemm, p: Plan): void {
  const j = t.job;
  j[0] = g.transA ? 1 : 0;
  j[1] = g.transB ? 1 : 0;
  j[2] = g.M;
  j[3] = g.N;
  j[4] = g.K;
  j[5] = g.alpha;
  j[6] = g.a;
  j[7] = g.lda;
  j[8] = g.b;
  j[9] = g.ldb;
  j[10] = g.beta;
  j[11] = g.c;
  j[12] = g.ldc;
  j[13] = g.batch;
  j[14] = g.strideA;
  j[15] = g.strideB;
  j[16] = g.strideC;
  j[17] = p.mode;
  j[18] = p.size;
  j[19] = p.count;
  Atomics.store(t.counter, 0, 0);
}

/** Claims and runs chunks of the posted gemm until none are left. */
export function work(k: GemmKernels, s: Scratch, t: Team): void {
  const j = t.job;
  const g: WasmGemm = {
    transA: j[0] === 1,
    transB: j[1] === 1,
    M: j[2]!,
    N: j[3]!,
    K: j[4]!,
    alpha: j[5]!,
    a: j[6]!,
    lda: j[7]!,
    b: j[8]!,
    ldb: j[9]!,
    beta: j[10]!,
    c: j[11]!,
    ldc: j[12]!,
    batch: j[13]!,
    strideA: j[14]!,
    strideB: j[15]!,
    strideC: j[16]!,
  };
  const p: Plan = { mode: j[17] as Plan["mode"], size: j[18]!, count: j[19]! };
  for (let i = Atomics.add(t.counter, 0, 1); i < p.count; i = Atomics.add(t.counter, 0, 1)) {
    runGemm(k, s, chunk(g, p, i));
  }
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

export function writeMessage(s: Signal, text: string): void {
  const bytes = new TextEncoder().encode(text).subarray(0, s.msg.length - 1);
  s.msg.fill(0);
  s.msg.set(bytes);
}

export function readMessage(s: Signal): string {
  const end = s.msg.indexOf(0);
  return new TextDecoder().decode(s.msg.slice(0, end < 0 ? s.msg.length : end));
}
