/**
 * The tensor inside one DCP segment: its `data.pkl` is
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` with the storage a
 * persistent id `('storage', torch.<Type>Storage, key, location, numel)` naming the
 * record `data/<key>`. pma needs only where the chunk's elements start and that they are
 * row-major and contiguous, which is how DCP writes chunks.
 */
import { PmaError } from "../../common/errors.js";
import { dtypeBits, type DType } from "../../tensor/dtype.js";
import { rowMajorStrides } from "./chunks.js";
import { isObject, loadPickle, type PyValue } from "./pickle-values.js";
import { readRecord, segmentRoot, type SegmentRecord } from "./segment-zip.js";

export const STORAGE_DTYPE: Readonly<Record<string, DType>> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

export interface SegmentTensor {
  dataOffset: number;
  byteLength: number;
  record: SegmentRecord;
}

/** Locates the chunk `sizes` of `dtype` in a segment whose zip records are `records`. */
export function segmentTensor(
  fd: number,
  file: string,
  records: SegmentRecord[],
  item: string,
  dtype: DType,
  sizes: number[],
): SegmentTensor {
  const bad = (what: string): never => {
    throw new PmaError("METADATA_INVALID", `${file}: the chunk of "${item}" ${what}.`, { file });
  };
  const root = segmentRoot(records, file, item);
  const byName = new Map(records.map((r) => [r.name, r]));
  const order = byName.get(`${root}byteorder`);
  if (order !== undefined && new TextDecoder().decode(readRecord(fd, file, order)).trim() !== "little") {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${file}: the chunk of "${item}" was saved big-endian; pma reads little-endian checkpoints only.`,
      { file },
    );
  }
  const pkl = readRecord(fd, file, byName.get(`${root}data.pkl`)!);
  const v = loadPickle(pkl, `${file} (item "${item}")`);
  if (!isObject(v, (c) => c === "torch._utils._rebuild_tensor_v2") || v.args.length < 4)
    return bad("is not a tensor (its data.pkl does not rebuild one)");
  const [storage, storageOffset, size, stride] = v.args as [PyValue, PyValue, PyValue, PyValue];
  const pid =
    typeof storage === "object" &&
    storage !== null &&
    !Array.isArray(storage) &&
    !(storage instanceof Uint8Array) &&
    storage.kind === "persid"
      ? storage.pid
      : null;
  if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== "storage") return bad("has no storage reference");
  const [, cls, key, , numel] = pid as [PyValue, PyValue, PyValue, PyValue, PyValue];
  const clsName =
    typeof cls === "object" &&
    cls !== null &&
    !Array.isArray(cls) &&
    !(cls instanceof Uint8Array) &&
    cls.kind === "global"
      ? cls.name.replace(/^torch\./, "")
      : "";
  const storageDtype = STORAGE_DTYPE[clsName];
  if (storageDtype === undefined) return bad(`has storage type "${clsName}", which pma cannot read`);
  if (storageDtype !== dtype) {
    throw new PmaError(
      "METADATA_INVALID",
      `${file}: the chunk of "${item}" is stored as ${storageDtype}, but .metadata says ${dtype}; the checkpoint is inconsistent.`,
      { file },
    );
  }
  const sizeList = isObject(size ?? null, (c) => c === "torch.Size")
    ? (size as { args: PyValue[] }).args[0]
    : size;
  if (JSON.stringify(sizeList) !== JSON.stringify(sizes)) {
    return bad(
      `has shape ${JSON.stringify(sizeList)}, but .metadata gives the chunk sizes [${sizes.join(", ")}]`,
    );
  }
  if (typeof storageOffset !== "number" || typeof numel !== "number" || typeof key !== "string")
    return bad("has a malformed storage reference");
  const elements = sizes.reduce((a, b) => a * b, 1);
  const rowMajor = rowMajorStrides(sizes);
  // Strides of dimensions of size 1 do not matter.
  const strideOk =
    Array.isArray(stride) &&
    stride.length === sizes.length &&
    sizes.every((s, d) => s <= 1 || stride[d] === rowMajor[d]);
  if (!strideOk && elements > 1) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${file}: the chunk of "${item}" is stored with strides ${JSON.stringify(stride)}, not row-major; pma reads contiguous chunks only (DCP writes them so).`,
      { file },
    );
  }
  if (storageOffset < 0 || storageOffset + elements > numel)
    return bad(`lies outside its storage of ${numel} elements`);
  const rec = byName.get(`${root}data/${key}`);
  if (rec === undefined) return bad(`names storage record "data/${key}", which the zip does not have`);
  const bytesPer = dtypeBits(dtype) / 8;
  if (rec.length !== numel * bytesPer)
    return bad(`has a storage record of ${rec.length} bytes for ${numel} elements of ${dtype}`);
  return {
    dataOffset: rec.dataOffset + storageOffset * bytesPer,
    byteLength: elements * bytesPer,
    record: rec,
  };
}
