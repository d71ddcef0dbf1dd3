/**
 * Where a tensor of a torch.save zip lies: `data.pkl` rebuilds it as
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` with the storage a
 * persistent id `('storage', torch.<Type>Storage, key, location, numel)` naming the
 * record `data/<key>`. Shared by a DCP segment (one tensor per zip) and a whole
 * `pytorch_model.bin` (a state dict of them); each caller adds what it expects (the
 * dtype and shape its metadata gives, contiguity) with its own message.
 */
import { rowMajorStrides } from "./chunks.js";
import { isObject, type PyObject, type PyValue } from "./pickle-values.js";
import type { SegmentRecord } from "./segment-zip.js";
import { dtypeBits, type DType } from "../../tensor/dtype.js";
import { numel } from "../../tensor/shape.js";

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

export interface StoredTensor {
  dtype: DType;
  shape: number[];
  stride: PyValue;
  /** Row-major (strides of dimensions of size 1 do not matter): the bytes are one run. */
  contiguous: boolean;
  record: SegmentRecord;
  /** Absolute position of the first element in the file. */
  dataOffset: number;
  byteLength: number;
}

export const REBUILD_TENSOR = "torch._utils._rebuild_tensor_v2";

export function isRebuiltTensor(v: PyValue): v is PyObject {
  return isObject(v, (c) => c === REBUILD_TENSOR) && v.args.length >= 4;
}

/** Locates the tensor `v` rebuilds; `record` finds `data/<key>`, `bad` throws the caller's error. */
export function storedTensor(
  v: PyObject,
  record: (key: string) => SegmentRecord | undefined,
  bad: (what: string) => never,
): StoredTensor {
  const [storage, storageOffset, size, stride] = v.args as [PyValue, PyValue, PyValue, PyValue];
  const pid = kindOf(storage) === "persid" ? (storage as { pid: PyValue }).pid : null;
  if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== "storage") return bad("has no storage reference");
  const [, cls, key, , storageNumel] = pid as [PyValue, PyValue, PyValue, PyValue, PyValue];
  const clsName = kindOf(cls) === "global" ? (cls as { name: string }).name.replace(/^torch\./, "") : "";
  const dtype = STORAGE_DTYPE[clsName];
  if (dtype === undefined) return bad(`has storage type "${clsName}", which pma cannot read`);
  const shape = isObject(size ?? null, (c) => c === "torch.Size") ? (size as PyObject).args[0] : size;
  if (
    !Array.isArray(shape) ||
    !shape.every((d): d is number => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
  ) {
    return bad("has a malformed shape");
  }
  if (
    typeof storageOffset !== "number" ||
    typeof storageNumel !== "number" ||
    typeof key !== "string" ||
    !Number.isSafeInteger(storageOffset)
  ) {
    return bad("has a malformed storage reference");
  }
  const elements = numel(shape);
  const rowMajor = rowMajorStrides(shape);
  const contiguous =
    elements <= 1 ||
    (Array.isArray(stride) &&
      stride.length === shape.length &&
      shape.every((s, d) => s <= 1 || stride[d] === rowMajor[d]));
  if (storageOffset < 0 || storageOffset + elements > storageNumel)
    return bad(`lies outside its storage of ${storageNumel} elements`);
  const rec = record(key);
  if (rec === undefined) return bad(`names storage record "data/${key}", which the zip does not have`);
  const bytesPer = dtypeBits(dtype) / 8;
  if (rec.length !== storageNumel * bytesPer)
    return bad(`has a storage record of ${rec.length} bytes for ${storageNumel} elements of ${dtype}`);
  return {
    dtype,
    shape,
    stride,
    contiguous,
    record: rec,
    dataOffset: rec.dataOffset + storageOffset * bytesPer,
    byteLength: elements * bytesPer,
  };
}

function kindOf(v: PyValue): string | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
    ? v.kind
    : null;
}
