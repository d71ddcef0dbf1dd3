import { PmaError } from "../common/errors.js";
import { isDType, type DType } from "../tensor/dtype.js";
import { findDuplicateKey } from "./json-duplicate-keys.js";
import { checkJsonShape, SAFETENSORS_JSON_LIMITS } from "./json-shape.js";
import { tensorByteLength } from "./tensor-bytes.js";
import { quoted } from "../common/quote.js";

/** The reference implementation refuses larger headers; so do we, before reading one. */
export const MAX_HEADER_SIZE = 100_000_000;
/** Bytes of the little-endian u64 header length that opens every file. */
export const LENGTH_PREFIX = 8;
export const METADATA_KEY = "__metadata__";

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Absolute position of the tensor's first byte in the file. */
  fileOffset: number;
}

export interface SafetensorsHeader {
  /** N: length of the JSON header in bytes (padding included). */
  headerSize: number;
  /** 8 + N: where the data buffer starts. */
  dataStart: number;
  dataLength: number;
  metadata: Record<string, string>;
  /** In file order (ascending offset). */
  tensors: TensorEntry[];
}

interface RawEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

// A lone surrogate survives JSON.parse ("\ud800") but has no UTF-8 form, so such a
// name could never be written back or matched by a well-formed reader.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

const CORRUPT = " The file is corrupt or was written by a faulty tool; re-download or re-save it.";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function fail(code: ConstructorParameters<typeof PmaError>[0], path: string, what: string): never {
  throw new PmaError(code, `${path}: ${what}`, { file: path });
}

/**
 * Checks the header length read from the first 8 bytes against the limits and the real
 * file size, before anything of that size is allocated.
 */
export function checkHeaderLength(n: bigint, fileSize: number, path: string): number {
  if (n > BigInt(MAX_HEADER_SIZE)) {
    fail(
      "HEADER_TOO_LARGE",
      path,
      `header length ${n} exceeds the safetensors limit of ${MAX_HEADER_SIZE} bytes; the file is corrupt or not a safetensors file.`,
    );
  }
  const size = Number(n);
  if (fileSize < LENGTH_PREFIX + size) {
    fail(
      "FILE_TOO_SHORT",
      path,
      `file is ${fileSize} bytes but its header claims ${size} bytes after the 8-byte length; the file is truncated (re-copy or re-download it).`,
    );
  }
  return size;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  if (!isPlainObject(value)) {
    fail(
      "METADATA_INVALID",
      path,
      `"${METADATA_KEY}" is ${describe(value)}, but must be an object of strings.` + CORRUPT,
    );
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      fail(
        "METADATA_INVALID",
        path,
        `"${METADATA_KEY}" key ${quoted(k)} is ${describe(v)}; metadata values must be strings.` + CORRUPT,
      );
    }
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) {
      fail(
        "METADATA_INVALID",
        path,
        `"${METADATA_KEY}" key ${quoted(k)} contains an unpaired UTF-16 surrogate escape.`,
      );
    }
  }
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(name: string, value: unknown, path: string): RawEntry {
  const where = `tensor ${quoted(name)}`;
  if (LONE_SURROGATE.test(name)) {
    fail("HEADER_INVALID", path, `${where}: name contains an unpaired UTF-16 surrogate escape.` + CORRUPT);
  }
  if (!isPlainObject(value)) {
    fail(
      "HEADER_INVALID",
      path,
      `${where}: entry is ${describe(value)}, expected {dtype, shape, data_offsets}.` + CORRUPT,
    );
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string") {
    fail("HEADER_INVALID", path, `${where}: "dtype" is ${describe(dtype)}, expected a string.` + CORRUPT);
  }
  if (!isDType(dtype)) {
    fail(
      "DTYPE_UNKNOWN",
      path,
      `${where} has unknown dtype "${dtype}"; this version of pma does not know it.`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    fail(
      "HEADER_INVALID",
      path,
      `${where}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)}.` + CORRUPT,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    fail(
      "HEADER_INVALID",
      path,
      `${where}: "data_offsets" must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}.` +
        CORRUPT,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end)) {
    fail(
      "OFFSETS_INVALID",
      path,
      `${where}: data_offsets [${begin}, ${end}] lie beyond 2^53, past any real file.` + CORRUPT,
    );
  }
  if (end < begin) {
    fail("OFFSETS_INVALID", path, `${where}: data_offsets end ${end} is before begin ${begin}.` + CORRUPT);
  }
  const size = tensorByteLength(dtype, shape as number[]);
  if (!size.ok) {
    fail(
      "TENSOR_SIZE_MISMATCH",
      path,
      `${where} (${dtype}, shape [${shape.join(", ")}]): ${size.reason}.` + CORRUPT,
    );
  }
  if (end - begin !== size.byteLength) {
    fail(
      "TENSOR_SIZE_MISMATCH",
      path,
      `${where} (${dtype}, shape [${shape.join(", ")}]) needs ${size.byteLength} bytes but data_offsets [${begin}, ${end}] give ${end - begin}.` +
        CORRUPT,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * Validates a safetensors header as the reference reader does (huggingface/safetensors
 * `Metadata::validate` and `read_metadata`), with pma error codes. Pure: the caller
 * supplies the N header bytes and the real file size.
 */
export function parseSafetensorsHeader(
  headerJsonBytes: Uint8Array,
  fileSize: number,
  path: string,
): SafetensorsHeader {
  const headerSize = checkHeaderLength(BigInt(headerJsonBytes.length), fileSize, path);
  let text: string;
  try {
    text = utf8.decode(headerJsonBytes);
  } catch {
    fail("HEADER_INVALID", path, "header is not valid UTF-8; the file is corrupt or not a safetensors file.");
  }
  const shape = checkJsonShape(text, SAFETENSORS_JSON_LIMITS);
  if (shape) {
    fail(
      "HEADER_INVALID",
      path,
      `header has ${shape.what} (at character ${shape.position}), which no safetensors header has; the file is corrupt or not a safetensors file.`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    fail(
      "HEADER_INVALID",
      path,
      `header is not valid JSON (${detail}); the file is corrupt or not a safetensors file.`,
    );
  }
  if (!isPlainObject(parsed)) {
    fail("HEADER_INVALID", path, `header is ${describe(parsed)}, but must be a JSON object.` + CORRUPT);
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const inside = dup.parents.length === 0 ? "" : ` inside "${dup.parents.join('" > "')}"`;
    fail(
      "DUPLICATE_NAME",
      path,
      `header has the key "${dup.key}" twice${inside}; readers disagree on which one wins, so the file is refused.`,
    );
  }

  let metadata: Record<string, string> = {};
  const entries: RawEntry[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, path);
    else entries.push(parseEntry(name, value, path));
  }

  // Stable sort: zero-byte tensors sharing an offset keep header order.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      const what =
        expected === 0 && e === entries[0]
          ? `the data buffer must start at offset 0 but its first tensor "${e.name}" starts at ${e.begin}`
          : e.begin > expected
            ? `gap: tensor "${e.name}" starts at ${e.begin} but the previous tensor ends at ${expected}`
            : `overlap: tensor "${e.name}" starts at ${e.begin} but the previous tensor ends at ${expected}`;
      fail("OFFSETS_INVALID", path, `${what}; tensors must tile the data buffer exactly.` + CORRUPT);
    }
    expected = e.end;
  }

  const dataStart = LENGTH_PREFIX + headerSize;
  const dataLength = expected;
  if (dataStart + dataLength !== fileSize) {
    const actual = fileSize - dataStart;
    const what =
      actual < dataLength
        ? `tensors need ${dataLength} data bytes but the file holds ${actual}; the file is truncated`
        : `file has ${actual - dataLength} bytes after the last tensor; the file is corrupt or was appended to`;
    fail("DATA_LENGTH_MISMATCH", path, `${what}.`);
  }

  const tensors: TensorEntry[] = entries.map((e) => ({
    name: e.name,
    dtype: e.dtype,
    shape: e.shape,
    byteLength: e.end - e.begin,
    fileOffset: dataStart + e.begin,
  }));
  return { headerSize, dataStart, dataLength, metadata, tensors };
}
