import { decodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType } from "../tensor/dtype.js";
import { StatsAccumulator } from "../tensor/stats.js";
import { GgufFile } from "./gguf.js";
import { describeGgufValue, type GgufValue } from "./gguf-values.js";
import type { CheckpointSummary, TensorSummary } from "./inspect.js";

/** One metadata key as inspect shows it: arrays by element type and length only. */
export interface GgufKeySummary {
  key: string;
  /** Value type; "array" for arrays. */
  type: string;
  /** Scalars only; 64-bit integers as decimal strings so JSON keeps every digit. */
  value?: string | number | boolean;
  elementType?: string;
  length?: number;
  /** A few leading elements, so a 150k-token vocabulary shows what it holds in one line. */
  preview?: (string | number | boolean)[];
}

export interface GgufSummary {
  version: number;
  alignment: number;
  dataStart: number;
  keys: GgufKeySummary[];
}

const PREVIEW = 5;
const STATS_CHUNK = 1 << 20;

function previewOf(v: GgufValue & { type: "array" }): (string | number | boolean)[] {
  const out: (string | number | boolean)[] = [];
  for (let i = 0; i < Math.min(PREVIEW, v.values.length); i++) {
    const x = v.values[i]!;
    out.push(typeof x === "bigint" ? x.toString() : typeof x === "object" ? describeGgufValue(x) : x);
  }
  return out;
}

function summarizeKey(key: string, v: GgufValue): GgufKeySummary {
  if (v.type === "array")
    return { key, type: "array", elementType: v.elementType, length: v.values.length, preview: previewOf(v) };
  return { key, type: v.type, value: typeof v.value === "bigint" ? v.value.toString() : v.value };
}

/**
 * Describes one GGUF file: metadata keys with their types, tensors with their ggml type,
 * torch-order shape and bytes; with `stats`, streams every float tensor once (quantized
 * tensors have no stats: their values would need dequantizing).
 */
export async function inspectGguf(path: string, opts: { stats?: boolean } = {}): Promise<CheckpointSummary> {
  const file = await GgufFile.open(path);
  try {
    const tensors: TensorSummary[] = [];
    const dtypes: Record<string, number> = {};
    const scratch = new Float64Array(STATS_CHUNK);
    for (const t of file.tensors.values()) {
      const summary: TensorSummary = {
        name: t.name,
        dtype: t.typeName,
        shape: t.shape,
        dims: t.dims,
        parameters: t.elements,
        bytes: t.byteLength,
        file: file.path,
      };
      dtypes[t.typeName] = (dtypes[t.typeName] ?? 0) + t.elements;
      if (opts.stats && t.dtype !== null && isFloatDType(t.dtype)) {
        const acc = new StatsAccumulator();
        const size = floatDTypeBytes(t.dtype);
        for (let start = 0; start < t.elements; start += STATS_CHUNK) {
          const n = Math.min(STATS_CHUNK, t.elements - start);
          const bytes = await file.read(t.name, start * size, n * size);
          const out = scratch.subarray(0, n);
          decodeFloats(bytes, t.dtype, out);
          acc.add(out);
        }
        summary.stats = acc.result();
      }
      tensors.push(summary);
    }
    const keys = [...file.metadata].map(([k, v]) => summarizeKey(k, v));
    return {
      path: file.path,
      format: "gguf",
      files: [{ path: file.path, bytes: file.fileSize }],
      tensors,
      parameters: tensors.reduce((s, t) => s + t.parameters, 0),
      bytes: tensors.reduce((s, t) => s + t.bytes, 0),
      dtypes,
      metadata: Object.fromEntries([...file.metadata].map(([k, v]) => [k, describeGgufValue(v)])),
      gguf: { version: file.version, alignment: file.alignment, dataStart: file.dataStart, keys },
    };
  } finally {
    await file.close();
  }
}
