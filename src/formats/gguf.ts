import { PmaError } from "../common/errors.js";
import { createHash } from "node:crypto";
import type { ByteSource } from "./gguf-cursor.js";
import { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from "./gguf-header.js";
import type { GgufMetadata } from "./gguf-values.js";
import type { PositionalSource } from "../sources/source.js";
import { MAX_HEADER_BYTES } from "./gguf-cursor.js";
import { openTensorFile, PositionalTensorFile } from "./tensor-file.js";

export {
  parseGgufHeader,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAX_NAME_BYTES,
  GGUF_MAX_DIMS,
  type GgufHeader,
  type GgufTensorInfo,
} from "./gguf-header.js";
export { bytesSource, MAX_HEADER_BYTES, type ByteSource } from "./gguf-cursor.js";

/** GGUF files are recognised by name; llama.cpp and the hub use the extension too. */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

const NEED_MORE = new Error("GGUF header continues past the bytes fetched");

/**
 * Parses the header through synchronous reads: directly for a local file; for a remote
 * one from a fetched prefix (4 MiB, then four times as much while the header runs on),
 * so the header costs a request or two, not one per field.
 */
async function parseHeader(source: PositionalSource): Promise<GgufHeader> {
  if (source.readSync !== undefined) {
    const readSync = source.readSync.bind(source);
    return parseGgufHeader(
      { size: source.size, read: (into, position) => readSync(into, position) },
      source.uri,
    );
  }
  let prefix = new Uint8Array(0);
  for (let want = Math.min(source.size, 4 << 20); ; want = Math.min(source.size, want * 4)) {
    const grown = new Uint8Array(want);
    grown.set(prefix);
    await source.read(grown.subarray(prefix.length), prefix.length);
    prefix = grown;
    const bytes: ByteSource = {
      size: source.size,
      read: (into, position) => {
        if (position + into.length > prefix.length) throw NEED_MORE;
        into.set(prefix.subarray(position, position + into.length));
      },
    };
    try {
      return parseGgufHeader(bytes, source.uri);
    } catch (e) {
      if (e !== NEED_MORE || want >= source.size || want > MAX_HEADER_BYTES)
        throw e === NEED_MORE
          ? new PmaError("GGUF_INVALID", `${source.uri}: GGUF header larger than ${want} bytes.`, {
              file: source.uri,
            })
          : e;
    }
  }
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

  private constructor(source: PositionalSource, fileSize: number, header: GgufHeader) {
    super(source, new Map(header.tensors.map((t) => [t.name, t])));
    this.fileSize = fileSize;
    this.version = header.version;
    this.alignment = header.alignment;
    this.metadata = header.metadata;
    this.infoEnd = header.infoEnd;
    this.dataStart = header.dataStart;
  }

  /** Opens a local path, or a source already opened (a remote file). */
  static async open(where: string | PositionalSource): Promise<GgufFile> {
    // The header is parsed with synchronous reads through a 1 MiB window: it is small
    // and read once, and a parser that never awaits stays simple.
    return openTensorFile(
      where,
      ".gguf",
      async (source) => new GgufFile(source, source.size, await parseHeader(source)),
    );
  }

  /** sha256 of everything before the data section: pins metadata, names, types, offsets. */
  async headerSha256(): Promise<string> {
    const source = this.source("hashing");
    const hash = createHash("sha256");
    const chunk = new Uint8Array(Math.min(this.dataStart, 1 << 22));
    for (let pos = 0; pos < this.dataStart; pos += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, this.dataStart - pos));
      await source.read(part, pos);
      hash.update(part);
    }
    return hash.digest("hex");
  }
}
