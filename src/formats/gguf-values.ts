/**
 * GGUF metadata values, typed as the file stores them, so that a value read from one
 * file is written back with the same type and bits: llama.cpp checks key types exactly
 * (a u64 `llama.context_length` is refused where a u32 is expected), so a u32 must stay
 * a u32. 64-bit integers are bigints and numeric arrays are typed arrays, so nothing is
 * rounded through a double.
 */

/** Value type ids of the GGUF spec (`gguf_metadata_value_type`). */
export const GGUF_VALUE_TYPE_IDS = {
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

export type GgufValueType = keyof typeof GGUF_VALUE_TYPE_IDS;
export type GgufElementType = GgufValueType;

const TYPE_BY_ID: readonly GgufValueType[] = Object.entries(GGUF_VALUE_TYPE_IDS)
  .sort((a, b) => a[1] - b[1])
  .map(([name]) => name as GgufValueType);

export function ggufValueTypeById(id: number): GgufValueType | undefined {
  return TYPE_BY_ID[id];
}

/** Bytes of a fixed-size value; strings and arrays have none. */
export const GGUF_FIXED_SIZE: Readonly<Partial<Record<GgufValueType, number>>> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  u64: 8,
  i64: 8,
  f64: 8,
};

/**
 * The fewest bytes one element of this type can take: a string is at least its u64
 * length, a nested array at least its u32 type and u64 count. Used to refuse a claimed
 * count before anything of that size is allocated.
 */
export function minElementBytes(type: GgufValueType): number {
  if (type === "string") return 8;
  if (type === "array") return 12;
  return GGUF_FIXED_SIZE[type]!;
}

export type GgufScalarValue =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; value: number }
  | { type: "u64" | "i64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string };

interface ArrayOf<E extends GgufElementType, V> {
  type: "array";
  elementType: E;
  values: V;
}

export type GgufArrayValue =
  | ArrayOf<"u8", Uint8Array>
  | ArrayOf<"i8", Int8Array>
  | ArrayOf<"u16", Uint16Array>
  | ArrayOf<"i16", Int16Array>
  | ArrayOf<"u32", Uint32Array>
  | ArrayOf<"i32", Int32Array>
  | ArrayOf<"f32", Float32Array>
  | ArrayOf<"f64", Float64Array>
  | ArrayOf<"u64", BigUint64Array>
  | ArrayOf<"i64", BigInt64Array>
  | ArrayOf<"bool", boolean[]>
  | ArrayOf<"string", string[]>
  // The spec allows arrays of arrays; ggml's own reader refuses them, gguf-py reads them.
  | ArrayOf<"array", GgufArrayValue[]>;

export type GgufValue = GgufScalarValue | GgufArrayValue;

/** Keys in file order. */
export type GgufMetadata = Map<string, GgufValue>;

/** Number of elements of an array value. */
export function ggufArrayLength(v: GgufArrayValue): number {
  return v.values.length;
}

/**
 * Builders, so a converter writes `gguf.u32(4096)` and gets the type llama.cpp wants.
 * f32 values are rounded to float32 here, once, because that is what the type means.
 */
export const gguf = {
  u8: (value: number): GgufValue => ({ type: "u8", value }),
  i8: (value: number): GgufValue => ({ type: "i8", value }),
  u16: (value: number): GgufValue => ({ type: "u16", value }),
  i16: (value: number): GgufValue => ({ type: "i16", value }),
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value: Math.fround(value) }),
  f64: (value: number): GgufValue => ({ type: "f64", value }),
  u64: (value: bigint | number): GgufValue => ({ type: "u64", value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: "i64", value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  string: (value: string): GgufValue => ({ type: "string", value }),
  strings: (values: string[]): GgufValue => ({ type: "array", elementType: "string", values }),
  u32s: (values: ArrayLike<number>): GgufValue => ({
    type: "array",
    elementType: "u32",
    values: Uint32Array.from(values),
  }),
  i32s: (values: ArrayLike<number>): GgufValue => ({
    type: "array",
    elementType: "i32",
    values: Int32Array.from(values),
  }),
  f32s: (values: ArrayLike<number>): GgufValue => ({
    type: "array",
    elementType: "f32",
    values: Float32Array.from(values),
  }),
  f64s: (values: ArrayLike<number>): GgufValue => ({
    type: "array",
    elementType: "f64",
    values: Float64Array.from(values),
  }),
};

/** A short description for listings: `u32 4096`, `array<string>[32000]`. */
export function describeGgufValue(v: GgufValue, maxChars = 60): string {
  if (v.type === "array") {
    const inner = v.elementType === "array" ? describeNested(v) : v.elementType;
    return `array<${inner}>[${v.values.length}]`;
  }
  const text = v.type === "string" ? JSON.stringify(v.value) : String(v.value);
  return `${v.type} ${text.length > maxChars ? `${text.slice(0, maxChars - 3)}...` : text}`;
}

function describeNested(v: GgufArrayValue): string {
  const first = v.values[0];
  return first !== undefined && typeof first === "object" && "elementType" in first
    ? `array<${first.elementType}>`
    : "array";
}
