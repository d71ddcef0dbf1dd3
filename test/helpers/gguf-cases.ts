/**
 * The handcrafted GGUF files of llama.cpp's own reader test (tests/test-gguf.cpp), one
 * generator per case, written from the cases' meaning: a file that is valid up to one
 * deliberate fault (or a valid variant), built byte by byte from the GGUF spec with a
 * seeded PRNG. Sections are cumulative as in the original: header only; header and
 * key/values; plus tensor infos; plus tensor data.
 */
import { Bytes, VT } from "../formats-gguf-fixtures.js";
import { rng as mulberry } from "./fixtures.js";

/** ggml types the generator uses: id, elements per block, bytes per block (ggml.h). */
const TYPES = [
  { id: 0, block: 1, size: 4 }, // F32
  { id: 1, block: 1, size: 2 }, // F16
  { id: 2, block: 32, size: 18 }, // Q4_0
  { id: 8, block: 32, size: 34 }, // Q8_0
  { id: 12, block: 256, size: 144 }, // Q4_K
  { id: 24, block: 1, size: 1 }, // I8
  { id: 26, block: 1, size: 4 }, // I32
  { id: 30, block: 1, size: 2 }, // BF16
] as const;
const I8 = 24;
const I64 = { id: 27, block: 1, size: 8 };
/** GGML_TYPE_COUNT today: one past the largest type id. */
const GGML_TYPE_COUNT = 42;
const GGUF_TYPE_COUNT = 13;
const DEFAULT_ALIGNMENT = 32;
const U64_MAX = (1n << 64n) - 1n;
/** Byte size of each scalar value type, by id (string and array: variable). */
const SCALAR_SIZE: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

export type CaseName =
  | "HEADER_BAD_MAGIC"
  | "HEADER_BAD_VERSION_0"
  | "HEADER_BAD_VERSION_1"
  | "HEADER_BAD_VERSION_FUTURE"
  | "HEADER_BAD_N_TENSORS"
  | "HEADER_BAD_N_KV"
  | "HEADER_EMPTY"
  | "KV_BAD_KEY_SIZE"
  | "KV_EMPTY_KEY"
  | "KV_BAD_TYPE"
  | "KV_DUPLICATE_KEY"
  | "KV_BAD_ALIGN"
  | "KV_ZERO_ALIGN"
  | "KV_WRONG_TYPE_ALIGN"
  | "KV_SUCCESS"
  | "TENSORS_BAD_NAME_SIZE"
  | "TENSORS_BAD_N_DIMS"
  | "TENSORS_BAD_SHAPE"
  | "TENSORS_ZERO_DIM"
  | "TENSORS_NE_TOO_BIG"
  | "TENSORS_NBYTES_TOO_BIG"
  | "TENSORS_BAD_TYPE"
  | "TENSORS_BAD_OFFSET"
  | "TENSORS_DUPLICATE_NAME"
  | "TENSORS_BAD_ALIGN"
  | "TENSORS_INCONSISTENT_ALIGN"
  | "TENSORS_SUCCESS"
  | "DATA_NOT_ENOUGH_DATA"
  | "DATA_BAD_ALIGN"
  | "DATA_INCONSISTENT_ALIGN"
  | "DATA_MEM_SIZE_OVERFLOW"
  | "DATA_SUCCESS"
  | "DATA_CUSTOM_ALIGN"
  | "DATA_NO_KV";

const section = (c: CaseName) =>
  c.startsWith("HEADER") ? 0 : c.startsWith("KV") ? 1 : c.startsWith("TENSORS") ? 2 : 3;

interface TensorConfig {
  type: { id: number; block: number; size: number };
  /** ggml order, ne0 first; always four entries, unused ones 1. */
  ne: bigint[];
}

/** What a valid file of the case's sections holds, so a test can check what was read. */
export interface CaseContents {
  keys: { key: string; type: number; arrayType: number | null; count: number | null }[];
  tensors: { name: string; typeId: number; ne: number[]; offset: number; bytes: number }[];
  alignment: number;
}

function tensorConfigs(r: () => number, n: number): TensorConfig[] {
  const out: TensorConfig[] = [];
  const int = (k: number) => Math.floor(r() * k);
  for (let i = 0; i < n; i++) {
    const type = TYPES[int(TYPES.length)]!;
    const ne = [BigInt((1 + int(10)) * type.block), 1n, 1n, 1n];
    const dims = 1 + int(4);
    for (let j = 1; j < dims; j++) ne[j] = BigInt(1 + int(10));
    out.push({ type, ne });
  }
  return out;
}

function kvTypes(r: () => number, n: number): [number, number | null][] {
  const out: [number, number | null][] = [];
  for (let i = 0; i < n; i++) {
    const t = Math.floor(r() * GGUF_TYPE_COUNT);
    if (t !== VT.array) out.push([t, null]);
    else {
      const at = Math.floor(r() * GGUF_TYPE_COUNT);
      if (at !== VT.array) out.push([t, at]);
    }
  }
  return out;
}

const nDimsOf = (ne: bigint[]) => {
  for (let i = 3; i >= 1; i--) if (ne[i] !== 1n) return i + 1;
  return 1;
};
const pad = (x: bigint, a: bigint) => ((x + a - 1n) / a) * a;
const rowBytes = (t: TensorConfig["type"], ne: bigint) => (ne / BigInt(t.block)) * BigInt(t.size);

/** A value of scalar type `t` (printable strings, bools 0/1: what pma and the spec accept). */
function writeScalar(b: Bytes, t: number, r: () => number): void {
  if (t === VT.string) {
    const n = Math.floor(r() * 64);
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + Math.floor(r() * 95));
    b.str(s);
  } else if (t === VT.bool) b.u8(r() < 0.5 ? 0 : 1);
  else if (t === VT.f32) b.f32(r());
  else if (t === VT.f64) b.f64(r());
  else {
    const bytes = new Uint8Array(SCALAR_SIZE[t]!);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
    b.raw(bytes);
  }
}

/** The bytes of one case, and what a reader should find in it when it is valid. */
export function llamaCppGgufCase(c: CaseName, seed = 1): { bytes: Buffer; contents: CaseContents } {
  const r = mulberry(seed);
  const sec = section(c);
  const b = new Bytes();
  const contents: CaseContents = { keys: [], tensors: [], alignment: DEFAULT_ALIGNMENT };

  b.raw(c === "HEADER_BAD_MAGIC" ? "FUGG" : "GGUF");
  b.u32(
    c === "HEADER_BAD_VERSION_0"
      ? 0
      : c === "HEADER_BAD_VERSION_1"
        ? 1
        : c === "HEADER_BAD_VERSION_FUTURE"
          ? 4
          : 3,
  );

  let tensors = sec >= 2 ? tensorConfigs(r, 12) : [];
  if (c === "DATA_MEM_SIZE_OVERFLOW") {
    // Two I8 tensors whose sizes each fit an int64 but whose sum does not.
    const big = 0x7fffffffffffffc0n;
    tensors = [0, 1].map(() => ({ type: { id: I8, block: 1, size: 1 }, ne: [big, 1n, 1n, 1n] }));
  }
  const kvs = sec >= 1 && c !== "DATA_NO_KV" ? kvTypes(r, 24) : [];
  const customAlign = [
    "KV_BAD_ALIGN",
    "KV_ZERO_ALIGN",
    "KV_WRONG_TYPE_ALIGN",
    "TENSORS_BAD_ALIGN",
    "DATA_BAD_ALIGN",
    "DATA_CUSTOM_ALIGN",
  ].includes(c);
  b.u64(c === "HEADER_BAD_N_TENSORS" ? U64_MAX : BigInt(tensors.length));
  b.u64(c === "HEADER_BAD_N_KV" ? U64_MAX : BigInt(kvs.length + (customAlign ? 1 : 0)));

  const finish = (alignment: number) => {
    b.pad(alignment);
    return { bytes: b.build(), contents };
  };
  if (sec === 0) return finish(DEFAULT_ALIGNMENT);

  kvs.forEach(([type, arrayType], i) => {
    const key = c === "KV_EMPTY_KEY" ? "" : `my_key_${c === "KV_DUPLICATE_KEY" ? i >> 1 : i}`;
    if (c === "KV_BAD_KEY_SIZE") b.u64(U64_MAX).raw(key);
    else b.str(key);
    b.u32(c === "KV_BAD_TYPE" ? GGUF_TYPE_COUNT : type);
    if (c === "KV_BAD_TYPE") {
      b.u8(0);
      return;
    }
    let count: number | null = null;
    if (arrayType !== null) {
      count = Math.floor(r() * 16);
      b.u32(arrayType).u64(count);
      for (let k = 0; k < count; k++) writeScalar(b, arrayType, r);
    } else writeScalar(b, type, r);
    contents.keys.push({ key, type, arrayType, count });
  });
  let alignment = DEFAULT_ALIGNMENT;
  if (customAlign) {
    // Valid variants use alignment 1 (any power of two is valid); bad ones 13 or 0.
    alignment = c === "DATA_CUSTOM_ALIGN" ? 1 : c === "KV_ZERO_ALIGN" ? 0 : 13;
    b.str("general.alignment")
      .u32(c === "KV_WRONG_TYPE_ALIGN" ? VT.i32 : VT.u32)
      .u32(alignment);
    if (c === "DATA_CUSTOM_ALIGN") contents.alignment = 1;
  }
  if (sec === 1) return finish(alignment > 1 ? alignment : 1);

  // Offsets laid out with alignment 1 while the file says 32: misaligned offsets.
  const layout = BigInt(
    c === "TENSORS_INCONSISTENT_ALIGN" || c === "DATA_INCONSISTENT_ALIGN" ? 1 : Math.max(alignment, 1),
  );
  let offset = 0n;
  tensors.forEach((t, i) => {
    const type = c === "TENSORS_NBYTES_TOO_BIG" ? I64 : t.type;
    let name = c === "TENSORS_DUPLICATE_NAME" ? "my_tensor" : `my_tensor_${i}`;
    if (c === "TENSORS_BAD_NAME_SIZE")
      name += "_with_a_very_long_name_which_is_longer_than_what_is_allowed_for_ggml_tensors";
    b.str(name);
    let nDims =
      c === "TENSORS_NE_TOO_BIG" || c === "TENSORS_NBYTES_TOO_BIG" || c === "TENSORS_ZERO_DIM"
        ? Math.max(2, nDimsOf(t.ne))
        : nDimsOf(t.ne);
    if (c === "TENSORS_ZERO_DIM") nDims = 2;
    b.u32(c === "TENSORS_BAD_N_DIMS" ? 5 : nDims);
    let ne = t.ne.slice(0, nDims);
    if (c === "TENSORS_BAD_SHAPE")
      ne = ne.map(() => U64_MAX); // -1 as int64
    else if (c === "TENSORS_ZERO_DIM") ne = [t.ne[0]!, 0n];
    else if (c === "TENSORS_NE_TOO_BIG")
      ne = ne.map(() => 4n * 0x7fffffffn); // the product overflows int64
    else if (c === "TENSORS_NBYTES_TOO_BIG") ne = ne.map(() => 1n << BigInt(Math.ceil(62 / nDims))); // elements x 8 bytes overflow
    for (const d of ne) b.u64(d);
    b.u32(c === "TENSORS_BAD_TYPE" ? GGML_TYPE_COUNT : type.id);
    b.u64(c === "TENSORS_BAD_OFFSET" ? U64_MAX : offset);
    const elements = c === "TENSORS_ZERO_DIM" ? 0n : ne.reduce((a, d) => a * d, 1n);
    const bytes =
      c === "TENSORS_NE_TOO_BIG" || c === "TENSORS_NBYTES_TOO_BIG" || c === "TENSORS_BAD_SHAPE"
        ? 0n
        : rowBytes(type, elements);
    contents.tensors.push({
      name,
      typeId: type.id,
      ne: ne.map(Number),
      offset: Number(offset),
      bytes: Number(bytes),
    });
    offset += pad(bytes, layout);
  });
  b.pad(alignment > 1 ? alignment : 1);
  if (sec === 2) return { bytes: b.build(), contents };

  let n = offset;
  if (c === "DATA_NOT_ENOUGH_DATA") n -= 1n;
  if (c === "DATA_MEM_SIZE_OVERFLOW") n = 32n;
  const data = Buffer.alloc(Number(n));
  for (let i = 0; i < data.length; i++) data[i] = i % 256;
  b.raw(data);
  return { bytes: b.build(), contents };
}

/**
 * Each case and what llama.cpp's test expects of it: a reader must refuse it, or read
 * it. TENSORS_ZERO_DIM is valid there (a tensor with a zero dimension has no bytes), and
 * so is TENSORS_SUCCESS, tensor infos without data: llama.cpp's test reads only the
 * header, but pma reads tensors by position, so a file whose tensors lie past its end is
 * refused as truncated (the one case where pma is stricter, on purpose).
 */
export const LLAMA_CPP_GGUF_CASES: readonly { name: CaseName; valid: boolean }[] = [
  { name: "HEADER_BAD_MAGIC", valid: false },
  { name: "HEADER_BAD_VERSION_0", valid: false },
  { name: "HEADER_BAD_VERSION_1", valid: false },
  { name: "HEADER_BAD_VERSION_FUTURE", valid: false },
  { name: "HEADER_BAD_N_TENSORS", valid: false },
  { name: "HEADER_BAD_N_KV", valid: false },
  { name: "HEADER_EMPTY", valid: true },
  { name: "KV_BAD_KEY_SIZE", valid: false },
  { name: "KV_EMPTY_KEY", valid: false },
  { name: "KV_BAD_TYPE", valid: false },
  { name: "KV_DUPLICATE_KEY", valid: false },
  { name: "KV_BAD_ALIGN", valid: false },
  { name: "KV_ZERO_ALIGN", valid: false },
  { name: "KV_WRONG_TYPE_ALIGN", valid: false },
  { name: "KV_SUCCESS", valid: true },
  { name: "TENSORS_BAD_NAME_SIZE", valid: false },
  { name: "TENSORS_BAD_N_DIMS", valid: false },
  { name: "TENSORS_BAD_SHAPE", valid: false },
  { name: "TENSORS_ZERO_DIM", valid: true },
  { name: "TENSORS_NE_TOO_BIG", valid: false },
  { name: "TENSORS_NBYTES_TOO_BIG", valid: false },
  { name: "TENSORS_BAD_TYPE", valid: false },
  { name: "TENSORS_BAD_OFFSET", valid: false },
  { name: "TENSORS_DUPLICATE_NAME", valid: false },
  { name: "TENSORS_BAD_ALIGN", valid: false },
  { name: "TENSORS_INCONSISTENT_ALIGN", valid: false },
  { name: "TENSORS_SUCCESS", valid: false },
  { name: "DATA_NOT_ENOUGH_DATA", valid: false },
  { name: "DATA_BAD_ALIGN", valid: false },
  { name: "DATA_INCONSISTENT_ALIGN", valid: false },
  { name: "DATA_MEM_SIZE_OVERFLOW", valid: false },
  { name: "DATA_SUCCESS", valid: true },
  { name: "DATA_CUSTOM_ALIGN", valid: true },
  // Not in llama.cpp's list: tensors and data without any key/value (valid per the spec).
  { name: "DATA_NO_KV", valid: true },
];
