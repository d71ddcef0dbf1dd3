import * as fs from "node:fs";
import { promisify } from "node:util";
import { PmaError } from "../common/errors.js";
import {
  LENGTH_PREFIX,
  checkHeaderLength,
  parseSafetensorsHeader,
  type SafetensorsHeader,
  type TensorEntry,
} from "./safetensors-header.js";
import { ioError, readFully, readFullySync } from "./positional-io.js";

export { MAX_HEADER_SIZE, parseSafetensorsHeader } from "./safetensors-header.js";
export type { SafetensorsHeader, TensorEntry } from "./safetensors-header.js";

const openAsync = promisify(fs.open);
const fstatAsync = promisify(fs.fstat);
const closeAsync = promisify(fs.close);

function openError(path: string, e: unknown): PmaError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return new PmaError("IO", `${path}: no such file.`, { file: path, cause: e });
  if (code === "EACCES") return new PmaError("IO", `${path}: permission denied; check the file's permissions.`, { file: path, cause: e });
  return ioError(path, "open", e);
}

/**
 * One safetensors file, validated on open from its 8-byte prefix and header alone.
 * Holds a single fd; tensor bytes are read on demand by position, so a file of any
 * size costs only its header in memory.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  /** N: length of the JSON header, padding included. */
  readonly headerSize: number;
  /** 8 + N: absolute position of the data buffer. */
  readonly dataStart: number;
  /** The raw header JSON, for hashing or re-emitting exactly. */
  readonly headerBytes: Uint8Array;
  readonly metadata: Record<string, string>;
  /** In file order (ascending offset). */
  readonly tensors: Map<string, TensorEntry>;

  private fd: number | null;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(path: string, fd: number, fileSize: number, headerBytes: Uint8Array, header: SafetensorsHeader) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerSize = header.headerSize;
    this.dataStart = header.dataStart;
    this.headerBytes = headerBytes;
    this.metadata = header.metadata;
    this.tensors = new Map(header.tensors.map((t) => [t.name, t]));
  }

  static async open(path: string): Promise<SafetensorsFile> {
    let fd: number;
    try {
      fd = await openAsync(path, "r");
    } catch (e) {
      throw openError(path, e);
    }
    try {
      const st = await fstatAsync(fd);
      if (!st.isFile()) {
        throw new PmaError("IO", `${path}: not a regular file; expected a .safetensors file.`, { file: path });
      }
      const fileSize = st.size;
      if (fileSize < LENGTH_PREFIX) {
        throw new PmaError(
          "FILE_TOO_SHORT",
          `${path}: file is ${fileSize} bytes, shorter than the 8-byte header length every safetensors file starts with.`,
          { file: path },
        );
      }
      const prefix = new Uint8Array(LENGTH_PREFIX);
      await readFully(fd, path, prefix, 0);
      const n = Buffer.from(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX).readBigUInt64LE(0);
      const headerBytes = new Uint8Array(checkHeaderLength(n, fileSize, path));
      await readFully(fd, path, headerBytes, LENGTH_PREFIX);
      const header = parseSafetensorsHeader(headerBytes, fileSize, path);
      return new SafetensorsFile(path, fd, fileSize, headerBytes, header);
    } catch (e) {
      await closeAsync(fd).catch(() => undefined);
      throw e;
    }
  }

  private locate(
    name: string,
    byteOffset: number,
    byteLength: number | undefined,
    into: Uint8Array | undefined,
  ): { fd: number; position: number; target: Uint8Array } {
    if (this.fd === null) {
      throw new PmaError("IO", `${this.path}: read of "${name}" after close().`, { file: this.path });
    }
    const entry = this.tensors.get(name);
    if (!entry) {
      throw new PmaError("TENSOR_NOT_FOUND", `${this.path}: no tensor named "${name}".`, { file: this.path });
    }
    const length = byteLength ?? entry.byteLength - byteOffset;
    const valid =
      Number.isSafeInteger(byteOffset) &&
      Number.isSafeInteger(length) &&
      byteOffset >= 0 &&
      length >= 0 &&
      byteOffset + length <= entry.byteLength;
    if (!valid) {
      throw new PmaError(
        "RANGE_INVALID",
        `${this.path}: byte range [${byteOffset}, +${length}) is outside tensor "${name}" of ${entry.byteLength} bytes.`,
        { file: this.path },
      );
    }
    if (into && into.length < length) {
      throw new PmaError(
        "RANGE_INVALID",
        `${this.path}: destination of ${into.length} bytes is too small for ${length} bytes of tensor "${name}".`,
        { file: this.path },
      );
    }
    const target = into ? into.subarray(0, length) : new Uint8Array(length);
    return { fd: this.fd, position: entry.fileOffset + byteOffset, target };
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
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    await Promise.allSettled([...this.inflight]);
    await closeAsync(fd);
  }
}
