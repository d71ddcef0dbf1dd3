/**
 * The tensor inside one DCP segment: its `data.pkl` is
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` with the storage a
 * persistent id `('storage', torch.<Type>Storage, key, location, numel)` naming the
 * record `data/<key>`. pma needs only where the chunk's elements start and that they are
 * row-major and contiguous, which is how DCP writes chunks.
 */
import { PmaError } from "../../common/errors.js";
import type { DType } from "../../tensor/dtype.js";
import { loadPickle } from "./pickle-values.js";
import { isRebuiltTensor, storedTensor } from "./stored-tensor.js";
import { readRecord, segmentRoot, type SegmentRecord } from "./segment-zip.js";

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
  if (!isRebuiltTensor(v)) return bad("is not a tensor (its data.pkl does not rebuild one)");
  const t = storedTensor(v, (key) => byName.get(`${root}data/${key}`), bad);
  if (t.dtype !== dtype) {
    throw new PmaError(
      "METADATA_INVALID",
      `${file}: the chunk of "${item}" is stored as ${t.dtype}, but .metadata says ${dtype}; the checkpoint is inconsistent.`,
      { file },
    );
  }
  if (JSON.stringify(t.shape) !== JSON.stringify(sizes)) {
    return bad(
      `has shape ${JSON.stringify(t.shape)}, but .metadata gives the chunk sizes [${sizes.join(", ")}]`,
    );
  }
  if (!t.contiguous) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${file}: the chunk of "${item}" is stored with strides ${JSON.stringify(t.stride)}, not row-major; pma reads contiguous chunks only (DCP writes them so).`,
      { file },
    );
  }
  return { dataOffset: t.dataOffset, byteLength: t.byteLength, record: t.record };
}
