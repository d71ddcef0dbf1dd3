import { PmaError } from "../common/errors.js";
import {
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAX_DIMS,
  GGUF_MAX_NAME_BYTES,
} from "./gguf-header.js";
import { ggmlType, ggufTensorSize, type GgmlTypeInfo } from "./gguf-types.js";
import {
  GGUF_VALUE_TYPE_IDS,
  type GgufArrayValue,
  type GgufMetadata,
  type GgufValue,
} from "./gguf-values.js";

/** What a writer needs to know of one tensor; its bytes come later. */
export interface GgufTensorSpec {
  name: string;
  /** ggml type id or name: "F32", "F16", "BF16", "Q8_0", ... */
  type: number | string;
  /** ggml order, ne0 first: a torch shape reversed (see `ggufDims`). */
  dims: number[];
}

export interface PlannedGgufTensor {
  name: string;
  type: GgmlTypeInfo;
  dims: number[];
  byteLength: number;
  /** Relative to the data section. */
  offset: number;
}

export interface EncodedGgufHeader {
  /** Magic through tensor infos, zero-padded to the alignment. */
  bytes: Uint8Array;
  alignment: number;
  dataStart: number;
  /** In the given order, which is also data order. */
  tensors: PlannedGgufTensor[];
  /** Bytes of the data section, each tensor padded to the alignment as ggml writes it. */
  dataLength: number;
}

/** ggml dims (ne0 first) for a torch-order shape. */
export function ggufDims(shape: readonly number[]): number[] {
  return [...shape].reverse();
}

// With the u flag a surrogate pair is one code point, so only unpaired halves match.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const utf8 = new TextEncoder();

function invalid(what: string): never {
  throw new PmaError("GGUF_INVALID", what);
}

/** UTF-8 bytes of a string; one with an unpaired surrogate has no UTF-8 form. */
function utf8Bytes(s: string, what: string): Uint8Array {
  if (typeof s !== "string") invalid(`${what} must be a string, got ${typeof s}`);
  if (LONE_SURROGATE.test(s)) invalid(`${what} contains an unpaired UTF-16 surrogate and has no UTF-8 form`);
  return utf8.encode(s);
}

const INT_RANGE: Record<"u8" | "i8" | "u16" | "i16" | "u32" | "i32", [number, number]> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};

const ARRAY_CLASS = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  f64: Float64Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
} as const;

/** Little-endian byte sink that grows as needed. */
class Sink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // room() may replace buf and view, so it runs before either is read.
  u32(v: number): void {
    const at = this.room(4);
    this.view.setUint32(at, v, true);
  }
  u64(v: bigint | number): void {
    const at = this.room(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.room(b.length);
    this.buf.set(b, at);
  }
  string(s: string, what: string): void {
    const b = utf8Bytes(s, what);
    this.u64(b.length);
    this.bytes(b);
  }
  /** Appends a fixed-size scalar through a DataView setter. */
  put(size: number, set: (v: DataView, at: number) => void): void {
    const at = this.room(size);
    set(this.view, at);
  }
  pad(alignment: number): void {
    this.room((alignment - (this.length % alignment)) % alignment);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function putScalar(sink: Sink, v: Exclude<GgufValue, GgufArrayValue>, what: string): void {
  switch (v.type) {
    case "string":
      return sink.string(v.value, what);
    case "bool":
      if (typeof v.value !== "boolean") invalid(`${what} must be a boolean`);
      return sink.put(1, (d, at) => d.setUint8(at, v.value ? 1 : 0));
    case "u64":
    case "i64": {
      const x = v.value;
      const [lo, hi] = v.type === "u64" ? [0n, (1n << 64n) - 1n] : [-(1n << 63n), (1n << 63n) - 1n];
      if (typeof x !== "bigint" || x < lo || x > hi)
        invalid(`${what} must be a bigint in [${lo}, ${hi}] for ${v.type}, got ${String(x)}`);
      return sink.put(8, (d, at) =>
        v.type === "u64" ? d.setBigUint64(at, x, true) : d.setBigInt64(at, x, true),
      );
    }
    case "f32":
    case "f64":
      if (typeof v.value !== "number") invalid(`${what} must be a number`);
      return v.type === "f32"
        ? sink.put(4, (d, at) => d.setFloat32(at, v.value, true))
        : sink.put(8, (d, at) => d.setFloat64(at, v.value, true));
    default: {
      const [lo, hi] = INT_RANGE[v.type];
      const x = v.value;
      if (!Number.isInteger(x) || x < lo || x > hi)
        invalid(`${what} must be an integer in [${lo}, ${hi}] for ${v.type}, got ${x}`);
      const size = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4 }[v.type];
      return sink.put(size, (d, at) => {
        if (v.type === "u8") d.setUint8(at, x);
        else if (v.type === "i8") d.setInt8(at, x);
        else if (v.type === "u16") d.setUint16(at, x, true);
        else if (v.type === "i16") d.setInt16(at, x, true);
        else if (v.type === "u32") d.setUint32(at, x, true);
        else d.setInt32(at, x, true);
      });
    }
  }
}

function putArray(sink: Sink, v: GgufArrayValue, what: string): void {
  const typeId = GGUF_VALUE_TYPE_IDS[v.elementType];
  if (typeId === undefined) invalid(`${what} has unknown element type "${String(v.elementType)}"`);
  sink.u32(typeId);
  sink.u64(v.values.length);
  switch (v.elementType) {
    case "string":
      v.values.forEach((s, i) => sink.string(s, `${what}[${i}]`));
      return;
    case "bool":
      v.values.forEach((b, i) => putScalar(sink, { type: "bool", value: b }, `${what}[${i}]`));
      return;
    case "array":
      // Each element is itself {element type, count, values}, with no type tag of its own.
      v.values.forEach((a, i) => putArray(sink, a, `${what}[${i}]`));
      return;
    default: {
      const cls = ARRAY_CLASS[v.elementType];
      // A typed array of the element type holds only representable values, so its bytes are the encoding.
      if (!(v.values instanceof cls))
        invalid(`${what}: values of an array<${v.elementType}> must be a ${cls.name}`);
      const src = v.values;
      const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
      if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
        invalid("writing GGUF arrays needs a little-endian host");
      sink.bytes(bytes);
    }
  }
}

function alignmentFrom(metadata: GgufMetadata): number {
  const v = metadata.get(GGUF_ALIGNMENT_KEY);
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (v.type !== "u32" || v.value === 0 || (v.value & (v.value - 1)) !== 0) {
    invalid(`"${GGUF_ALIGNMENT_KEY}" must be a u32 power of two (llama.cpp refuses anything else)`);
  }
  return v.value;
}

/** Validates tensor specs and lays their data out in the given order. */
export function planGgufTensors(
  specs: readonly GgufTensorSpec[],
  alignment: number,
): { tensors: PlannedGgufTensor[]; dataLength: number } {
  const seen = new Set<string>();
  let offset = 0;
  const tensors = specs.map((s) => {
    const where = `tensor "${s.name}"`;
    const nameBytes = utf8Bytes(s.name, `${where} name`);
    if (nameBytes.length > GGUF_MAX_NAME_BYTES)
      invalid(`${where}: name is ${nameBytes.length} bytes; ggml allows at most ${GGUF_MAX_NAME_BYTES}`);
    if (seen.has(s.name)) invalid(`${where} is listed twice; tensor names must be unique`);
    seen.add(s.name);
    const type = ggmlType(s.type);
    if (type === undefined) invalid(`${where}: unknown ggml type ${JSON.stringify(s.type)}`);
    if (s.dims.length > GGUF_MAX_DIMS)
      invalid(`${where} has ${s.dims.length} dims; ggml allows at most ${GGUF_MAX_DIMS}`);
    const size = ggufTensorSize(type, s.dims);
    if (!size.ok) invalid(`${where} (${type.name}, dims [${s.dims.join(", ")}]): ${size.reason}`);
    const planned: PlannedGgufTensor = {
      name: s.name,
      type,
      dims: [...s.dims],
      byteLength: size.byteLength,
      offset,
    };
    offset += Math.ceil(size.byteLength / alignment) * alignment;
    if (offset > Number.MAX_SAFE_INTEGER) invalid(`${where}: the data section would pass 2^53 bytes`);
    return planned;
  });
  return { tensors, dataLength: offset };
}

/**
 * Encodes a GGUF v3 header exactly as ggml's `gguf_write_to_file` does: metadata in the
 * map's order, tensor infos in the given order with offsets that are the running sum of
 * sizes padded to `general.alignment` (default 32), then zero padding to the alignment.
 */
export function encodeGgufHeader(
  metadata: GgufMetadata,
  specs: readonly GgufTensorSpec[],
): EncodedGgufHeader {
  const alignment = alignmentFrom(metadata);
  const { tensors, dataLength } = planGgufTensors(specs, alignment);
  const sink = new Sink();
  sink.bytes(utf8.encode("GGUF"));
  sink.u32(3);
  sink.u64(tensors.length);
  sink.u64(metadata.size);
  for (const [key, value] of metadata) {
    if (key === "") invalid("metadata keys must not be empty");
    const what = `metadata key "${key}"`;
    sink.string(key, what);
    sink.u32(GGUF_VALUE_TYPE_IDS[value.type]);
    if (value.type === "array") putArray(sink, value, what);
    else putScalar(sink, value, what);
  }
  for (const t of tensors) {
    sink.string(t.name, `tensor "${t.name}" name`);
    sink.u32(t.dims.length);
    for (const d of t.dims) sink.u64(d);
    sink.u32(t.type.id);
    sink.u64(t.offset);
  }
  sink.pad(alignment);
  const bytes = sink.result();
  return { bytes, alignment, dataStart: bytes.length, tensors, dataLength };
}
