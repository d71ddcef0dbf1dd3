/**
 * The protobuf wire format, just enough to read and write TensorBoard events without
 * generated code: varints, 32/64-bit fixed fields and length-delimited fields. Unknown
 * fields are skipped by wire type, so newer writers' extra fields never break reading.
 * Errors are plain `ProtoError`s with the byte position; callers add file context.
 */

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

export class ProtoError extends Error {
  /** Byte position of the problem, relative to the start of the decoded buffer. */
  readonly position: number;
  constructor(message: string, position: number) {
    super(message);
    this.name = "ProtoError";
    this.position = position;
  }
}

export class ProtoReader {
  private readonly view: DataView;
  pos: number;

  /** Reads `bytes[start, end)`; positions in errors are relative to `base + start`. */
  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
    private readonly base = 0,
    view?: DataView,
  ) {
    // Nested messages share their parent's view: one per event file read, not per field.
    this.view = view ?? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  private fail(message: string, at = this.pos): never {
    throw new ProtoError(message, this.base + at);
  }

  /** Next field key: field number and wire type. */
  key(): { field: number; wire: number } {
    const at = this.pos;
    const k = this.varint();
    const field = Math.floor(k / 8);
    if (field === 0) this.fail("field number 0", at);
    return { field, wire: k % 8 };
  }

  /**
   * An unsigned varint as a number. Values above 2^53 lose precision; callers that
   * need int64 semantics use `int64()`.
   */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail("varint runs past the end of its message");
      const b = this.bytes[this.pos++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    return this.fail("varint longer than 10 bytes");
  }

  /** A two's-complement int64 varint; throws when it is not a safe integer. */
  int64(): number {
    const at = this.pos;
    const v = this.varint();
    if (v <= Number.MAX_SAFE_INTEGER) return v;
    // Negative int64 values are encoded as 10-byte varints: redo the decode exactly.
    let big = 0n;
    for (let i = 0, p = at; i < 10; i++, p++) {
      const b = this.bytes[p]!;
      big |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) break;
    }
    const signed = BigInt.asIntN(64, big);
    const n = Number(signed);
    if (!Number.isSafeInteger(n)) this.fail(`int64 ${signed} is outside the exactly representable range`, at);
    return n;
  }

  double(): number {
    if (this.pos + 8 > this.end) this.fail("fixed64 runs past the end of its message");
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail("fixed32 runs past the end of its message");
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** Bounds `[start, end)` of a length-delimited field's payload, consumed. */
  lengthDelimited(): { start: number; end: number } {
    const at = this.pos;
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) this.fail(`length ${len} runs past the end of its message`, at);
    this.pos = start + len;
    return { start, end: start + len };
  }

  /** A nested message reader over a length-delimited field. */
  message(): ProtoReader {
    const { start, end } = this.lengthDelimited();
    return new ProtoReader(this.bytes, start, end, this.base, this.view);
  }

  bytesField(): Uint8Array {
    const { start, end } = this.lengthDelimited();
    return this.bytes.subarray(start, end);
  }

  string(): string {
    const { start, end } = this.lengthDelimited();
    const raw = this.bytes.subarray(start, end);
    // Tags are short ASCII: one fromCharCode is much cheaper than a TextDecoder call.
    if (raw.length <= 256) {
      let ascii = true;
      for (let i = 0; i < raw.length; i++) if (raw[i]! >= 0x80) ascii = false;
      if (ascii) return String.fromCharCode.apply(null, raw as unknown as number[]);
    }
    return UTF8.decode(raw);
  }

  /** Byte position (including `base`) for error messages. */
  position(): number {
    return this.base + this.pos;
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        if (this.pos + 8 > this.end) this.fail("fixed64 runs past the end of its message");
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        if (this.pos + 4 > this.end) this.fail("fixed32 runs past the end of its message");
        this.pos += 4;
        return;
      default:
        // 3/4 are deprecated groups, 6/7 are undefined: no TensorBoard writer emits them.
        this.fail(`unsupported wire type ${wire}`);
    }
  }
}

const UTF8 = new TextDecoder("utf-8");
const UTF8_ENCODER = new TextEncoder();

/** Bytes a non-negative integer takes as a varint (for writing length prefixes up front). */
export function varintSize(n: number): number {
  let size = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) size++;
  return size;
}

/** Appends protobuf fields to a growing buffer. */
export class ProtoWriter {
  private buf = new Uint8Array(64);
  private dv = new DataView(this.buf.buffer);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  /** Unsigned varint of a non-negative safe integer, or a negative int64 (10 bytes). */
  varint(value: number): this {
    if (!Number.isSafeInteger(value)) throw new RangeError(`varint ${value} is not a safe integer`);
    this.reserve(10);
    if (value < 0) {
      let v = BigInt.asUintN(64, BigInt(value));
      while (v >= 0x80n) {
        this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
        v >>= 7n;
      }
      this.buf[this.len++] = Number(v);
      return this;
    }
    let v = value;
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.len++] = v;
    return this;
  }

  key(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  double(field: number, value: number): this {
    this.key(field, WIRE_FIXED64);
    this.reserve(8);
    this.dv.setFloat64(this.len, value, true);
    this.len += 8;
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    this.reserve(4);
    this.dv.setFloat32(this.len, value, true);
    this.len += 4;
    return this;
  }

  uint(field: number, value: number): this {
    return this.key(field, WIRE_VARINT).varint(value);
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, WIRE_LEN).varint(value.length);
    this.reserve(value.length);
    this.buf.set(value, this.len);
    this.len += value.length;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, UTF8_ENCODER.encode(value));
  }

  /** A copy of the bytes written so far. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  /** The bytes written so far, without copying; valid until the next write or reset. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** Starts over, keeping the buffer: one writer can encode many messages. */
  reset(): this {
    this.len = 0;
    return this;
  }
}
