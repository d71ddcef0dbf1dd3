import type { DType } from "../tensor/dtype.js";

/**
 * ggml tensor types as stored in GGUF tensor infos: id, block size (elements per block)
 * and type size (bytes per block), from ggml's `ggml.h` enum and type traits (mirrored
 * in gguf-py's `GGML_QUANT_SIZES`). A tensor of `n` elements whose row length is a
 * multiple of the block size takes `n / blockSize * typeSize` bytes.
 */
export interface GgmlTypeInfo {
  id: number;
  name: string;
  blockSize: number;
  typeSize: number;
  /** The pma dtype with the same bytes, for types pma can read element by element. */
  dtype: DType | null;
}

const QK_K = 256;

/** Types that can appear in a GGUF file today. */
const KNOWN: readonly GgmlTypeInfo[] = [
  { id: 0, name: "F32", blockSize: 1, typeSize: 4, dtype: "F32" },
  { id: 1, name: "F16", blockSize: 1, typeSize: 2, dtype: "F16" },
  { id: 2, name: "Q4_0", blockSize: 32, typeSize: 2 + 16, dtype: null },
  { id: 3, name: "Q4_1", blockSize: 32, typeSize: 2 + 2 + 16, dtype: null },
  { id: 6, name: "Q5_0", blockSize: 32, typeSize: 2 + 4 + 16, dtype: null },
  { id: 7, name: "Q5_1", blockSize: 32, typeSize: 2 + 2 + 4 + 16, dtype: null },
  { id: 8, name: "Q8_0", blockSize: 32, typeSize: 2 + 32, dtype: null },
  { id: 9, name: "Q8_1", blockSize: 32, typeSize: 4 + 4 + 32, dtype: null },
  { id: 10, name: "Q2_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 16 + QK_K / 4, dtype: null },
  { id: 11, name: "Q3_K", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + 12, dtype: null },
  { id: 12, name: "Q4_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + 12, dtype: null },
  { id: 13, name: "Q5_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 8 + 12, dtype: null },
  { id: 14, name: "Q6_K", blockSize: QK_K, typeSize: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, dtype: null },
  { id: 15, name: "Q8_K", blockSize: QK_K, typeSize: 4 + QK_K + QK_K / 8, dtype: null },
  { id: 16, name: "IQ2_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4, dtype: null },
  { id: 17, name: "IQ2_XS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 32, dtype: null },
  { id: 18, name: "IQ3_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8, dtype: null },
  { id: 19, name: "IQ1_S", blockSize: QK_K, typeSize: 2 + QK_K / 8 + QK_K / 16, dtype: null },
  { id: 20, name: "IQ4_NL", blockSize: 32, typeSize: 2 + 16, dtype: null },
  { id: 21, name: "IQ3_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, dtype: null },
  { id: 22, name: "IQ2_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 16, dtype: null },
  { id: 23, name: "IQ4_XS", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 64, dtype: null },
  { id: 24, name: "I8", blockSize: 1, typeSize: 1, dtype: "I8" },
  { id: 25, name: "I16", blockSize: 1, typeSize: 2, dtype: "I16" },
  { id: 26, name: "I32", blockSize: 1, typeSize: 4, dtype: "I32" },
  { id: 27, name: "I64", blockSize: 1, typeSize: 8, dtype: "I64" },
  { id: 28, name: "F64", blockSize: 1, typeSize: 8, dtype: "F64" },
  { id: 29, name: "IQ1_M", blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 16 + QK_K / 32, dtype: null },
  { id: 30, name: "BF16", blockSize: 1, typeSize: 2, dtype: "BF16" },
  { id: 34, name: "TQ1_0", blockSize: QK_K, typeSize: 2 + 4 * 13, dtype: null },
  { id: 35, name: "TQ2_0", blockSize: QK_K, typeSize: 2 + 64, dtype: null },
  { id: 39, name: "MXFP4", blockSize: 32, typeSize: 1 + 16, dtype: null },
  { id: 40, name: "NVFP4", blockSize: 64, typeSize: 4 + 32, dtype: null },
  { id: 41, name: "Q1_0", blockSize: 128, typeSize: 2 + 16, dtype: null },
];

/**
 * Ids ggml once used and has since dropped from GGUF files (their block size is 0 in
 * ggml's traits, so its reader refuses them). Named so the error can say what they were.
 */
const REMOVED: ReadonlyMap<number, string> = new Map([
  [4, "Q4_2"],
  [5, "Q4_3"],
  [31, "Q4_0_4_4"],
  [32, "Q4_0_4_8"],
  [33, "Q4_0_8_8"],
  [36, "IQ4_NL_4_4"],
  [37, "IQ4_NL_4_8"],
  [38, "IQ4_NL_8_8"],
]);

const BY_ID = new Map(KNOWN.map((t) => [t.id, t]));
const BY_NAME = new Map(KNOWN.map((t) => [t.name, t]));

export type GgmlTypeLookup = { ok: true; info: GgmlTypeInfo } | { ok: false; reason: string };

export function ggmlTypeById(id: number): GgmlTypeLookup {
  const info = BY_ID.get(id);
  if (info !== undefined) return { ok: true, info };
  const removed = REMOVED.get(id);
  if (removed !== undefined) {
    return {
      ok: false,
      reason: `ggml type ${id} (${removed}) was removed from GGUF files; re-quantize the model with a current llama.cpp`,
    };
  }
  return {
    ok: false,
    reason: `unknown ggml type ${id}; this version of pma knows ids up to ${KNOWN[KNOWN.length - 1]!.id}`,
  };
}

/** Looks a type up by its ggml name ("F16", "Q4_K", ...) or id. */
export function ggmlType(type: string | number): GgmlTypeInfo | undefined {
  return typeof type === "number" ? BY_ID.get(type) : BY_NAME.get(type.toUpperCase());
}

/** The ggml type holding a pma dtype's bytes unchanged, if there is one. */
export function ggmlTypeForDType(dtype: DType): GgmlTypeInfo | undefined {
  return KNOWN.find((t) => t.dtype === dtype);
}

export function knownGgmlTypes(): readonly GgmlTypeInfo[] {
  return KNOWN;
}

export type GgufSizeResult =
  { ok: true; elements: number; byteLength: number } | { ok: false; reason: string };

/**
 * Element count and byte size of a tensor with ggml dims (ne0 first). Like ggml, a
 * row (ne0) must be a whole number of blocks. Every product is kept below 2^53 so a
 * hostile dim can never produce a size that only looks right after rounding; a tensor
 * that large could not be in a file anyway.
 */
export function ggufTensorSize(type: GgmlTypeInfo, dims: readonly number[]): GgufSizeResult {
  let elements = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0)
      return { ok: false, reason: `dimension ${d} is not a non-negative integer below 2^53` };
    elements *= d;
    if (elements > Number.MAX_SAFE_INTEGER)
      return { ok: false, reason: `element count of dims [${dims.join(", ")}] overflows 2^53` };
  }
  const ne0 = dims.length > 0 ? dims[0]! : 1;
  if (ne0 % type.blockSize !== 0) {
    return {
      ok: false,
      reason: `row length ne0 = ${ne0} is not a multiple of the ${type.name} block size ${type.blockSize}`,
    };
  }
  const byteLength = (elements / type.blockSize) * type.typeSize;
  if (byteLength > Number.MAX_SAFE_INTEGER)
    return { ok: false, reason: `byte size of dims [${dims.join(", ")}] overflows 2^53` };
  return { ok: true, elements, byteLength };
}
