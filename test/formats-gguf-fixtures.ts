/**
 * GGUF bytes built field by field from the spec (ggml docs/gguf.md), independently of
 * pma's encoder, so tests compare the reader and writer against the format itself.
 */

/** Value type ids, written out from the spec's `gguf_metadata_value_type`. */
export const VT = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
/** ggml type ids from ggml.h. */
export const GT = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12, I32: 26, F64: 28, BF16: 30 } as const;

export class Bytes {
  private parts: Buffer[] = [];
  length = 0;

  raw(b: Uint8Array | string): this {
    const buf = typeof b === "string" ? Buffer.from(b, "utf8") : Buffer.from(b);
    this.parts.push(buf);
    this.length += buf.length;
    return this;
  }
  private fixed(size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    return this.raw(b);
  }
  u8(v: number): this {
    return this.fixed(1, (b) => b.writeUInt8(v));
  }
  i8(v: number): this {
    return this.fixed(1, (b) => b.writeInt8(v));
  }
  u16(v: number): this {
    return this.fixed(2, (b) => b.writeUInt16LE(v));
  }
  i16(v: number): this {
    return this.fixed(2, (b) => b.writeInt16LE(v));
  }
  u32(v: number): this {
    return this.fixed(4, (b) => b.writeUInt32LE(v));
  }
  i32(v: number): this {
    return this.fixed(4, (b) => b.writeInt32LE(v));
  }
  u64(v: bigint | number): this {
    return this.fixed(8, (b) => b.writeBigUInt64LE(BigInt(v)));
  }
  i64(v: bigint): this {
    return this.fixed(8, (b) => b.writeBigInt64LE(v));
  }
  f32(v: number): this {
    return this.fixed(4, (b) => b.writeFloatLE(v));
  }
  f64(v: number): this {
    return this.fixed(8, (b) => b.writeDoubleLE(v));
  }
  /** gguf_string_t: u64 byte length, then the bytes (no NUL). */
  str(s: string | Uint8Array): this {
    const b = typeof s === "string" ? Buffer.from(s, "utf8") : Buffer.from(s);
    return this.u64(b.length).raw(b);
  }
  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): this {
    return this.raw(Buffer.alloc((alignment - (this.length % alignment)) % alignment));
  }
  zeros(n: number): this {
    return this.raw(Buffer.alloc(n));
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Magic, version, tensor count, kv count. */
export function preamble(b: Bytes, tensors: number | bigint, kvs: number | bigint, version = 3): Bytes {
  return b.raw("GGUF").u32(version).u64(tensors).u64(kvs);
}

/** A key and its scalar type id; the caller appends the value. */
export function key(b: Bytes, name: string, type: number): Bytes {
  return b.str(name).u32(type);
}

export function tensorInfo(
  b: Bytes,
  name: string,
  dims: number[],
  type: number,
  offset: number | bigint,
): Bytes {
  b.str(name).u32(dims.length);
  for (const d of dims) b.u64(d);
  return b.u32(type).u64(offset);
}

export interface SimpleTensor {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

/**
 * A valid file: one u32 key ("test.n" = 7), the given tensors laid out as the spec says
 * (offsets the running sum of sizes padded to `alignment`), data section padded.
 */
export function simpleFile(
  tensors: SimpleTensor[],
  alignment = 32,
): { bytes: Buffer; dataStart: number; offsets: number[] } {
  const b = new Bytes();
  const kvs = alignment === 32 ? 1 : 2;
  preamble(b, tensors.length, kvs);
  key(b, "test.n", VT.u32).u32(7);
  if (alignment !== 32) key(b, "general.alignment", VT.u32).u32(alignment);
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    offsets.push(offset);
    tensorInfo(b, t.name, t.dims, t.type, offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  b.pad(alignment);
  const dataStart = b.length;
  for (const t of tensors) b.raw(t.data).pad(alignment);
  return { bytes: b.build(), dataStart, offsets };
}

/** Little-endian f32 bytes of `values`. */
export function f32Bytes(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
