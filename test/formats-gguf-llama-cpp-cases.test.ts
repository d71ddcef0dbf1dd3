/**
 * llama.cpp's own GGUF reader suite (tests/test-gguf.cpp), regenerated here case by case
 * (test/helpers/gguf-cases.ts): every invalid file is refused with pma's error (code
 * GGUF_INVALID, the file named, no crash, no huge allocation) and every valid variant is
 * read with the keys, tensors, offsets and bytes the generator put in.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { GgufFile } from "../src/formats/gguf.js";
import { tempDir } from "./helpers/fixtures.js";
import { LLAMA_CPP_GGUF_CASES, llamaCppGgufCase } from "./helpers/gguf-cases.js";
import { PMA_CLI } from "./helpers/processes.js";

const VALUE_TYPE_NAMES = [
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "f32",
  "bool",
  "string",
  "array",
  "u64",
  "i64",
  "f64",
];

describe("llama.cpp's handcrafted GGUF cases", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-gguf-cases-");
  });
  after(() => tmp.cleanup());

  for (const { name, valid } of LLAMA_CPP_GGUF_CASES) {
    test(`${name}: ${valid ? "read" : "refused with pma's error"}`, async () => {
      for (const seed of [1, 2, 3]) {
        const { bytes, contents } = llamaCppGgufCase(name, seed);
        const path = join(tmp.dir, `${name}-${seed}.gguf`);
        await writeFile(path, bytes);
        if (!valid) {
          await assert.rejects(GgufFile.open(path), (e: unknown) => {
            assert.ok(isPmaError(e, "GGUF_INVALID"), `${name} seed ${seed}: ${String(e)}`);
            assert.equal(e.file, path);
            assert.ok(e.message.startsWith(`${path}: `), e.message);
            assert.ok(e.message.length < 600, `${name}: message of ${e.message.length} characters`);
            return true;
          });
          continue;
        }
        const f = await GgufFile.open(path);
        try {
          assert.equal(f.version, 3);
          assert.equal(f.alignment, contents.alignment);
          for (const k of contents.keys) {
            const v = f.metadata.get(k.key);
            assert.ok(v !== undefined, `${name}: key ${k.key}`);
            assert.equal(v.type, VALUE_TYPE_NAMES[k.type]);
            if (k.arrayType !== null && v.type === "array") assert.equal(v.values.length, k.count);
          }
          assert.equal(f.metadata.size, contents.keys.length + (contents.alignment !== 32 ? 1 : 0));
          assert.deepEqual(
            [...f.tensors.values()].map((t) => ({
              name: t.name,
              typeId: t.ggmlType,
              ne: t.dims,
              offset: t.offset,
              bytes: t.byteLength,
            })),
            contents.tensors.map((t) => ({ ...t, ne: t.ne })),
          );
          // Data bytes: the generator wrote (position in the data section) % 256.
          for (const t of f.tensors.values()) {
            if (t.byteLength === 0) continue;
            const data = await f.read(t.name);
            for (let j = 0; j < data.length; j += 97)
              assert.equal(data[j], (t.offset + j) % 256, `${name}: ${t.name} byte ${j}`);
          }
        } finally {
          await f.close();
        }
      }
    });
  }

  test("pma inspect: exit 1 and one short line for invalid files, a listing for valid ones", async () => {
    for (const name of [
      "HEADER_BAD_N_TENSORS",
      "KV_BAD_KEY_SIZE",
      "TENSORS_NBYTES_TOO_BIG",
      "DATA_MEM_SIZE_OVERFLOW",
      "DATA_SUCCESS",
    ] as const) {
      const path = join(tmp.dir, `cli-${name}.gguf`);
      await writeFile(path, llamaCppGgufCase(name).bytes);
      const r = spawnSync(process.execPath, [PMA_CLI, "inspect", path], { encoding: "utf8" });
      if (name === "DATA_SUCCESS") {
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /GGUF v3/);
      } else {
        assert.equal(r.status, 1, `${name}: ${r.stdout}`);
        assert.match(r.stderr, new RegExp(`^pma: ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: .*\n$`));
        assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
      }
    }
  });
});
