import { createHash } from "node:crypto";
import type { ByteSource } from "./gguf-cursor.js";
import { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from "./gguf-header.js";
import type { GgufMetadata } from "./gguf-values.js";
import { readFully, readFullySync } from "./positional-io.js";
import { openTensorFile, PositionalTensorFile } from "./tensor-file.js";

export { parseGgufHeader, GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_NAME_BYTES, GGUF_MAX_DIMS, type GgufHeader, type GgufTensorInfo } from "./gguf-header.js";
export { bytesSource, MAX_HEADER_BYTES, type ByteSource } from "./gguf-cursor.js";

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
export class GgufFile extends PositionalTensorFile<GgufTensorInfo> {
  readonly fileSize: number;
  readonly version: number;
  readonly alignment: number;
  /** Keys in file order, values typed as stored. */
  readonly metadata: GgufMetadata;
  /** Where the tensor infos end and the data section starts (after padding). */
  readonly infoEnd: number;
  readonly dataStart: number;

  private constructor(path: string, fd: number, fileSize: number, header: GgufHeader) {
    super(path, fd, new Map(header.tensors.map((t) => [t.name, t])));
    this.fileSize = fileSize;
    this.version = header.version;
    this.alignment = header.alignment;
    this.metadata = header.metadata;
    this.infoEnd = header.infoEnd;
    this.dataStart = header.dataStart;
  }

  static async open(path: string): Promise<GgufFile> {
    // The header is parsed with synchronous reads through a 1 MiB window: it is small
    // and read once, and a parser that never awaits stays simple.
    return openTensorFile(path, ".gguf", (fd, size) => new GgufFile(path, fd, size, parseGgufHeader(fdSource(fd, path, size), path)));
  }

  /** sha256 of everything before the data section: pins metadata, names, types, offsets. */
  async headerSha256(): Promise<string> {
    const fd = this.fd("hashing");
    const hash = createHash("sha256");
    const chunk = new Uint8Array(Math.min(this.dataStart, 1 << 22));
    for (let pos = 0; pos < this.dataStart; pos += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, this.dataStart - pos));
      await readFully(fd, this.path, part, pos);
      hash.update(part);
    }
    return hash.digest("hex");
  }
}
