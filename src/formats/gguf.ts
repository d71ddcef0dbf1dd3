import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { promisify } from "node:util";
import { PmaError } from "../common/errors.js";
import type { ByteSource } from "./gguf-cursor.js";
import { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from "./gguf-header.js";
import type { GgufMetadata } from "./gguf-values.js";
import { ioError, readFully, readFullySync } from "./positional-io.js";

export { parseGgufHeader, GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_NAME_BYTES, GGUF_MAX_DIMS, type GgufHeader, type GgufTensorInfo } from "./gguf-header.js";
export { bytesSource, MAX_HEADER_BYTES, type ByteSource } from "./gguf-cursor.js";

const openAsync = promisify(fs.open);
const fstatAsync = promisify(fs.fstat);
const closeAsync = promisify(fs.close);

/** GGUF files are recognised by name; llama.cpp and the hub use the extension too. */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

function fdSource(fd: number, path: string, size: number): ByteSource {
  return { size, read: (into, position) => readFullySync(fd, path, into, position) };
}

/**
 * One GGUF file (v2 or v3), validated on open from its header alone: only metadata and
 * tensor infos are read into memory; tensor bytes are read by position on demand, as
 * SafetensorsFile does. A split model (`-00001-of-00003.gguf`) is read one file at a
 * time; pma does not join splits.
 */
export class GgufFile {
  readonly path: string;
  readonly fileSize: number;
  readonly version: number;
  readonly alignment: number;
  /** Keys in file order, values typed as stored. */
  readonly metadata: GgufMetadata;
  /** In tensor-info order. */
  readonly tensors: Map<string, GgufTensorInfo>;
  /** Where the tensor infos end and the data section starts (after padding). */
  readonly infoEnd: number;
  readonly dataStart: number;

  private fd: number | null;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(path: string, fd: number, fileSize: number, header: GgufHeader) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.version = header.version;
    this.alignment = header.alignment;
    this.metadata = header.metadata;
    this.tensors = new Map(header.tensors.map((t) => [t.name, t]));
    this.infoEnd = header.infoEnd;
    this.dataStart = header.dataStart;
  }

  static async open(path: string): Promise<GgufFile> {
    let fd: number;
    try {
      fd = await openAsync(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException | undefined)?.code;
      if (code === "ENOENT") throw new PmaError("IO", `${path}: no such file.`, { file: path, cause: e });
      throw ioError(path, "open", e);
    }
    try {
      const st = await fstatAsync(fd);
      if (!st.isFile()) throw new PmaError("IO", `${path}: not a regular file; expected a .gguf file.`, { file: path });
      // The header is parsed with synchronous reads through a 1 MiB window: it is small
      // and read once, and a parser that never awaits stays simple.
      const header = parseGgufHeader(fdSource(fd, path, st.size), path);
      return new GgufFile(path, fd, st.size, header);
    } catch (e) {
      await closeAsync(fd).catch(() => undefined);
      throw e;
    }
  }

  private locate(name: string, byteOffset: number, byteLength: number | undefined, into: Uint8Array | undefined) {
    if (this.fd === null) throw new PmaError("IO", `${this.path}: read of "${name}" after close().`, { file: this.path });
    const t = this.tensors.get(name);
    if (!t) throw new PmaError("TENSOR_NOT_FOUND", `${this.path}: no tensor named "${name}".`, { file: this.path });
    const length = byteLength ?? t.byteLength - byteOffset;
    const valid = Number.isSafeInteger(byteOffset) && Number.isSafeInteger(length) && byteOffset >= 0 && length >= 0 && byteOffset + length <= t.byteLength;
    if (!valid) {
      throw new PmaError("RANGE_INVALID", `${this.path}: byte range [${byteOffset}, +${length}) is outside tensor "${name}" of ${t.byteLength} bytes.`, { file: this.path });
    }
    if (into && into.length < length) {
      throw new PmaError("RANGE_INVALID", `${this.path}: destination of ${into.length} bytes is too small for ${length} bytes of tensor "${name}".`, { file: this.path });
    }
    return { fd: this.fd, position: t.fileOffset + byteOffset, target: into ? into.subarray(0, length) : new Uint8Array(length) };
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

  /** sha256 of everything before the data section: pins metadata, names, types, offsets. */
  async headerSha256(): Promise<string> {
    if (this.fd === null) throw new PmaError("IO", `${this.path}: hashing after close().`, { file: this.path });
    const hash = createHash("sha256");
    const chunk = new Uint8Array(Math.min(this.dataStart, 1 << 22));
    for (let pos = 0; pos < this.dataStart; pos += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, this.dataStart - pos));
      await readFully(this.fd, this.path, part, pos);
      hash.update(part);
    }
    return hash.digest("hex");
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
