/**
 * Weighted sums of a run's checkpoints, tensor by tensor, in float64: directly (one read
 * of each checkpoint in the window, exactly what `pma merge --accumulate f64` computes),
 * or from prefix sums kept on disk so that a uniform or linearly weighted window costs
 * two or four row reads per tensor whatever N is.
 *
 * Prefix sums, per stride s, residue class and tensor, one float64 file each, for
 * checkpoint k (0-based):
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
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors, type CheckpointTensors } from "../formats/checkpoint-files.js";
import { decodeFloats } from "../tensor/codec.js";
import { isFloatDType } from "../tensor/dtype.js";
import { numel } from "../tensor/shape.js";

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
        if (!isFloatDType(t.dtype))
          throw new PmaError(
            "DTYPE_UNSUPPORTED",
            `${t.file.path}: tensor "${t.name}" is ${t.dtype}; pma tune merges float weights`,
            { file: t.file.path },
          );
        tensors.push({ name: t.name, shape: [...t.shape], numel: numel(t.shape) });
      }
      for (let i = 1; i < opened.length; i++) {
        const ck = opened[i]!;
        for (const t of tensors) {
          const o = ck.tensors.get(t.name);
          if (o === undefined || o.shape.join(",") !== t.shape.join(",")) {
            throw new PmaError(
              "CHECKPOINT_MISMATCH",
              `${paths[i]}: tensor "${t.name}" ${o === undefined ? "is missing" : `has shape [${o.shape}] where ${paths[0]} has [${t.shape}]`}; all checkpoints of a run must have the same tensors`,
              { file: paths[i]! },
            );
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
    if (!isFloatDType(t.dtype))
      throw new PmaError("DTYPE_UNSUPPORTED", `${t.file.path}: tensor "${t.name}" is ${t.dtype}`, {
        file: t.file.path,
      });
    decodeFloats(await t.file.read(t.name), t.dtype, out);
  }

  /** sum_j coefficients[j] M_{indices[j]}, accumulated in float64 in the given order, rounded once to float32. */
  async weightedSum(
    indices: readonly number[],
    coefficients: readonly number[],
  ): Promise<Map<string, Float32Array>> {
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

/**
 * Prefix sums for one stride and one residue class (the checkpoints k = residue mod
 * stride, the only ones a window ending at such a k touches), in
 * `dir/s<stride>r<residue>/`: P built on first use, Q (for linear windows) on first
 * linear window. Built once, reused by every later search of the run.
 */
export class PrefixSums {
  private constructor(
    private readonly set: CheckpointSet,
    private readonly dir: string,
    readonly stride: number,
    readonly residue: number,
  ) {}

  static async open(set: CheckpointSet, root: string, stride: number, residue: number): Promise<PrefixSums> {
    if (
      !Number.isInteger(stride) ||
      stride < 1 ||
      !Number.isInteger(residue) ||
      residue < 0 ||
      residue >= stride
    ) {
      throw new PmaError("INTERNAL", `prefix sums: residue ${residue} of stride ${stride}`);
    }
    const p = new PrefixSums(set, join(root, `s${stride}r${residue}`), stride, residue);
    await p.ensure("P");
    return p;
  }

  /** Rows j = 0, 1, ... for checkpoints k = residue + j * stride. */
  private get rows(): number {
    return Math.floor((this.set.paths.length - 1 - this.residue) / this.stride) + 1;
  }

  private async ensure(kind: "P" | "Q"): Promise<void> {
    const done = join(this.dir, `${kind}.complete.json`);
    if (existsSync(done)) return;
    mkdirSync(this.dir, { recursive: true });
    const set = this.set;
    for (let ti = 0; ti < set.tensors.length; ti++) {
      const t = set.tensors[ti]!;
      const rowBytes = t.numel * 8;
      const fd = openSync(join(this.dir, `${kind}-${ti}.f64`), "w");
      try {
        const m = new Float32Array(t.numel);
        const row = new Float64Array(t.numel);
        for (let j = 0; j < this.rows; j++) {
          const k = this.residue + j * this.stride;
          await set.read(k, t, m);
          const w = kind === "P" ? 1 : k + 1;
          for (let x = 0; x < t.numel; x++) row[x]! += w * m[x]!;
          writeRow(fd, row, j * rowBytes);
        }
      } finally {
        closeSync(fd);
      }
    }
    // Written last: a folder without it is rebuilt.
    writeFileSync(
      `${done}.tmp`,
      JSON.stringify({
        stride: this.stride,
        residue: this.residue,
        rows: this.rows,
        tensors: set.tensors.length,
      }) + "\n",
    );
    renameSync(`${done}.tmp`, done);
  }

  private readPair(
    kind: "P" | "Q",
    ti: number,
    numel: number,
    end: number,
    lower: number,
  ): [Float64Array, Float64Array] {
    const rowBytes = numel * 8;
    const e = new Float64Array(numel);
    const l = new Float64Array(numel);
    const fd = openSync(join(this.dir, `${kind}-${ti}.f64`), "r");
    try {
      readRow(fd, e, ((end - this.residue) / this.stride) * rowBytes);
      if (lower >= 0) readRow(fd, l, ((lower - this.residue) / this.stride) * rowBytes);
    } finally {
      closeSync(fd);
    }
    return [e, l];
  }

  /** The window's merged weights: uniform (SMA) or linear (WMA) coefficients, rounded once to float32. */
  async window(end: number, count: number, kind: "uniform" | "linear"): Promise<Map<string, Float32Array>> {
    const s = this.stride;
    const lower = end - count * s;
    if (end - (count - 1) * s < 0 || end >= this.set.paths.length || (end - this.residue) % s !== 0) {
      throw new PmaError(
        "INTERNAL",
        `window of ${count} at stride ${s} ending at ${end} does not fit prefix sums of residue ${this.residue}`,
      );
    }
    if (kind === "linear") await this.ensure("Q");
    const out = new Map<string, Float32Array>();
    for (let ti = 0; ti < this.set.tensors.length; ti++) {
      const t = this.set.tensors[ti]!;
      const [pe, pl] = this.readPair("P", ti, t.numel, end, lower);
      const res = new Float32Array(t.numel);
      if (kind === "uniform") {
        for (let x = 0; x < t.numel; x++) res[x] = (pe[x]! - pl[x]!) / count;
      } else {
        const [qe, ql] = this.readPair("Q", ti, t.numel, end, lower);
        const norm = (count * (count + 1)) / 2;
        for (let x = 0; x < t.numel; x++)
          res[x] = (qe[x]! - ql[x]! - (lower + 1) * (pe[x]! - pl[x]!)) / s / norm;
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
    if (n === 0)
      throw new PmaError(
        "IO",
        `prefix sum file ends early at byte ${offset + done}; delete the tune cache folder to rebuild it`,
      );
    done += n;
  }
}

function writeRow(fd: number, row: Float64Array, offset: number): void {
  const bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, offset + done);
}
