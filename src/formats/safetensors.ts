import { PmaError } from "../common/errors.js";
import {
  LENGTH_PREFIX,
  checkHeaderLength,
  parseSafetensorsHeader,
  type SafetensorsHeader,
  type TensorEntry,
} from "./safetensors-header.js";
import type { PositionalSource } from "../sources/source.js";
import { openTensorFile, PositionalTensorFile } from "./tensor-file.js";

export { MAX_HEADER_SIZE, parseSafetensorsHeader } from "./safetensors-header.js";
export type { SafetensorsHeader, TensorEntry } from "./safetensors-header.js";

/**
 * One safetensors file, validated on open from its 8-byte prefix and header alone.
 * Reads through one positional source (local or remote); tensor bytes are read on
 * demand by position, so a file of any size costs only its header in memory.
 */
export class SafetensorsFile extends PositionalTensorFile<TensorEntry> {
  readonly fileSize: number;
  /** N: length of the JSON header, padding included. */
  readonly headerSize: number;
  /** 8 + N: absolute position of the data buffer. */
  readonly dataStart: number;
  /** The raw header JSON, for hashing or re-emitting exactly. */
  readonly headerBytes: Uint8Array;
  readonly metadata: Record<string, string>;

  private constructor(
    source: PositionalSource,
    fileSize: number,
    headerBytes: Uint8Array,
    header: SafetensorsHeader,
  ) {
    super(source, new Map(header.tensors.map((t) => [t.name, t])));
    this.fileSize = fileSize;
    this.headerSize = header.headerSize;
    this.dataStart = header.dataStart;
    this.headerBytes = headerBytes;
    this.metadata = header.metadata;
  }

  /** Opens a local path, or a source already opened (a remote file). */
  static async open(where: string | PositionalSource): Promise<SafetensorsFile> {
    return openTensorFile(where, ".safetensors", async (source) => {
      const path = source.uri;
      const fileSize = source.size;
      if (fileSize < LENGTH_PREFIX) {
        throw new PmaError(
          "FILE_TOO_SHORT",
          `${path}: file is ${fileSize} bytes, shorter than the 8-byte header length every safetensors file starts with.`,
          { file: path },
        );
      }
      const prefix = new Uint8Array(LENGTH_PREFIX);
      await source.read(prefix, 0);
      const n = Buffer.from(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX).readBigUInt64LE(0);
      const headerBytes = new Uint8Array(checkHeaderLength(n, fileSize, path));
      await source.read(headerBytes, LENGTH_PREFIX);
      const header = parseSafetensorsHeader(headerBytes, fileSize, path);
      return new SafetensorsFile(source, fileSize, headerBytes, header);
    });
  }
}
