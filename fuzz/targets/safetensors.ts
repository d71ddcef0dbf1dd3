import { lstat, mkdir, readFile, readdir, realpath, symlink, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { openCheckpointTensors } from "../../src/formats/checkpoint-files.js";
import { inspectCheckpoint } from "../../src/formats/inspect.js";
import {
  SafetensorsWriter,
  writeSafetensors,
  type TensorData,
} from "../../src/formats/safetensors-writer.js";
import { llamaTensorSpecs } from "../../src/trajectory/synthetic.js";
import { OracleError, type FuzzTarget } from "../target.js";

const DICTIONARY = [
  '"dtype"',
  '"shape"',
  '"data_offsets"',
  '"__metadata__"',
  '"format"',
  '"pt"',
  "{}",
  "[]",
  "[0,0]",
  '":',
  '",',
  '"F64"',
  '"F32"',
  '"F16"',
  '"BF16"',
  '"I64"',
  '"I32"',
  '"I16"',
  '"I8"',
  '"U8"',
  '"U16"',
  '"U32"',
  '"U64"',
  '"BOOL"',
  '"F8_E4M3"',
  '"F8_E5M2"',
  '"F8_E8M0"',
  '"F6_E2M3"',
  '"F6_E3M2"',
  '"F4"',
  '"C64"',
  '"Q4_0"',
  "\\u0000",
  "\\ud800",
  "\\u0061",
  "[[[[[[[[",
  "]]]]]]]]",
  '{"a":{"a":',
  "-0",
  "1e3",
  "1.0",
];

function bytesOf(values: number[], width: 1 | 2 | 4 | 8): Uint8Array {
  const out = new Uint8Array(values.length * width);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => {
    if (width === 8) dv.setFloat64(i * 8, v, true);
    else if (width === 4) dv.setFloat32(i * 4, v, true);
    else if (width === 2) dv.setUint16(i * 2, v, true);
    else dv.setUint8(i, v);
  });
  return out;
}

/** Small files covering every dtype family, scalars, empty tensors and metadata. */
const SEED_SETS: { tensors: TensorData[]; metadata?: Record<string, string> }[] = [
  {
    tensors: [
      { name: "w", dtype: "F32", shape: [2, 3], data: bytesOf([1, -2, 3.5, 0, 1e-3, -7], 4) },
      { name: "b", dtype: "BF16", shape: [4], data: bytesOf([0x3f80, 0xbf80, 0x7f80, 0x7fc0], 2) },
      { name: "h", dtype: "F16", shape: [], data: bytesOf([0x3c00], 2) },
      { name: "d", dtype: "F64", shape: [1], data: bytesOf([Math.PI], 8) },
    ],
    metadata: { note: "seed" },
  },
  {
    tensors: [
      { name: "ids", dtype: "I64", shape: [2], data: new Uint8Array(16) },
      { name: "mask", dtype: "BOOL", shape: [3], data: Uint8Array.of(1, 0, 1) },
      { name: "u", dtype: "U8", shape: [0, 5], data: new Uint8Array(0) },
      { name: "f8", dtype: "F8_E4M3", shape: [4], data: Uint8Array.of(0x38, 0xb8, 0x7f, 0) },
      { name: "f4", dtype: "F4", shape: [2, 2], data: Uint8Array.of(0x12, 0x34) },
    ],
  },
  { tensors: [] },
];

async function writeSeeds(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const [i, set] of SEED_SETS.entries()) {
    const p = join(dir, `seed-${i}.safetensors`);
    await writeSafetensors(p, set.tensors, set.metadata);
    paths.push(p);
  }
  // A checkpoint as the merge writes them: Llama names, several tensors per dtype.
  const ck = join(dir, "llama");
  await mkdir(ck, { recursive: true });
  const specs = llamaTensorSpecs(
    { hiddenSize: 4, intermediateSize: 8, layers: 1, vocabSize: 6, heads: 2 },
    "BF16",
  );
  const w = await SafetensorsWriter.create(ck, specs, { metadata: { pma_method: "sma" } });
  await w.finish();
  paths.push(join(ck, "model.safetensors"));
  return paths;
}

/** The whole file as bytes: prefix, header, data. */
export const safetensorsFile: FuzzTarget = {
  name: "safetensors",
  description:
    "a model.safetensors file: openCheckpointTensors + inspect --stats (header validation, tensor reads, float decoding)",
  dictionary: DICTIONARY,
  async seeds(work) {
    return Promise.all((await writeSeeds(join(work, "seeds"))).map((p) => readFile(p)));
  },
  async setup(work) {
    const dir = join(work, "ck");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "model.safetensors");
    return async (data) => {
      await writeFile(file, data);
      await inspectCheckpoint(dir, { stats: true });
    };
  },
};

const SEPARATOR = 0;

/**
 * The header as text, framed by the harness: input = JSON, a NUL byte, then the data
 * buffer; the 8-byte length prefix is computed. Mutations of the JSON then reach the
 * header validation instead of stopping at a length that no longer matches.
 */
export const safetensorsHeader: FuzzTarget = {
  name: "safetensors-header",
  description:
    "the safetensors header JSON with a correct length prefix: parseSafetensorsHeader via SafetensorsFile.open",
  dictionary: DICTIONARY,
  async seeds(work) {
    const out: Uint8Array[] = [];
    for (const p of await writeSeeds(join(work, "seeds"))) {
      const file = await readFile(p);
      const n = Number(file.readBigUInt64LE(0));
      const json = file.subarray(8, 8 + n);
      out.push(Buffer.concat([json, Uint8Array.of(SEPARATOR), file.subarray(8 + n)]));
    }
    return out;
  },
  async setup(work) {
    const dir = join(work, "hdr");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "model.safetensors");
    return async (data) => {
      let cut = data.indexOf(SEPARATOR);
      if (cut < 0) cut = data.length;
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(cut));
      await writeFile(
        file,
        Buffer.concat([prefix, data.subarray(0, cut), data.subarray(Math.min(cut + 1, data.length))]),
      );
      const ck = await openCheckpointTensors(dir);
      try {
        for (const t of ck.tensors.values()) await t.file.read(t.name);
      } finally {
        await ck.close();
      }
    };
  },
};

/**
 * A sharded checkpoint's index with fixed, valid shards beside it, an outside file that
 * a hostile index might name, and a symlink to it. The oracle: every shard opened must
 * resolve inside the checkpoint directory.
 */
export const safetensorsIndex: FuzzTarget = {
  name: "safetensors-index",
  description:
    "model.safetensors.index.json beside real shards: shard names, weight_map, total_size; no read outside the directory",
  dictionary: [
    ...DICTIONARY,
    '"weight_map"',
    '"metadata"',
    '"total_size"',
    "../",
    "..",
    "/",
    "./",
    "\\",
    "//",
    "%2e%2e/",
    '"../outside/secret.safetensors"',
    '"/etc/passwd"',
    '"link.safetensors"',
    '"sub/../model-00001-of-00002.safetensors"',
    '"model-00001-of-00002.safetensors"',
    '"model-00002-of-00002.safetensors"',
    '"model.safetensors"',
    '"pytorch_model.bin"',
  ],
  async seeds(work) {
    const dir = await shardedCheckpoint(work);
    return [await readFile(join(dir, "model.safetensors.index.json"))];
  },
  async setup(work) {
    const dir = await shardedCheckpoint(work);
    const index = join(dir, "model.safetensors.index.json");
    const root = await realpath(dir);
    return async (data) => {
      await writeFile(index, data);
      const ck = await openCheckpointTensors(dir);
      try {
        for (const f of ck.files) {
          const rel = relative(root, await realpath(f.path));
          if (rel.startsWith(`..${sep}`) || rel === ".." || rel.startsWith(sep))
            throw new OracleError(`opened ${f.path}, outside ${root}`);
        }
        for (const t of ck.tensors.values()) await t.file.read(t.name);
      } finally {
        await ck.close();
      }
    };
  },
};

/** work/sharded: two shards and an index written by SafetensorsWriter, plus bait outside. */
async function shardedCheckpoint(work: string): Promise<string> {
  const dir = join(work, "sharded");
  const done = await lstat(join(dir, "link.safetensors")).then(
    () => true,
    () => false,
  );
  if (done) return dir;
  await mkdir(dir, { recursive: true });
  const specs = llamaTensorSpecs(
    { hiddenSize: 4, intermediateSize: 8, layers: 1, vocabSize: 6, heads: 2 },
    "F32",
  );
  const w = await SafetensorsWriter.create(dir, specs, { shardSize: 200 });
  await w.finish();
  const shards = (await readdir(dir)).filter((f) => f.endsWith(".safetensors")).sort();
  // The bait: a valid shard's twin outside the directory, reachable by "..", an absolute
  // path, or the symlink beside the real shards.
  const outside = join(work, "outside");
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, "secret.safetensors"), await readFile(join(dir, shards[0]!)));
  await mkdir(join(dir, "sub"), { recursive: true });
  await symlink(join(outside, "secret.safetensors"), join(dir, "link.safetensors"));
  return dir;
}
