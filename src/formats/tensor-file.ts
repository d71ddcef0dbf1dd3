/**
 * What safetensors and GGUF files share once their header is parsed: one positional
 * source (a local file, an HTTP URL, an S3 object, a Hub file; see sources/source.ts),
 * tensors located by absolute offset, bytes read by position on demand (so a file of
 * any size costs only its header in memory), and a close that waits for reads in flight.
 */
import { PmaError } from "../common/errors.js";
import { quoted } from "../common/quote.js";
import { LocalFileSource } from "../sources/local.js";
import type { PositionalSource } from "../sources/source.js";
import { checkNotLfsPointer } from "./lfs-pointer.js";

/** Where a tensor's bytes lie in its file. */
export interface TensorSpan {
  fileOffset: number;
  byteLength: number;
}

/**
 * Opens `where` (a local path, or an already opened source) and hands the source to
 * `parse`; the source is closed if parsing fails, and owned by the returned object otherwise.
 */
export async function openTensorFile<F>(
  where: string | PositionalSource,
  kind: string,
  parse: (source: PositionalSource) => Promise<F> | F,
): Promise<F> {
  const source = typeof where === "string" ? await LocalFileSource.open(where, kind) : where;
  try {
    // A local clone made without Git LFS holds pointers; remote stores serve the real file.
    const readSync = source.readSync?.bind(source);
    if (readSync !== undefined) checkNotLfsPointer(source.uri, source.size, (into) => readSync(into, 0));
    return await parse(source);
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}

export abstract class PositionalTensorFile<T extends TensorSpan> {
  private sourceOrNull: PositionalSource | null;
  /** The file's name for messages: a path, or a URI for a remote file. */
  readonly path: string;

  protected constructor(
    source: PositionalSource,
    /** In file order. */
    readonly tensors: Map<string, T>,
  ) {
    this.sourceOrNull = source;
    this.path = source.uri;
  }

  /** The open source; `doing` names the operation for the error after close(). */
  protected source(doing: string): PositionalSource {
    if (this.sourceOrNull === null)
      throw new PmaError("IO", `${this.path}: ${doing} after close().`, { file: this.path });
    return this.sourceOrNull;
  }

  /** How to reopen these bytes elsewhere (a worker thread); null after close(). */
  get sourceRef() {
    return this.sourceOrNull?.ref ?? null;
  }

  private locate(
    name: string,
    byteOffset: number,
    byteLength: number | undefined,
    into: Uint8Array | undefined,
  ) {
    const source = this.source(`read of "${name}"`);
    const t = this.tensors.get(name);
    if (!t)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.path}: no tensor named ${quoted(name)}.`, {
        file: this.path,
      });
    const length = byteLength ?? t.byteLength - byteOffset;
    const valid =
      Number.isSafeInteger(byteOffset) &&
      Number.isSafeInteger(length) &&
      byteOffset >= 0 &&
      length >= 0 &&
      byteOffset + length <= t.byteLength;
    if (!valid) {
      throw new PmaError(
        "RANGE_INVALID",
        `${this.path}: byte range [${byteOffset}, +${length}) is outside tensor "${name}" of ${t.byteLength} bytes.`,
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
    return {
      source,
      position: t.fileOffset + byteOffset,
      target: into ? into.subarray(0, length) : new Uint8Array(length),
    };
  }

  /** Reads bytes [byteOffset, byteOffset + byteLength) of one tensor (to its end by default). */
  async read(name: string, byteOffset = 0, byteLength?: number, into?: Uint8Array): Promise<Uint8Array> {
    const { source, position, target } = this.locate(name, byteOffset, byteLength, into);
    await source.read(target, position);
    return target;
  }

  /** Synchronous read; local files only (a remote source has no synchronous read). */
  readSync(name: string, byteOffset = 0, byteLength?: number, into?: Uint8Array): Uint8Array {
    const { source, position, target } = this.locate(name, byteOffset, byteLength, into);
    if (source.readSync === undefined)
      throw new PmaError("IO", `${this.path}: a remote file cannot be read synchronously; use read().`, {
        file: this.path,
      });
    source.readSync(target, position);
    return target;
  }

  /** Closes the source once reads already started have finished. */
  async close(): Promise<void> {
    const source = this.sourceOrNull;
    if (source === null) return;
    this.sourceOrNull = null;
    await source.close();
  }
}
