import { PmaError } from "../common/errors.js";
import { isDType, type DType } from "../tensor/dtype.js";
import { LENGTH_PREFIX, MAX_HEADER_SIZE, METADATA_KEY } from "./safetensors-header.js";
import { tensorByteLength } from "./tensor-bytes.js";

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface PlannedTensor extends TensorSpec {
  byteLength: number;
}

/**
 * The reference writer sorts by its `Dtype` enum, declared "in increasing alignment
 * order", descending, then by name. The enum's order is reproduced here rather than
 * derived from bit widths because it is not purely by width (C64 sits between F32 and
 * F64), and byte-identical layout with the reference is the point.
 */
const REFERENCE_DTYPE_ORDER: readonly DType[] = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
];
const DTYPE_RANK = new Map<DType, number>(REFERENCE_DTYPE_ORDER.map((d, i) => [d, i]));

const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Validates specs and returns them in the reference writer's order with byte sizes. */
export function orderForWrite(specs: readonly TensorSpec[]): PlannedTensor[] {
  const seen = new Set<string>();
  const keyed: { t: PlannedTensor; nameBytes: Buffer; rank: number }[] = [];
  for (const s of specs) {
    const where = `tensor "${s.name}"`;
    if (s.name === METADATA_KEY) {
      throw new PmaError(
        "HEADER_INVALID",
        `${where}: the name is reserved for file metadata in safetensors.`,
      );
    }
    if (LONE_SURROGATE.test(s.name)) {
      throw new PmaError(
        "HEADER_INVALID",
        `${where}: the name contains an unpaired UTF-16 surrogate and has no UTF-8 form.`,
      );
    }
    if (seen.has(s.name)) {
      throw new PmaError("DUPLICATE_NAME", `${where} is listed twice; tensor names must be unique.`);
    }
    seen.add(s.name);
    if (!isDType(s.dtype)) {
      throw new PmaError("DTYPE_UNKNOWN", `${where} has unknown dtype "${String(s.dtype)}".`);
    }
    const size = tensorByteLength(s.dtype, s.shape);
    if (!size.ok) {
      throw new PmaError(
        "TENSOR_SIZE_MISMATCH",
        `${where} (${s.dtype}, shape [${s.shape.join(", ")}]): ${size.reason}.`,
      );
    }
    keyed.push({
      t: { name: s.name, dtype: s.dtype, shape: [...s.shape], byteLength: size.byteLength },
      nameBytes: Buffer.from(s.name, "utf8"),
      rank: DTYPE_RANK.get(s.dtype) ?? -1,
    });
  }
  // Names compare as UTF-8 bytes, as Rust's String ordering does (UTF-16 code units
  // order differently above U+FFFF).
  keyed.sort((a, b) => b.rank - a.rank || Buffer.compare(a.nameBytes, b.nameBytes));
  return keyed.map((k) => k.t);
}

/** Caller metadata plus the `format: "pt"` that transformers insists on. */
export function fileMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = { format: "pt" };
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== "string") {
      throw new PmaError(
        "METADATA_INVALID",
        `metadata key "${k}" is not a string; safetensors metadata values must be strings.`,
      );
    }
    if (k === "format" && v !== "pt") {
      throw new PmaError(
        "METADATA_INVALID",
        `metadata "format" must be "pt" (transformers refuses other values), got "${v}".`,
      );
    }
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) {
      throw new PmaError("METADATA_INVALID", `metadata key "${k}" contains an unpaired UTF-16 surrogate.`);
    }
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

export interface EncodedHeader {
  /** The 8-byte length prefix followed by the space-padded JSON. */
  bytes: Uint8Array;
  dataStart: number;
  /** Offset of each tensor relative to the data buffer, in the given order. */
  offsets: number[];
  dataLength: number;
}

/** Encodes the header for tensors already in write order; data follows in that order. */
export function encodeHeader(
  tensors: readonly PlannedTensor[],
  metadata: Record<string, string>,
  file: string,
): EncodedHeader {
  const parts: string[] = [`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`];
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    offsets.push(offset);
    const end = offset + t.byteLength;
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  // Padding keeps the data buffer 8-byte aligned, so every element is aligned when mapped.
  const headerSize = Math.ceil(json.length / 8) * 8;
  if (headerSize > MAX_HEADER_SIZE) {
    throw new PmaError(
      "HEADER_TOO_LARGE",
      `${file}: header would be ${headerSize} bytes, over the safetensors limit of ${MAX_HEADER_SIZE}; use a smaller shard size.`,
      { file },
    );
  }
  const bytes = Buffer.alloc(LENGTH_PREFIX + headerSize, 0x20);
  bytes.writeBigUInt64LE(BigInt(headerSize), 0);
  json.copy(bytes, LENGTH_PREFIX);
  return { bytes, dataStart: LENGTH_PREFIX + headerSize, offsets, dataLength: offset };
}
