import { PmaError } from "../common/errors.js";

/** Where header bytes come from: a file read by position, or a buffer in tests. */
export interface ByteSource {
  /** Total bytes available (the file size). */
  size: number;
  /** Fills `into` with the bytes at `position`; the range lies within `size`. */
  read(into: Uint8Array, position: number): void;
}

export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (into, position) => into.set(bytes.subarray(position, position + into.length)),
  };
}

/**
 * A GGUF header is metadata and tensor infos; a real one is at most tens of MB (a
 * tokenizer vocabulary). Refusing more bounds what a hostile file can make us allocate.
 */
export const MAX_HEADER_BYTES = 1 << 30;
const WINDOW = 1 << 20;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Sequential little-endian reads over a ByteSource through a window of at most a few
 * MiB, refilled on demand. Every read first checks the bytes exist in the file, so a
 * truncated file is reported where it ends, never as a short buffer, and no count read
 * from the file is allocated before it is known to fit.
 */
export class Cursor {
  pos = 0;
  private window = new Uint8Array(0);
  private view = new DataView(this.window.buffer);
  private windowStart = 0;

  constructor(
    private readonly source: ByteSource,
    readonly path: string,
  ) {}

  get size(): number {
    return this.source.size;
  }

  remaining(): number {
    return this.source.size - this.pos;
  }

  fail(what: string, at: number): never {
    throw new PmaError("GGUF_INVALID", `${this.path}: ${what} (at byte ${at}).`, { file: this.path });
  }

  /** Makes `n` bytes at `pos` readable from the window; `what` names them for errors. */
  private ensure(n: number, what: string): number {
    if (n > this.remaining()) {
      this.fail(
        `file ends at byte ${this.source.size} inside ${what}, which needs ${n} bytes from byte ${this.pos}; the file is truncated (re-copy or re-download it)`,
        this.pos,
      );
    }
    if (this.pos + n > MAX_HEADER_BYTES) {
      this.fail(
        `${what} ends past ${MAX_HEADER_BYTES} bytes; pma refuses GGUF headers (metadata and tensor infos) larger than 1 GiB`,
        this.pos,
      );
    }
    const offset = this.pos - this.windowStart;
    if (offset >= 0 && offset + n <= this.window.length) return offset;
    const length = Math.min(Math.max(n, WINDOW), this.remaining());
    this.window = new Uint8Array(length);
    this.source.read(this.window, this.pos);
    this.view = new DataView(this.window.buffer);
    this.windowStart = this.pos;
    return 0;
  }

  u8(what: string): number {
    const o = this.ensure(1, what);
    this.pos += 1;
    return this.window[o]!;
  }

  u32(what: string): number {
    const o = this.ensure(4, what);
    this.pos += 4;
    return this.view.getUint32(o, true);
  }

  u64(what: string): bigint {
    const o = this.ensure(8, what);
    this.pos += 8;
    return this.view.getBigUint64(o, true);
  }

  /** A view of the next `n` bytes; valid until the next read. */
  bytes(n: number, what: string): Uint8Array {
    const o = this.ensure(n, what);
    this.pos += n;
    return this.window.subarray(o, o + n);
  }

  /** A DataView positioned on the next `n` bytes, for element loops. */
  dataView(n: number, what: string): DataView {
    const o = this.ensure(n, what);
    this.pos += n;
    return new DataView(this.window.buffer, o, n);
  }

  /** Decodes `n` bytes of UTF-8; invalid UTF-8 is an error (the spec requires it). */
  utf8(n: number, what: string): string {
    const at = this.pos;
    const bytes = this.bytes(n, what);
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail(`${what} is not valid UTF-8`, at);
    }
  }
}
