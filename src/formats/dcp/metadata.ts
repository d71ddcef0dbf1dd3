/**
 * DCP's `.metadata` as data: the pickled `Metadata` object (read by the inert pickle
 * interpreter) decoded into tensors (dtype, global shape, chunk boxes), BYTE_IO items,
 * and where each item is stored (`_StorageInfo`: relative_path, offset, length). Both the
 * current `torch.distributed.checkpoint.*` classes and the torch 2.0-era
 * `torch.distributed._shard.*` ones are accepted; anything that does not have the shape
 * of DCP metadata is refused with the file named.
 */
import { PmaError } from "../../common/errors.js";
import type { DType } from "../../tensor/dtype.js";
import type { ChunkBox } from "./chunks.js";
import { entriesOf, fieldsOf, isObject, toJson, type PyValue } from "./pickle-values.js";

export interface MetadataTensor {
  name: string;
  dtype: DType;
  shape: number[];
  chunks: ChunkBox[];
}

export interface StorageInfo {
  relativePath: string;
  offset: number;
  length: number;
}

export interface DcpMetadata {
  tensors: Map<string, MetadataTensor>;
  bytesItems: string[];
  /** Keyed by storageKey(fqn, chunk offsets or null for BYTE_IO). */
  storage: Map<string, StorageInfo>;
  version: string | null;
  /** `planner_data` and the other top-level fields, as JSON, for inspect and for writers that copy them. */
  extra: Record<string, unknown>;
}

export function storageKey(fqn: string, offsets: readonly number[] | null): string {
  return offsets === null ? `${fqn}\u0000bytes` : `${fqn}\u0000${offsets.join(",")}`;
}

/** torch dtype names as pma's. */
export const TORCH_DTYPES: Record<string, DType> = {
  "torch.float32": "F32",
  "torch.float16": "F16",
  "torch.bfloat16": "BF16",
  "torch.float64": "F64",
  "torch.int64": "I64",
  "torch.int32": "I32",
  "torch.int16": "I16",
  "torch.int8": "I8",
  "torch.uint8": "U8",
  "torch.bool": "BOOL",
  "torch.float8_e4m3fn": "F8_E4M3",
  "torch.float8_e5m2": "F8_E5M2",
};

const endsWith = (suffix: string) => (name: string) => name.endsWith(suffix);

/** A dataclass's fields: its BUILD state is a dict, or (dict, slots) for slotted classes. */
function stateFields(v: PyValue): Map<string, PyValue> | null {
  if (!isObject(v)) return null;
  const s = v.state;
  if (Array.isArray(s) && s.length === 2) {
    const a = fieldsOf(s[0] ?? undefined) ?? new Map<string, PyValue>();
    for (const [k, x] of fieldsOf(s[1] ?? undefined) ?? []) a.set(k, x);
    return a;
  }
  return fieldsOf(s);
}

export function decodeMetadata(root: PyValue, where: string): DcpMetadata {
  const bad = (what: string): never => {
    throw new PmaError(
      "METADATA_INVALID",
      `${where}: ${what}; this is not torch.distributed.checkpoint metadata, or it is damaged.`,
      { file: where },
    );
  };
  const ints = (v: PyValue | undefined, what: string): number[] => {
    // torch.Size is REDUCE(torch.Size, (tuple,)); older writers pickle a plain list.
    const list = v !== undefined && isObject(v, (c) => c === "torch.Size") ? v.args[0] : v;
    if (
      !Array.isArray(list) ||
      !list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)
    )
      return bad(`${what} is not a list of sizes`);
    return list as number[];
  };
  if (!isObject(root, endsWith(".Metadata"))) return bad("the pickled object is not a Metadata");
  const fields = stateFields(root) ?? bad("Metadata has no fields");
  const sdm = entriesOf(fields.get("state_dict_metadata") ?? null) ?? bad("state_dict_metadata is missing");
  const tensors = new Map<string, MetadataTensor>();
  const bytesItems: string[] = [];
  for (const [key, item] of sdm) {
    if (typeof key !== "string") return bad("a state_dict_metadata key is not a string");
    if (tensors.has(key) || bytesItems.includes(key)) return bad(`item "${key}" is listed twice`);
    if (isObject(item, endsWith(".BytesStorageMetadata"))) {
      bytesItems.push(key);
      continue;
    }
    if (!isObject(item, endsWith(".TensorStorageMetadata")))
      return bad(`item "${key}" is neither a tensor nor bytes`);
    const f = stateFields(item) ?? bad(`tensor "${key}" has no fields`);
    const props = f.get("properties");
    const pstate = isObject(props ?? null) ? (props as { state?: PyValue }).state : undefined;
    // TensorProperties' state is a tuple (dtype, layout, requires_grad, memory_format, pin_memory); some writers pickle a dict.
    const dtypeValue = Array.isArray(pstate) ? pstate[0] : (fieldsOf(pstate)?.get("dtype") ?? null);
    const dtypeName =
      dtypeValue !== null &&
      typeof dtypeValue === "object" &&
      !Array.isArray(dtypeValue) &&
      !(dtypeValue instanceof Uint8Array) &&
      dtypeValue.kind === "global"
        ? dtypeValue.name
        : null;
    const dtype = dtypeName === null ? undefined : TORCH_DTYPES[dtypeName];
    if (dtype === undefined) {
      throw new PmaError(
        "DTYPE_UNSUPPORTED",
        `${where}: tensor "${key}" has dtype ${dtypeName ?? "(missing)"}, which pma cannot read.`,
        { file: where },
      );
    }
    if (
      Array.isArray(pstate) &&
      isObject(pstate[1] ?? null) &&
      JSON.stringify(toJson(pstate[1]!)).includes("sparse")
    ) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${where}: tensor "${key}" is sparse; pma reads dense (strided) tensors only.`,
        { file: where },
      );
    }
    const shape = ints(f.get("size"), `tensor "${key}"'s size`);
    const chunkList = f.get("chunks");
    if (!Array.isArray(chunkList)) return bad(`tensor "${key}" has no chunk list`);
    const chunks = chunkList.map((c, i) => {
      const cf = stateFields(c) ?? bad(`chunk ${i} of tensor "${key}" is malformed`);
      return {
        offsets: ints(cf.get("offsets"), `chunk ${i} of "${key}"`),
        sizes: ints(cf.get("sizes"), `chunk ${i} of "${key}"`),
      };
    });
    tensors.set(key, { name: key, dtype, shape, chunks });
  }
  const sd = entriesOf(fields.get("storage_data") ?? null) ?? bad("storage_data is missing");
  const storage = new Map<string, StorageInfo>();
  for (const [index, info] of sd) {
    const ix = stateFields(index) ?? bad("a storage_data key is not a MetadataIndex");
    const fqn = ix.get("fqn");
    if (typeof fqn !== "string") return bad("a MetadataIndex has no fqn");
    const off = ix.get("offset");
    const offsets = off === undefined || off === null ? null : ints(off, `the storage offset of "${fqn}"`);
    const si = stateFields(info) ?? bad(`the storage of "${fqn}" is not a _StorageInfo`);
    const relativePath = si.get("relative_path");
    const offset = si.get("offset");
    const length = si.get("length");
    if (
      typeof relativePath !== "string" ||
      typeof offset !== "number" ||
      typeof length !== "number" ||
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0
    ) {
      return bad(`the storage of "${fqn}" is not (relative_path, offset, length)`);
    }
    const transforms = si.get("transform_descriptors");
    if (Array.isArray(transforms) && transforms.length > 0) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${where}: item "${fqn}" is stored through the transforms ${JSON.stringify(toJson(transforms))} (compression or another extension); pma reads only untransformed items. Save the checkpoint without storage extensions.`,
        { file: where },
      );
    }
    const key = storageKey(fqn, offsets);
    if (storage.has(key))
      return bad(`item "${fqn}" ${offsets ? `at [${offsets.join(", ")}] ` : ""}is stored twice`);
    storage.set(key, { relativePath, offset, length });
  }
  const extra: Record<string, unknown> = {};
  for (const [k, v] of fields) if (k !== "state_dict_metadata" && k !== "storage_data") extra[k] = toJson(v);
  const version = fields.get("version");
  return { tensors, bytesItems, storage, version: typeof version === "string" ? version : null, extra };
}
