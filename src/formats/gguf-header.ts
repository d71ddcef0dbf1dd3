import type { DType } from "../tensor/dtype.js";
import { Cursor, type ByteSource } from "./gguf-cursor.js";
import { ggmlTypeById, ggufTensorSize } from "./gguf-types.js";
import { readKeyValues, type KeyValues } from "./gguf-kv.js";
import type { GgufMetadata } from "./gguf-values.js";
import { quoted } from "../common/quote.js";

export const GGUF_MAGIC = "GGUF";
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";
/** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
export const GGUF_MAX_NAME_BYTES = 63;
export const GGUF_MAX_DIMS = 4;

export interface GgufTensorInfo {
  name: string;
  /** ggml type id as stored. */
  ggmlType: number;
  /** ggml type name: "F16", "Q4_K", ... */
  typeName: string;
  /** The pma dtype with the same bytes, or null for quantized types. */
  dtype: DType | null;
  /** ggml order: ne0 (the fastest-varying, torch's last dim) first. */
  dims: number[];
  /** torch order: dims reversed. */
  shape: number[];
  elements: number;
  byteLength: number;
  /** Relative to the data section, as stored. */
  offset: number;
  /** Absolute position of the first byte in the file. */
  fileOffset: number;
}

export interface GgufHeader {
  version: number;
  alignment: number;
  /** Keys in file order. */
  metadata: GgufMetadata;
  /** In tensor-info order (which is also data order). */
  tensors: GgufTensorInfo[];
  /** Where the tensor infos end. */
  infoEnd: number;
  /** Absolute position of the data section: infoEnd padded to the alignment. */
  dataStart: number;
}

const CORRUPT = "; the file is corrupt or was written by a faulty tool";
// Counts are int64 in ggml: a value with the top bit set is negative there.
const INT64_LIMIT = 1n << 63n;
/**
 * Tensors and keys are held in a Map, which cannot pass 2^24 entries (a RangeError, not
 * a PmaError). Real files have thousands of tensors and tens of keys.
 */
export const GGUF_MAX_COUNT = (1 << 24) - 1;

function alignUp(x: number, alignment: number): number {
  return Math.ceil(x / alignment) * alignment;
}

function readPreamble(cur: Cursor): { version: number; tensorCount: number; kvCount: number } {
  const magic = cur.bytes(4, "the 4-byte magic");
  if (String.fromCharCode(...magic) !== GGUF_MAGIC) {
    const shown = [...magic].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "?")).join("");
    cur.fail(`magic is "${shown}", expected "GGUF"; this is not a GGUF file`, 0);
  }
  const version = cur.u32("the version");
  if (version === 0 || (version & 0xffff) === 0) {
    // ggml's own heuristic: a big-endian v3 file reads as 0x03000000 here.
    cur.fail(
      `version ${version} is invalid; a byte-swapped version means a big-endian GGUF, which pma does not read`,
      4,
    );
  }
  if (version === 1)
    cur.fail(
      "GGUF version 1 is no longer supported (llama.cpp dropped it too); re-convert the model to GGUF v3",
      4,
    );
  if (version > 3) cur.fail(`GGUF version ${version} is newer than this pma understands (2 and 3)`, 4);
  const counts = (what: string, minBytes: number): number => {
    const at = cur.pos;
    const n = cur.u64(what);
    if (n >= INT64_LIMIT) cur.fail(`${what} ${n} is negative as ggml's int64${CORRUPT}`, at);
    // Every entry takes at least minBytes, so a count the file cannot hold fails here.
    if (n * BigInt(minBytes) > BigInt(cur.remaining())) {
      cur.fail(`${what} ${n} cannot fit in the ${cur.remaining()} bytes left in the file${CORRUPT}`, at);
    }
    if (n > BigInt(GGUF_MAX_COUNT))
      cur.fail(`${what} ${n} is more than the ${GGUF_MAX_COUNT} pma reads${CORRUPT}`, at);
    return Number(n);
  };
  const tensorCount = counts("tensor count", 24);
  const kvCount = counts("key/value count", 14);
  return { version, tensorCount, kvCount };
}

function alignmentOf(cur: Cursor, { metadata, positions }: KeyValues): number {
  const v = metadata.get(GGUF_ALIGNMENT_KEY);
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const at = positions.get(GGUF_ALIGNMENT_KEY)!;
  if (v.type !== "u32")
    cur.fail(
      `key "${GGUF_ALIGNMENT_KEY}" must be of type u32 but is ${v.type === "array" ? "an array" : v.type}${CORRUPT}`,
      at,
    );
  if (v.value === 0 || (v.value & (v.value - 1)) !== 0)
    cur.fail(`key "${GGUF_ALIGNMENT_KEY}" is ${v.value}, not a power of two${CORRUPT}`, at);
  return v.value;
}

function readTensorInfo(cur: Cursor, index: number, seen: Set<string>): Omit<GgufTensorInfo, "fileOffset"> {
  const at = cur.pos;
  const where = `tensor info ${index}`;
  const nameLength = cur.u64(`${where} name length`);
  if (nameLength > BigInt(GGUF_MAX_NAME_BYTES)) {
    cur.fail(
      `${where}: name of ${nameLength} bytes is longer than ggml's limit of ${GGUF_MAX_NAME_BYTES} bytes`,
      at,
    );
  }
  const name = cur.utf8(Number(nameLength), `${where} name`);
  const tensor = `tensor ${quoted(name)}`;
  if (seen.has(name)) cur.fail(`${tensor} appears twice; which one is meant is ambiguous`, at);
  seen.add(name);
  const nDimsAt = cur.pos;
  const nDims = cur.u32(`${tensor} n_dims`);
  if (nDims > GGUF_MAX_DIMS)
    cur.fail(`${tensor} has ${nDims} dimensions; ggml allows at most ${GGUF_MAX_DIMS}${CORRUPT}`, nDimsAt);
  const dims: number[] = [];
  for (let j = 0; j < nDims; j++) {
    const dimAt = cur.pos;
    const d = cur.u64(`${tensor} dimension ${j}`);
    if (d >= INT64_LIMIT)
      cur.fail(`${tensor} dimension ${j} is ${d}, negative as ggml's int64${CORRUPT}`, dimAt);
    if (d > BigInt(Number.MAX_SAFE_INTEGER))
      cur.fail(`${tensor} dimension ${j} is ${d}; its size overflows${CORRUPT}`, dimAt);
    dims.push(Number(d));
  }
  const typeAt = cur.pos;
  const typeId = cur.u32(`${tensor} type`);
  const type = ggmlTypeById(typeId);
  if (!type.ok) cur.fail(`${tensor}: ${type.reason}`, typeAt);
  const size = ggufTensorSize(type.info, dims);
  if (!size.ok)
    cur.fail(`${tensor} (${type.info.name}, dims [${dims.join(", ")}]): ${size.reason}${CORRUPT}`, nDimsAt);
  const offsetAt = cur.pos;
  const offset = cur.u64(`${tensor} offset`);
  if (offset > BigInt(cur.size))
    cur.fail(
      `${tensor} data offset ${offset} lies beyond the end of the file (${cur.size} bytes)${CORRUPT}`,
      offsetAt,
    );
  return {
    name,
    ggmlType: typeId,
    typeName: type.info.name,
    dtype: type.info.dtype,
    dims,
    shape: [...dims].reverse(),
    elements: size.elements,
    byteLength: size.byteLength,
    offset: Number(offset),
  };
}

/**
 * Checks the data layout as ggml's reader does: in tensor-info order, each tensor's
 * offset is exactly where the previous tensor's bytes end, padded to the alignment; and
 * every tensor's bytes lie inside the file (llama.cpp's loader check). Reports the most
 * specific problem: misalignment, overlap, gap, or data past the end of the file.
 */
function checkLayout(
  cur: Cursor,
  infos: Omit<GgufTensorInfo, "fileOffset">[],
  alignment: number,
  dataStart: number,
  infoEnd: number,
): GgufTensorInfo[] {
  let expected = 0;
  let previous: string | null = null;
  const last = infos[infos.length - 1];
  const lastEnd = last === undefined ? 0 : last.offset + last.byteLength;
  return infos.map((t) => {
    const tensor = `tensor ${quoted(t.name)}`;
    if (t.offset % alignment !== 0) {
      cur.fail(
        `${tensor} data offset ${t.offset} is not a multiple of the alignment ${alignment}${CORRUPT}`,
        dataStart + t.offset,
      );
    }
    if (t.offset < expected) {
      cur.fail(
        `${tensor} data offset ${t.offset} overlaps tensor ${quoted(previous ?? "")}, whose data runs to ${expected} (padded)${CORRUPT}`,
        dataStart + t.offset,
      );
    }
    if (t.offset > expected) {
      const after = previous === null ? "the start of the data section" : `tensor ${quoted(previous)}`;
      cur.fail(
        `${tensor} data offset ${t.offset} leaves a gap of ${t.offset - expected} bytes after ${after}; ggml requires offsets to follow each other in tensor-info order (expected ${expected})${CORRUPT}`,
        dataStart + t.offset,
      );
    }
    const end = dataStart + t.offset + t.byteLength;
    if (end > cur.size) {
      // All the data fits if it started right after the infos: a writer forgot the padding.
      const unpadded = dataStart !== infoEnd && infoEnd + lastEnd <= cur.size;
      const hint = unpadded
        ? `; either the file is truncated or its writer left out the padding between the tensor infos (ending at ${infoEnd}) and the data, which must start at a multiple of ${alignment}`
        : "; the file is truncated (re-copy or re-download it)";
      cur.fail(
        `${tensor} data [${dataStart + t.offset}, ${end}) runs past the end of the file at ${cur.size}${hint}`,
        dataStart + t.offset,
      );
    }
    expected = alignUp(t.offset + t.byteLength, alignment);
    previous = t.name;
    return { ...t, fileOffset: dataStart + t.offset };
  });
}

/**
 * Parses and validates a GGUF v2/v3 header (magic, counts, key/values, tensor infos)
 * with ggml's rules (`gguf.cpp`), reading only the header bytes from `source`.
 */
export function parseGgufHeader(source: ByteSource, path: string): GgufHeader {
  const cur = new Cursor(source, path);
  const { version, tensorCount, kvCount } = readPreamble(cur);
  const kv = readKeyValues(cur, kvCount);
  const metadata = kv.metadata;
  const alignment = alignmentOf(cur, kv);
  const seen = new Set<string>();
  const infos: Omit<GgufTensorInfo, "fileOffset">[] = [];
  for (let i = 0; i < tensorCount; i++) infos.push(readTensorInfo(cur, i, seen));
  const infoEnd = cur.pos;
  // ggml pads to the data section only when there are tensors.
  const dataStart = tensorCount > 0 ? alignUp(infoEnd, alignment) : infoEnd;
  if (dataStart > cur.size) {
    cur.fail(
      `file ends at byte ${cur.size}, before the data section, which starts at ${dataStart} (tensor infos end at ${infoEnd}, padded to alignment ${alignment}); the file is truncated`,
      infoEnd,
    );
  }
  const tensors = checkLayout(cur, infos, alignment, dataStart, infoEnd);
  return { version, alignment, metadata, tensors, infoEnd, dataStart };
}
