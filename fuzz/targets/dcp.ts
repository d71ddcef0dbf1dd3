import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { inspectDcp } from "../../src/formats/dcp/inspect.js";
import { OracleError, type FuzzTarget } from "../target.js";

/** The torch-written fixtures whose .metadata are the seeds (test/fixtures/torch, from dist/fuzz/targets). */
const FIXTURES = fileURLToPath(new URL("../../../test/fixtures/torch/", import.meta.url));
const SEED_FOLDERS = [
  "dcp/single-rank",
  "dcp/two-rank-sharded",
  "dcp/trajectory/step-100",
  "dcp/safetensors-format/filesystem-writer",
  "real/megatron-lm-tp2/ckpt",
  "real/lightning-fsdp/ckpt",
];
const DATA_FILES = ["__0_0.distcp", "__1_0.distcp", "__0_1.distcp", "__1_1.distcp"];

/**
 * A distributed checkpoint's `.metadata` (the pickle) beside real data files written by
 * torch: the inert pickle interpreter, the metadata decoder, path checks, segment zips,
 * chunk tiling, BYTE_IO values, and reading every tensor (inspect --stats). Data files
 * of several fixtures lie in one folder under the names their metadata use, so mutated
 * metadata reaches real segments; a bait file outside must never be opened.
 */
export const dcpMetadata: FuzzTarget = {
  name: "dcp-metadata",
  description:
    "a .metadata pickle beside real .distcp files: openDcp, BYTE_IO values and every tensor read (inspect --stats); no file outside the folder",
  dictionary: [
    "torch.distributed.checkpoint.metadata",
    "TensorStorageMetadata",
    "BytesStorageMetadata",
    "ChunkStorageMetadata",
    "MetadataIndex",
    "_StorageInfo",
    "relative_path",
    "storage_data",
    "state_dict_metadata",
    "__0_0.distcp",
    "../outside.distcp",
    "posix",
    "system",
    "torch.Size",
    "\x80\x04\x95",
    "\x93",
    "R",
    "b",
  ],
  async seeds() {
    return Promise.all(SEED_FOLDERS.map((f) => readFile(join(FIXTURES, f, ".metadata"))));
  },
  async setup(work) {
    const dir = join(work, "dcp", "ckpt");
    await mkdir(dir, { recursive: true });
    // The megatron fixture's four files, the single-rank file under its own name: every seed finds data.
    for (const f of DATA_FILES) await copyFile(join(FIXTURES, "real/megatron-lm-tp2/ckpt", f), join(dir, f));
    await copyFile(join(FIXTURES, "dcp/single-rank/__0_0.distcp"), join(dir, "__0_0.distcp"));
    await writeFile(
      join(dirname(dir), "outside.distcp"),
      await readFile(join(FIXTURES, "dcp/single-rank/__0_0.distcp")),
    );
    const meta = join(dir, ".metadata");
    return async (data) => {
      await writeFile(meta, data);
      const s = await inspectDcp(dir, { stats: true });
      for (const f of s.files) {
        const rel = relative(dir, f.path);
        if (rel.startsWith(`..${sep}`) || rel === ".." || rel.startsWith(sep))
          throw new OracleError(`opened ${f.path}, outside ${dir}`);
      }
    };
  },
};
