/**
 * What safetensors and GGUF files share once their header is parsed: one fd, tensors
 * located by absolute file offset, bytes read by position on demand (so a file of any
 * size costs only its header in memory), and a close that waits for reads in flight so
 * the fd number is never reused under them.
 */
import * as fs from "node:fs";
import { promisify } from "node:util";
import { PmaError } from "../common/errors.js";
import { checkNotLfsPointer } from "./lfs-pointer.js";
import { ioError, readFully, readFullySync } from "./positional-io.js";
import { quoted } from "../common/quote.js";

const openAsync = promisify(fs.open);
const fstatAsync = promisify(fs.fstat);
const closeAsync = promisify(fs.close);

/** Where a tensor's bytes lie in its file. */
export interface TensorSpan {
  fileOffset: number;
  byteLength: number;
}

/**
 * Opens `path` read-only, checks it is a regular file and hands the fd to `parse`; the
 * fd is closed if parsing fails, and owned by the returned object otherwise.
 */
export async function openTensorFile<F>(path: string, kind: string, parse: (fd: number, size: number) => Promise<F> | F): Promise<F> {
  let fd: number;
  try {
    fd = await openAsync(path, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ENOENT") throw new PmaError("IO", `${path}: no such file.`, { file: path, cause: e });
    if (code === "EACCES") throw new PmaError("IO", `${path}: permission denied; check the file's permissions.`, { file: path, cause: e });
    throw ioError(path, "open", e);
  }
  try {
    const st = await fstatAsync(fd);
    if (!st.isFile()) throw new PmaError("IO", `${path}: not a regular file; expected a ${kind} file.`, { file: path });
    checkNotLfsPointer(path, st.size, (into) => readFullySync(fd, path, into, 0));
    return await parse(fd, st.size);
  } catch (e) {
    await closeAsync(fd).catch(() => undefined);
    throw e;
  }
}

export abstract class PositionalTensorFile<T extends TensorSpan> {
  private fdOrNull: number | null;
  private readonly inflight = new Set<Promise<unknown>>();

  protected constructor(
    readonly path: string,
    fd: number,
    /** In file order. */
    readonly tensors: Map<string, T>,
  ) {
    this.fdOrNull = fd;
  }

  /** The open fd; `doing` names the operation for the error after close(). */
  protected fd(doing: string): number {
    if (this.fdOrNull === null) throw new PmaError("IO", `${this.path}: ${doing} after close().`, { file: this.path });
    return this.fdOrNull;
  }

  private locate(name: string, byteOffset: number, byteLength: number | undefined, into: Uint8Array | undefined) {
    const fd = this.fd(`read of "${name}"`);
    const t = this.tensors.get(name);
    if (!t) throw new PmaError("TENSOR_NOT_FOUND", `${this.path}: no tensor named ${quoted(name)}.`, { file: this.path });
    const length = byteLength ?? t.byteLength - byteOffset;
    const valid = Number.isSafeInteger(byteOffset) && Number.isSafeInteger(length) && byteOffset >= 0 && length >= 0 && byteOffset + length <= t.byteLength;
    if (!valid) {
      throw new PmaError("RANGE_INVALID", `${this.path}: byte range [${byteOffset}, +${length}) is outside tensor "${name}" of ${t.byteLength} bytes.`, { file: this.path });
    }
    if (into && into.length < length) {
      throw new PmaError("RANGE_INVALID", `${this.path}: destination of ${into.length} bytes is too small for ${length} bytes of tensor "${name}".`, { file: this.path });
    }
    return { fd, position: t.fileOffset + byteOffset, target: into ? into.subarray(0, length) : new Uint8Array(length) };
  }

  /** Reads bytes [byteOffset, byteOffset + byteLength) of one tensor (to its end by default). */
  async read(name: string, byteOffset = 0, byteLength?: number, into?: Uint8Array): Promise<Uint8Array> {
    const { fd, position, target } = this.locate(name, byteOffset, byteLength, into);
    const pending = readFully(fd, this.path, target, position);
    this.inflight.add(pending);
    try {
      await pending;
    } finally {
      this.inflight.delete(pending);
    }
    return target;
  }

  readSync(name: string, byteOffset = 0, byteLength?: number, into?: Uint8Array): Uint8Array {
    const { fd, position, target } = this.locate(name, byteOffset, byteLength, into);
    readFullySync(fd, this.path, target, position);
    return target;
  }

  /** Closes the fd once reads already started have finished, so it is never reused under them. */
  async close(): Promise<void> {
    const fd = this.fdOrNull;
    if (fd === null) return;
    this.fdOrNull = null;
    await Promise.allSettled([...this.inflight]);
    await closeAsync(fd);
  }
}
