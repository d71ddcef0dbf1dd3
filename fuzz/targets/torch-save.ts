import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inspectCheckpoint } from "../../src/formats/inspect.js";
import type { FuzzTarget } from "../target.js";

/** The torch-written archives that are the seeds (test/fixtures/torch, from dist/fuzz/targets). */
const FIXTURES = fileURLToPath(new URL("../../../test/fixtures/torch/torch-save/", import.meta.url));
const SEEDS = ["hf-f32", "hf-bf16", "torch-1.13", "shared-storage", "hostile", "legacy-non-zip"];

/**
 * A `pytorch_model.bin` (torch.save zip): the zip records, the guarded pickle interpreter,
 * storage references, and reading every tensor (inspect --stats). A mutated archive must
 * give pma's own error or read within its bytes; nothing in it is ever run.
 */
export const torchSaveTarget: FuzzTarget = {
  name: "torch-save",
  description:
    "a pytorch_model.bin torch.save archive: zip records, data.pkl through the guarded pickle reader, every tensor read (inspect --stats)",
  dictionary: [
    "PK\x03\x04",
    "PK\x01\x02",
    "PK\x05\x06",
    "PK\x06\x06",
    "data.pkl",
    "byteorder",
    "little",
    "torch._utils",
    "_rebuild_tensor_v2",
    "FloatStorage",
    "collections",
    "OrderedDict",
    "\x80\x02",
    "\x93",
    "R",
    "b",
    "Q",
  ],
  async seeds() {
    return Promise.all(SEEDS.map((d) => readFile(join(FIXTURES, d, "pytorch_model.bin"))));
  },
  async setup(work) {
    await mkdir(work, { recursive: true });
    const file = join(work, "pytorch_model.bin");
    return async (data) => {
      await writeFile(file, data);
      await inspectCheckpoint(file, { stats: true });
    };
  },
};
