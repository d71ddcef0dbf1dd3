import { readFileSync } from "node:fs";
import { encodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import type { FloatDType } from "../tensor/dtype.js";

/** Precision of the running sum. */
export type AccumulatePrecision = "f32" | "f64";

interface KernelExports {
  memory: WebAssembly.Memory;
  acc_bf16_f32(acc: number, src: number, n: number, c: number): void;
  acc_f16_f32(acc: number, src: number, n: number, c: number): void;
  acc_f32_f32(acc: number, src: number, n: number, c: number): void;
  acc_bf16_f64(acc: number, src: number, n: number, c: number): void;
  acc_f16_f64(acc: number, src: number, n: number, c: number): void;
  acc_f32_f64(acc: number, src: number, n: number, c: number): void;
  acc_f64_f64(acc: number, src: number, n: number, c: number): void;
  f32_to_bf16(dst: number, src: number, n: number): number;
  f32_to_f16(dst: number, src: number, n: number): number;
  f64_to_f32(dst: number, src: number, n: number): number;
  f64_to_bf16(dst: number, src: number, n: number): number;
  f64_to_f16(dst: number, src: number, n: number): number;
  count_nonfinite_f32(p: number, n: number): number;
  count_nonfinite_f64(p: number, n: number): number;
}

const PAGE = 65536;
let compiled: WebAssembly.Module | null = null;

/**
 * The merge's arithmetic on one chunk: a private WebAssembly memory holding one input
 * chunk (`src`), the running sum (`acc`) and the encoded output (`out`). Inputs are read
 * straight into `src`, and outputs written straight from `out`, so no byte is copied
 * twice. Memory is fixed once by `reserve`, which is what bounds the merge's RSS.
 */
export class MergeKernels {
  private readonly k: KernelExports;
  private chunkElements = 0;
  private srcPtr = 0;
  private accPtr = 0;
  private outPtr = 0;

  constructor() {
    if (compiled === null) {
      compiled = new WebAssembly.Module(readFileSync(new URL("../../wasm/merge.wasm", import.meta.url)));
    }
    this.k = new WebAssembly.Instance(compiled, {}).exports as unknown as KernelExports;
  }

  /** Sizes the memory for chunks of up to `chunkElements` elements of any float dtype. */
  reserve(chunkElements: number): void {
    const region = chunkElements * 8;
    const need = 3 * region + 64;
    const have = this.k.memory.buffer.byteLength;
    if (need > have) this.k.memory.grow(Math.ceil((need - have) / PAGE));
    this.chunkElements = chunkElements;
    this.srcPtr = 64; // keep address 0 unused so a zero pointer is never valid data
    this.accPtr = this.srcPtr + region;
    this.outPtr = this.accPtr + region;
  }

  get capacity(): number {
    return this.chunkElements;
  }

  /** Where the next input chunk of `byteLength` bytes must be read to. */
  srcBytes(byteLength: number): Uint8Array {
    return new Uint8Array(this.k.memory.buffer, this.srcPtr, byteLength);
  }

  /**
   * Starts a sum: fills the accumulator with -0, the identity of IEEE addition
   * (-0 + x = x for every x, -0 included, where +0 + -0 = +0), so a merge of
   * identical checkpoints keeps their negative zeros.
   */
  zero(n: number, precision: AccumulatePrecision): void {
    const buf = this.k.memory.buffer;
    if (precision === "f32") new Float32Array(buf, this.accPtr, n).fill(-0);
    else new Float64Array(buf, this.accPtr, n).fill(-0);
  }

  /** acc[i] /= d: a plain mean as (x_1 + ... + x_n) / n, the float64 reference's own formula. */
  divide(n: number, precision: AccumulatePrecision, d: number): void {
    const acc =
      precision === "f32"
        ? new Float32Array(this.k.memory.buffer, this.accPtr, n)
        : new Float64Array(this.k.memory.buffer, this.accPtr, n);
    for (let i = 0; i < n; i++) acc[i] = acc[i]! / d;
  }

  /** acc[i] += c * src[i] for the chunk just read into `srcBytes`. */
  accumulate(dtype: FloatDType, precision: AccumulatePrecision, n: number, c: number): void {
    const k = this.k;
    const a = this.accPtr;
    const s = this.srcPtr;
    if (precision === "f32") {
      if (dtype === "BF16") k.acc_bf16_f32(a, s, n, c);
      else if (dtype === "F16") k.acc_f16_f32(a, s, n, c);
      else if (dtype === "F32") k.acc_f32_f32(a, s, n, c);
      else throw new Error("F64 inputs are accumulated in f64");
    } else {
      if (dtype === "BF16") k.acc_bf16_f64(a, s, n, c);
      else if (dtype === "F16") k.acc_f16_f64(a, s, n, c);
      else if (dtype === "F32") k.acc_f32_f64(a, s, n, c);
      else k.acc_f64_f64(a, s, n, c);
    }
  }

  /** Number of NaN / +-Inf values among the first n accumulator elements. */
  countNonfinite(precision: AccumulatePrecision, n: number): number {
    return precision === "f32"
      ? this.k.count_nonfinite_f32(this.accPtr, n)
      : this.k.count_nonfinite_f64(this.accPtr, n);
  }

  /**
   * Rounds the accumulator to `dtype` (nearest, ties to even, once from the accumulator's
   * value) and returns the bytes with the number of output values that are NaN or +-Inf,
   * counted in the same pass: a nonfinite sum, or a finite one the dtype cannot hold.
   */
  emit(
    precision: AccumulatePrecision,
    dtype: FloatDType,
    n: number,
  ): { bytes: Uint8Array; nonfinite: number } {
    const k = this.k;
    const buf = k.memory.buffer;
    const bytes = (ptr: number) => new Uint8Array(buf, ptr, n * floatDTypeBytes(dtype));
    if (precision === "f32") {
      if (dtype === "F32")
        return { bytes: bytes(this.accPtr), nonfinite: k.count_nonfinite_f32(this.accPtr, n) };
      if (dtype === "BF16")
        return { nonfinite: k.f32_to_bf16(this.outPtr, this.accPtr, n), bytes: bytes(this.outPtr) };
      if (dtype === "F16")
        return { nonfinite: k.f32_to_f16(this.outPtr, this.accPtr, n), bytes: bytes(this.outPtr) };
      // Widening to f64 is exact: the sum's own count is the output's.
      const out = bytes(this.outPtr);
      encodeFloats(new Float32Array(buf, this.accPtr, n), dtype, out);
      return { bytes: out, nonfinite: k.count_nonfinite_f32(this.accPtr, n) };
    }
    if (dtype === "F64")
      return { bytes: bytes(this.accPtr), nonfinite: k.count_nonfinite_f64(this.accPtr, n) };
    // f64 -> bf16/f16 rounds once from the f64 value (through f32 rounded to odd).
    if (dtype === "F32")
      return { nonfinite: k.f64_to_f32(this.outPtr, this.accPtr, n), bytes: bytes(this.outPtr) };
    if (dtype === "BF16")
      return { nonfinite: k.f64_to_bf16(this.outPtr, this.accPtr, n), bytes: bytes(this.outPtr) };
    return { nonfinite: k.f64_to_f16(this.outPtr, this.accPtr, n), bytes: bytes(this.outPtr) };
  }
}
