/**
 * Weighted sums of a run's checkpoints, tensor by tensor, in float64: directly (one read
 * of each checkpoint in the window, exactly what `pma merge --accumulate f64` computes),
 * or from prefix sums kept on disk so that a uniform or linearly weighted window costs
 * two or four row reads per tensor whatever N is.
 *
 * Prefix sums, per stride s and per tensor, one float64 file each, row k (0-based):
 *   P_s[k] = M_k + P_s[k - s],   Q_s[k] = (k + 1) M_k + Q_s[k - s]   (rows below 0 are zero)
 * so a window of N checkpoints s apart ending at e, with lower = e - N s, is
 *   sum_i M_i        = P_s[e] - P_s[lower]
 *   sum_i i M_i      = (Q_s[e] - Q_s[lower] - (lower + 1)(P_s[e] - P_s[lower])) / s   (i = 1..N, oldest first)
 * Precision: each row is a float64 running sum, so a window differs from the exact
 * float64 merge by the rounding of those sums, about k 2^-53 times the magnitudes summed
 * (times k more for Q): below 2^-40 relative for runs of thousands of checkpoints, far
 * under the float32 rounding (2^-24) the scored weights get. The tests measure it; the
 * winner is always written by the exact merger.
 */
import { mkdirSync, openSync, closeSync, readSync, writeSync, existsSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors, type CheckpointTensors } from "../formats/checkpoint-files.js";
import { decodeFloats } from "../tensor/codec.js";
import { isFloatDType } from "../tensor/dtype.js";

export interface TensorShape {
  name: string;
  shape: number[];
  numel: number;
}

/** The run's checkpoints, opened once; tensors read on demand as float32. */
export class CheckpointSet {
  private constructor(
    readonly paths: readonly string[],
    private readonly opened: CheckpointTensors[],
    readonly tensors: readonly TensorShape[],
  ) {}

  static async open(paths: readonly string[]): Promise<CheckpointSet> {
    const opened: CheckpointTensors[] = [];
    try {
      for (const p of paths) opened.push(await openCheckpointTensors(p));
      const first = opened[0]!;
      const tensors: TensorShape[] = [];
      for (const t of first.tensors.values()) {
        if (!isFloatDType(t.dtype)) throw new PmaError("DTYPE_UNSUPPORTED", `${t.file.path}: tensor "${t.name}" is ${t.dtype}; pma tune merges float weights`, { file: t.file.path });
        tensors.push({ name: t.name, shape: [...t.shape], numel: t.shape.reduce((a, b) => a * b, 1) });
      }
      for (let i = 1; i < opened.length; i++) {
        const ck = opened[i]!;
        for (const t of tensors) {
          const o = ck.tensors.get(t.name);
          if (o === undefined || o.shape.join(",") !== t.shape.join(",")) {
            throw new PmaError("CHECKPOINT_MISMATCH", `${paths[i]}: tensor "${t.name}" ${o === undefined ? "is missing" : `has shape [${o.shape}] where ${paths[0]} has [${t.shape}]`}; all checkpoints of a run must have the same tensors`, { file: paths[i]! });
          }
        }
      }
      return new CheckpointSet(paths, opened, tensors);
    } catch (e) {
      for (const o of opened) await o.close();
      throw e;
    }
  }

  async read(checkpoint: number, tensor: TensorShape, out: Float32Array): Promise<void> {
    const t = this.opened[checkpoint]!.tensors.get(tensor.name)!;
    if (!isFloatDType(t.dtype)) throw new PmaError("DTYPE_UNSUPPORTED", `${t.file.path}: tensor "${t.name}" is ${t.dtype}`, { file: t.file.path });
    decodeFloats(await t.file.read(t.name), t.dtype, out);
  }

  /** sum_j coefficients[j] M_{indices[j]}, accumulated in float64 in the given order, rounded once to float32. */
  async weightedSum(indices: readonly number[], coefficients: readonly number[]): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const t of this.tensors) {
      const acc = new Float64Array(t.numel);
      const buf = new Float32Array(t.numel);
      for (let j = 0; j < indices.length; j++) {
        await this.read(indices[j]!, t, buf);
        const c = coefficients[j]!;
        for (let x = 0; x < t.numel; x++) acc[x]! += c * buf[x]!;
      }
      out.set(t.name, Float32Array.from(acc));
    }
    return out;
  }

  async close(): Promise<void> {
    for (const o of this.opened) await o.close();
  }
}

/** Prefix sums for one stride, in `dir/s<stride>/`; built once, reused by every later search. */
export class PrefixSums {
  private constructor(
    private readonly set: CheckpointSet,
    private readonly dir: string,
    readonly stride: number,
  ) {}

  static async build(set: CheckpointSet, root: string, stride: number): Promise<PrefixSums> {
    const dir = join(root, `s${stride}`);
    const done = join(dir, "complete.json");
    const p = new PrefixSums(set, dir, stride);
    if (existsSync(done)) return p;
    mkdirSync(dir, { recursive: true });
    const n = set.paths.length;
    for (let ti = 0; ti < set.tensors.length; ti++) {
      const t = set.tensors[ti]!;
      const rowBytes = t.numel * 8;
      const fp = openSync(join(dir, `P-${ti}.f64`), "w+");
      const fq = openSync(join(dir, `Q-${ti}.f64`), "w+");
      try {
        const m = new Float32Array(t.numel);
        const pRow = new Float64Array(t.numel);
        const qRow = new Float64Array(t.numel);
        for (let k = 0; k < n; k++) {
          await set.read(k, t, m);
          if (k - stride >= 0) {
            readRow(fp, pRow, (k - stride) * rowBytes);
            readRow(fq, qRow, (k - stride) * rowBytes);
          } else {
            pRow.fill(0);
            qRow.fill(0);
          }
          for (let x = 0; x < t.numel; x++) {
            pRow[x]! += m[x]!;
            qRow[x]! += (k + 1) * m[x]!;
          }
          writeRow(fp, pRow, k * rowBytes);
          writeRow(fq, qRow, k * rowBytes);
        }
      } finally {
        closeSync(fp);
        closeSync(fq);
      }
    }
    // Written last: a folder without it is rebuilt.
    writeFileSync(`${done}.tmp`, JSON.stringify({ stride, checkpoints: n, tensors: set.tensors.length }) + "\n");
    renameSync(`${done}.tmp`, done);
    return p;
  }

  /** The window's merged weights: uniform (SMA) or linear (WMA) coefficients, rounded once to float32. */
  window(end: number, count: number, kind: "uniform" | "linear"): Map<string, Float32Array> {
    const s = this.stride;
    const lower = end - count * s;
    if (end - (count - 1) * s < 0) throw new PmaError("INTERNAL", `window of ${count} at stride ${s} ending at ${end} does not fit`);
    const out = new Map<string, Float32Array>();
    for (let ti = 0; ti < this.set.tensors.length; ti++) {
      const t = this.set.tensors[ti]!;
      const rowBytes = t.numel * 8;
      const pe = new Float64Array(t.numel);
      const pl = new Float64Array(t.numel);
      const fp = openSync(join(this.dir, `P-${ti}.f64`), "r");
      try {
        readRow(fp, pe, end * rowBytes);
        if (lower >= 0) readRow(fp, pl, lower * rowBytes);
      } finally {
        closeSync(fp);
      }
      const res = new Float32Array(t.numel);
      if (kind === "uniform") {
        for (let x = 0; x < t.numel; x++) res[x] = (pe[x]! - pl[x]!) / count;
      } else {
        const qe = new Float64Array(t.numel);
        const ql = new Float64Array(t.numel);
        const fq = openSync(join(this.dir, `Q-${ti}.f64`), "r");
        try {
          readRow(fq, qe, end * rowBytes);
          if (lower >= 0) readRow(fq, ql, lower * rowBytes);
        } finally {
          closeSync(fq);
        }
        const norm = (count * (count + 1)) / 2;
        for (let x = 0; x < t.numel; x++) res[x] = (qe[x]! - ql[x]! - (lower + 1) * (pe[x]! - pl[x]!)) / s / norm;
      }
      out.set(t.name, res);
    }
    return out;
  }
}

function readRow(fd: number, row: Float64Array, offset: number): void {
  const bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
  let done = 0;
  while (done < bytes.length) {
    const n = readSync(fd, bytes, done, bytes.length - done, offset + done);
    if (n === 0) throw new PmaError("IO", `prefix sum file ends early at byte ${offset + done}; delete the tune cache folder to rebuild it`);
    done += n;
  }
}

function writeRow(fd: number, row: Float64Array, offset: number): void {
  const bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, offset + done);
}
