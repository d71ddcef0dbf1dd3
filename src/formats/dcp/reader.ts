import * as fs from "node:fs";
import { fsError, PmaError } from "../../common/errors.js";
import { dtypeBits } from "../../tensor/dtype.js";
import { readFullySync } from "../../common/positional-io.js";
import { globalRuns } from "./chunks.js";
import type { DcpCheckpoint, DcpTensor } from "./model.js";
import { numel } from "../../tensor/shape.js";

/**
 * Reads any element range of a sharded tensor in global row-major order, one
 * positional read per contiguous run, so a caller streams a tensor of any size through a
 * buffer of its choosing and never holds the whole tensor.
 */
export class DcpReader {
  private readonly fds = new Map<string, number>();

  constructor(readonly checkpoint: DcpCheckpoint) {}

  private fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      try {
        fd = fs.openSync(file, "r");
      } catch (e) {
        throw fsError(file, "open", e);
      }
      this.fds.set(file, fd);
    }
    return fd;
  }

  tensor(name: string): DcpTensor {
    const t = this.checkpoint.tensors.get(name);
    if (!t)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.checkpoint.root}: no tensor named "${name}".`, {
        file: this.checkpoint.root,
      });
    return t;
  }

  /** Elements [start, start + count) of `name` in global row-major order, into `into` (allocated when absent). */
  readElements(name: string, start: number, count: number, into?: Uint8Array): Uint8Array {
    const t = this.tensor(name);
    const size = dtypeBits(t.dtype) / 8;
    const total = numel(t.shape);
    if (!Number.isInteger(size))
      throw new PmaError(
        "DTYPE_UNSUPPORTED",
        `${this.checkpoint.root}: tensor "${name}" has sub-byte dtype ${t.dtype}.`,
      );
    if (!(
      Number.isSafeInteger(start) &&
      Number.isSafeInteger(count) &&
      start >= 0 &&
      count >= 0 &&
      start + count <= total
    )) {
      throw new PmaError(
        "RANGE_INVALID",
        `${this.checkpoint.root}: elements [${start}, +${count}) are outside tensor "${name}" of ${total} elements.`,
      );
    }
    const out = into ? into.subarray(0, count * size) : new Uint8Array(count * size);
    for (const run of globalRuns(t.shape, t.chunks, start, count)) {
      const c = t.chunks[run.chunk]!;
      const target = out.subarray(
        (run.globalElement - start) * size,
        (run.globalElement - start + run.length) * size,
      );
      readFullySync(this.fd(c.file), c.file, target, c.dataOffset + run.chunkElement * size);
    }
    return out;
  }

  /** The raw bytes of a non-tensor item. */
  readBytesItem(name: string): Uint8Array {
    const b = this.checkpoint.bytesItems.get(name);
    if (!b)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.checkpoint.root}: no item named "${name}".`, {
        file: this.checkpoint.root,
      });
    const out = new Uint8Array(b.length);
    readFullySync(this.fd(b.file), b.file, out, b.offset);
    return out;
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}
