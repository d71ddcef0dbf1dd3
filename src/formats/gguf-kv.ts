import type { Cursor } from "./gguf-cursor.js";
import {
  GGUF_FIXED_SIZE,
  ggufValueTypeById,
  minElementBytes,
  type GgufArrayValue,
  type GgufMetadata,
  type GgufValue,
  type GgufValueType,
} from "./gguf-values.js";
import { quoted } from "../common/quote.js";

/** ggml's own limits (GGUF_MAX_STRING_LENGTH, GGUF_MAX_ARRAY_ELEMENTS). */
export const GGUF_MAX_STRING_BYTES = 1 << 30;
export const GGUF_MAX_ARRAY_ELEMENTS = 1 << 30;
/** The spec puts no limit on arrays of arrays; this keeps recursion off the stack limit. */
const MAX_NESTING = 16;
/**
 * Elements of string, bool and nested arrays, in all, per header. Each becomes a JS
 * value (8 bytes and more where the file may spend 1), and V8 ends the process, without
 * an exception, when one array passes about 134M elements. Tokenizers, the largest such
 * arrays in real files, hold a few hundred thousand.
 */
export const GGUF_MAX_OBJECT_ELEMENTS = 1 << 24;

const CORRUPT = "; the file is corrupt or was written by a faulty tool";

export interface KeyValues {
  metadata: GgufMetadata;
  /** Byte position of each key's entry, for errors about a key found later. */
  positions: Map<string, number>;
}

function readString(cur: Cursor, what: string): string {
  const at = cur.pos;
  const n = cur.u64(`${what} length`);
  if (n > BigInt(cur.remaining())) {
    cur.fail(
      `${what} claims ${n} bytes but only ${cur.remaining()} remain in the file; the file is truncated or corrupt`,
      at,
    );
  }
  if (n > BigInt(GGUF_MAX_STRING_BYTES))
    cur.fail(`${what} claims ${n} bytes, over ggml's limit of ${GGUF_MAX_STRING_BYTES}${CORRUPT}`, at);
  return cur.utf8(Number(n), what);
}

function readType(cur: Cursor, what: string): GgufValueType {
  const at = cur.pos;
  const id = cur.u32(what);
  const type = ggufValueTypeById(id);
  if (type === undefined) cur.fail(`${what} is ${id}, not a GGUF value type (0-12)${CORRUPT}`, at);
  return type;
}

function readBool(cur: Cursor, what: string): boolean {
  const at = cur.pos;
  const b = cur.u8(what);
  // The spec: "0 is false and 1 is true. Anything else is invalid".
  if (b > 1) cur.fail(`${what} is a bool stored as ${b}; only 0 and 1 are valid${CORRUPT}`, at);
  return b === 1;
}

function readScalar(cur: Cursor, type: Exclude<GgufValueType, "array">, what: string): GgufValue {
  switch (type) {
    case "string":
      return { type, value: readString(cur, what) };
    case "bool":
      return { type, value: readBool(cur, what) };
    case "u64":
    case "i64": {
      const v = cur.dataView(8, what);
      return { type, value: type === "u64" ? v.getBigUint64(0, true) : v.getBigInt64(0, true) };
    }
    default: {
      const v = cur.dataView(GGUF_FIXED_SIZE[type]!, what);
      const get = {
        u8: () => v.getUint8(0),
        i8: () => v.getInt8(0),
        u16: () => v.getUint16(0, true),
        i16: () => v.getInt16(0, true),
        u32: () => v.getUint32(0, true),
        i32: () => v.getInt32(0, true),
        f32: () => v.getFloat32(0, true),
        f64: () => v.getFloat64(0, true),
      }[type];
      return { type, value: get() };
    }
  }
}

/** How many more string/bool/array elements this header may decode. */
interface ElementBudget {
  left: number;
}

function readArray(cur: Cursor, what: string, depth: number, budget: ElementBudget): GgufArrayValue {
  if (depth > MAX_NESTING)
    cur.fail(`${what} nests arrays more than ${MAX_NESTING} deep; pma refuses it`, cur.pos);
  const elementType = readType(cur, `${what} element type`);
  const at = cur.pos;
  const count = cur.u64(`${what} element count`);
  const min = minElementBytes(elementType);
  // Checked before anything is allocated: a count of 2^60 fails here, at once.
  if (count * BigInt(min) > BigInt(cur.remaining())) {
    cur.fail(
      `${what} claims ${count} elements of ${elementType} (at least ${min} bytes each) but only ${cur.remaining()} bytes remain in the file${CORRUPT}`,
      at,
    );
  }
  if (count > BigInt(GGUF_MAX_ARRAY_ELEMENTS))
    cur.fail(
      `${what} claims ${count} elements, over ggml's limit of ${GGUF_MAX_ARRAY_ELEMENTS}${CORRUPT}`,
      at,
    );
  const n = Number(count);
  if (elementType === "string" || elementType === "bool" || elementType === "array") {
    if (n > budget.left) {
      cur.fail(
        `${what} has ${n} ${elementType} elements, more than the ${GGUF_MAX_OBJECT_ELEMENTS} string, bool and array elements pma reads from one header${CORRUPT}`,
        at,
      );
    }
    budget.left -= n;
  }
  switch (elementType) {
    case "string": {
      const values: string[] = [];
      for (let i = 0; i < n; i++) values.push(readString(cur, `${what}[${i}]`));
      return { type: "array", elementType, values };
    }
    case "bool": {
      const values: boolean[] = [];
      for (let i = 0; i < n; i++) values.push(readBool(cur, `${what}[${i}]`));
      return { type: "array", elementType, values };
    }
    case "array": {
      const values: GgufArrayValue[] = [];
      for (let i = 0; i < n; i++) values.push(readArray(cur, `${what}[${i}]`, depth + 1, budget));
      return { type: "array", elementType, values };
    }
    default:
      return readNumericArray(cur, elementType, n, what);
  }
}

function readNumericArray(
  cur: Cursor,
  elementType: Exclude<GgufValueType, "string" | "bool" | "array">,
  n: number,
  what: string,
): GgufArrayValue {
  const size = GGUF_FIXED_SIZE[elementType]!;
  const v = cur.dataView(n * size, `${what} elements`);
  // DataView reads little-endian whatever the host, and copies into an aligned array.
  const num = <T extends { [i: number]: number }>(out: T, get: (o: number) => number): T => {
    const target: { [i: number]: number } = out;
    for (let i = 0; i < n; i++) target[i] = get(i * size);
    return out;
  };
  const big = <T extends { [i: number]: bigint }>(out: T, get: (o: number) => bigint): T => {
    const target: { [i: number]: bigint } = out;
    for (let i = 0; i < n; i++) target[i] = get(i * size);
    return out;
  };
  switch (elementType) {
    case "u8":
      return { type: "array", elementType, values: num(new Uint8Array(n), (o) => v.getUint8(o)) };
    case "i8":
      return { type: "array", elementType, values: num(new Int8Array(n), (o) => v.getInt8(o)) };
    case "u16":
      return { type: "array", elementType, values: num(new Uint16Array(n), (o) => v.getUint16(o, true)) };
    case "i16":
      return { type: "array", elementType, values: num(new Int16Array(n), (o) => v.getInt16(o, true)) };
    case "u32":
      return { type: "array", elementType, values: num(new Uint32Array(n), (o) => v.getUint32(o, true)) };
    case "i32":
      return { type: "array", elementType, values: num(new Int32Array(n), (o) => v.getInt32(o, true)) };
    case "f32":
      return { type: "array", elementType, values: num(new Float32Array(n), (o) => v.getFloat32(o, true)) };
    case "f64":
      return { type: "array", elementType, values: num(new Float64Array(n), (o) => v.getFloat64(o, true)) };
    case "u64":
      return {
        type: "array",
        elementType,
        values: big(new BigUint64Array(n), (o) => v.getBigUint64(o, true)),
      };
    case "i64":
      return { type: "array", elementType, values: big(new BigInt64Array(n), (o) => v.getBigInt64(o, true)) };
  }
}

/** Reads `count` key/value pairs: non-empty unique UTF-8 keys, typed values. */
export function readKeyValues(cur: Cursor, count: number): KeyValues {
  const metadata: GgufMetadata = new Map();
  const positions = new Map<string, number>();
  const budget: ElementBudget = { left: GGUF_MAX_OBJECT_ELEMENTS };
  for (let i = 0; i < count; i++) {
    const at = cur.pos;
    const key = readString(cur, `key ${i}`);
    if (key === "") cur.fail(`key ${i} is empty${CORRUPT}`, at);
    const what = `key ${quoted(key)}`;
    if (metadata.has(key))
      cur.fail(
        `${what} appears twice (first at byte ${positions.get(key)}); which value is meant is ambiguous`,
        at,
      );
    const type = readType(cur, `${what} value type`);
    const value = type === "array" ? readArray(cur, what, 0, budget) : readScalar(cur, type, what);
    metadata.set(key, value);
    positions.set(key, at);
  }
  return { metadata, positions };
}
