import { PmaError } from "../common/errors.js";
import {
  LENGTH_PREFIX,
  checkHeaderLength,
  parseSafetensorsHeader,
  type SafetensorsHeader,
  type TensorEntry,
} from "./safetensors-header.js";
import { readFully } from "./positional-io.js";
import { openTensorFile, PositionalTensorFile } from "./tensor-file.js";

export { MAX_HEADER_SIZE, parseSafetensorsHeader } from "./safetensors-header.js";
export type { SafetensorsHeader, TensorEntry } from "./safetensors-header.js";

/**
 * One safetensors file, validated on open from its 8-byte prefix and header alone.
 * Holds a single fd; tensor bytes are read on demand by position, so a file of any
 * size costs only its header in memory.
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

  private constructor(path: string, fd: number, fileSize: number, headerBytes: Uint8Array, header: SafetensorsHeader) {
    super(path, fd, new Map(header.tensors.map((t) => [t.name, t])));
    this.fileSize = fileSize;
    this.headerSize = header.headerSize;
    this.dataStart = header.dataStart;
    this.headerBytes = headerBytes;
    this.metadata = header.metadata;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    return openTensorFile(path, ".safetensors", async (fd, fileSize) => {
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
    });
  }
}
