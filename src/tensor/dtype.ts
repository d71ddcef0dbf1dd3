/**
 * Element types known to safetensors (see the format's reference implementation).
 * `bits` is per element; sub-byte types (F4, F6_*) pack elements into bytes, so byte
 * sizes must be computed from bits, never from a per-element byte count.
 */
export const DTYPES = {
  BOOL: { bits: 8, kind: "bool" },
  U8: { bits: 8, kind: "int" },
  I8: { bits: 8, kind: "int" },
  F8_E5M2: { bits: 8, kind: "float8" },
  F8_E4M3: { bits: 8, kind: "float8" },
  F8_E8M0: { bits: 8, kind: "float8" },
  F8_E4M3FNUZ: { bits: 8, kind: "float8" },
  F8_E5M2FNUZ: { bits: 8, kind: "float8" },
  F6_E2M3: { bits: 6, kind: "float8" },
  F6_E3M2: { bits: 6, kind: "float8" },
  F4: { bits: 4, kind: "float8" },
  I16: { bits: 16, kind: "int" },
  U16: { bits: 16, kind: "int" },
  F16: { bits: 16, kind: "float" },
  BF16: { bits: 16, kind: "float" },
  I32: { bits: 32, kind: "int" },
  U32: { bits: 32, kind: "int" },
  F32: { bits: 32, kind: "float" },
  F64: { bits: 64, kind: "float" },
  I64: { bits: 64, kind: "int" },
  U64: { bits: 64, kind: "int" },
  C64: { bits: 64, kind: "complex" },
} as const;

export type DType = keyof typeof DTYPES;

/** The float dtypes pma can do arithmetic on (merge, stats). */
export type FloatDType = "F16" | "BF16" | "F32" | "F64";

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPES, s);
}

export function isFloatDType(d: DType): d is FloatDType {
  return d === "F16" || d === "BF16" || d === "F32" || d === "F64";
}

export function dtypeBits(d: DType): number {
  return DTYPES[d].bits;
}

/** The name transformers uses for a float dtype in config.json's `torch_dtype`. */
export function torchDtypeName(dtype: FloatDType): string {
  return { BF16: "bfloat16", F16: "float16", F32: "float32", F64: "float64" }[dtype];
}
