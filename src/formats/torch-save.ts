/**
 * A `torch.save` archive (`pytorch_model.bin`, since torch 1.6) read as a tensor file:
 * a stored (uncompressed) zip whose `data.pkl` is the state dict, each tensor a
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` whose storage is a
 * persistent id `('storage', torch.<Type>Storage, key, location, numel)` naming the
 * record `data/<key>`. The zip and the pickle are read by the same guarded readers as a
 * distributed checkpoint's segments (formats/dcp/): globals are names on an allowlist,
 * never resolved, and nothing from the file is executed. Tensors are located by absolute
 * offset, so the archive costs only its `data.pkl` in memory, and the merge reads them
 * like safetensors. Tied weights (two names, one storage) and views at an offset are
 * read in place; tensors stored with non-row-major strides are refused with a message.
 */
import { closeSync, fstatSync, readSync } from "node:fs";
import { PmaError } from "../common/errors.js";
import { quoted } from "../common/quote.js";
import { LocalFileSource } from "../sources/local.js";
import { entriesOf, isObject, loadPickle, type PyValue } from "./dcp/pickle-values.js";
import { isRebuiltTensor, storedTensor } from "./dcp/stored-tensor.js";
import {
  openForRead,
  readRecord,
  readSegmentRecords,
  segmentRoot,
  type SegmentRecord,
} from "./dcp/segment-zip.js";
import type { TensorEntry } from "./safetensors-header.js";
import { PositionalTensorFile } from "./tensor-file.js";

/** A state dict's own bookkeeping entry (nn.Module versions), not a tensor. */
const STATE_DICT_METADATA = "_metadata";
/** The pickle PROTO opcode: a pre-1.6 `torch.save` file starts with the pickled magic number. */
const PICKLE_PROTO = 0x80;

export class TorchSaveFile extends PositionalTensorFile<TensorEntry> {
  /** torch.save archives carry no string metadata; present for symmetry with safetensors. */
  readonly metadata: Record<string, string> = {};

  private constructor(
    source: LocalFileSource,
    tensors: Map<string, TensorEntry>,
    readonly fileSize: number,
    /** The archive's `data.pkl`: it pins names, dtypes, shapes and storage offsets, like a safetensors header. */
    readonly headerBytes: Uint8Array,
  ) {
    super(source, tensors);
  }

  static async open(path: string): Promise<TorchSaveFile> {
    const { tensors, size, pickle } = readArchiveLayout(path);
    const source = await LocalFileSource.open(path, "torch.save archive");
    return new TorchSaveFile(source, tensors, size, pickle);
  }
}

/** Names, dtypes, shapes and absolute offsets of every tensor of the archive at `path`. */
function readArchiveLayout(path: string): {
  tensors: Map<string, TensorEntry>;
  size: number;
  pickle: Uint8Array;
} {
  const fd = openForRead(path);
  try {
    const size = fstatSync(fd).size;
    const first = new Uint8Array(1);
    if (size > 0 && readSync(fd, first, 0, 1, 0) === 1 && first[0] === PICKLE_PROTO) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${path}: this is torch's pre-1.6 (non-zip) torch.save format, which pma does not read; load it with torch.load(weights_only=True) and save it again with torch.save (zip format) or as safetensors.`,
        { file: path },
      );
    }
    const records = readSegmentRecords(fd, path, 0, size, "archive");
    const root = segmentRoot(records, path, "archive");
    const byName = new Map(records.map((r) => [r.name, r]));
    const order = byName.get(`${root}byteorder`);
    // torch 1.13 and older wrote no byteorder record; they were little-endian only.
    if (order !== undefined && new TextDecoder().decode(readRecord(fd, path, order)).trim() !== "little") {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${path}: saved big-endian; pma reads little-endian checkpoints only.`,
        { file: path },
      );
    }
    const pklRecord = byName.get(`${root}data.pkl`);
    if (pklRecord === undefined)
      throw new PmaError(
        "METADATA_INVALID",
        `${path}: the archive has no ${root}data.pkl; it is not a torch.save file.`,
        { file: path },
      );
    const pickle = readRecord(fd, path, pklRecord);
    const stateDict = loadPickle(pickle, path);
    return {
      tensors: locateTensors(path, stateDict, (key) => byName.get(`${root}data/${key}`)),
      size,
      pickle,
    };
  } finally {
    closeSync(fd);
  }
}

function locateTensors(
  path: string,
  stateDict: PyValue,
  record: (key: string) => SegmentRecord | undefined,
): Map<string, TensorEntry> {
  // An nn.Module state dict is an OrderedDict (its items arrive as BUILD state); a plain dict works too.
  const entries = isObject(stateDict, (c) => c === "collections.OrderedDict")
    ? entriesOf(stateDict.state ?? null)
    : entriesOf(stateDict);
  if (entries === null) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${path}: the archive holds no state dict (a dict of tensors) at its top level, so it is not a model's weights.`,
      { file: path },
    );
  }
  const tensors = new Map<string, TensorEntry>();
  for (const [key, value] of entries) {
    if (typeof key !== "string")
      throw new PmaError("FORMAT_UNSUPPORTED", `${path}: the state dict has a key that is not a string.`, {
        file: path,
      });
    if (key === STATE_DICT_METADATA) continue;
    if (tensors.has(key))
      throw new PmaError("DUPLICATE_NAME", `${path}: tensor ${quoted(key)} appears twice.`, { file: path });
    tensors.set(key, locateTensor(path, key, value, record));
  }
  return tensors;
}

function locateTensor(
  path: string,
  name: string,
  value: PyValue,
  record: (key: string) => SegmentRecord | undefined,
): TensorEntry {
  const bad = (what: string): never => {
    throw new PmaError("METADATA_INVALID", `${path}: tensor ${quoted(name)} ${what}.`, { file: path });
  };
  if (!isRebuiltTensor(value)) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${path}: entry ${quoted(name)} is not a plain tensor (quantized, sparse or another object); pma merges dense tensors only.`,
      { file: path },
    );
  }
  const t = storedTensor(value, record, bad);
  if (!t.contiguous) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${path}: tensor ${quoted(name)} is stored with strides ${JSON.stringify(t.stride)}, not row-major; pma reads contiguous tensors only (save the state dict with every tensor made .contiguous()).`,
      { file: path },
    );
  }
  return { name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength, fileOffset: t.dataOffset };
}
