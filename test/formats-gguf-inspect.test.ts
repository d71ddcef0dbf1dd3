import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { inspectCheckpoint } from "../src/formats/inspect.js";
import { gguf } from "../src/formats/gguf-values.js";
import { writeGguf } from "../src/formats/gguf-writer.js";
import { f32Bytes } from "./formats-gguf-fixtures.js";
import { tempDir } from "./helpers/fixtures.js";

const VOCAB = 50_000;
const NORM = [0.5, -2, 4, 1.5, 0.25, 3];

describe("inspect of a GGUF file", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let path: string;
  before(async () => {
    tmp = await tempDir("pma-gguf-inspect-");
    path = join(tmp.dir, "model.gguf");
    const tokens = Array.from({ length: VOCAB }, (_, i) => `token-${i}`);
    await writeGguf(
      path,
      new Map([
        ["general.architecture", gguf.string("llama")],
        ["general.name", gguf.string("x".repeat(500))],
        ["llama.block_count", gguf.u32(2)],
        ["test.big", gguf.u64((1n << 64n) - 1n)],
        ["tokenizer.ggml.tokens", gguf.strings(tokens)],
        ["tokenizer.ggml.scores", gguf.f32s(new Float32Array(VOCAB))],
      ]),
      [
        { name: "output_norm.weight", type: "F32", dims: [3, 2], data: f32Bytes(NORM) },
        { name: "blk.0.ffn_down.weight", type: "Q4_K", dims: [512, 3], data: new Uint8Array(6 * 144) },
      ],
    );
  });
  after(() => tmp.cleanup());

  test("keys keep their types; a 50k-entry array is summarised by type, length and a preview", async () => {
    const s = await inspectCheckpoint(path, { stats: true });
    assert.equal(s.format, "gguf");
    assert.deepEqual([s.gguf!.version, s.gguf!.alignment], [3, 32]);
    const keys = new Map(s.gguf!.keys.map((k) => [k.key, k]));
    assert.deepEqual(keys.get("llama.block_count"), { key: "llama.block_count", type: "u32", value: 2 });
    assert.deepEqual(keys.get("test.big"), { key: "test.big", type: "u64", value: "18446744073709551615" });
    assert.deepEqual(keys.get("tokenizer.ggml.tokens"), {
      key: "tokenizer.ggml.tokens",
      type: "array",
      elementType: "string",
      length: VOCAB,
      preview: ["token-0", "token-1", "token-2", "token-3", "token-4"],
    });
    assert.equal(s.metadata["tokenizer.ggml.scores"], `array<f32>[${VOCAB}]`);
    assert.ok(JSON.stringify(s).length < 5000, "the summary does not carry the vocabulary");
  });

  test("tensors: ggml type, torch shape, ggml dims, bytes; stats for float tensors only", async () => {
    const s = await inspectCheckpoint(path, { stats: true });
    const [norm, down] = s.tensors;
    assert.deepEqual(
      [norm!.dtype, norm!.shape, norm!.dims, norm!.parameters, norm!.bytes],
      ["F32", [2, 3], [3, 2], 6, 24],
    );
    assert.deepEqual(
      [down!.dtype, down!.shape, down!.dims, down!.parameters, down!.bytes],
      ["Q4_K", [3, 512], [512, 3], 1536, 864],
    );
    const mean = NORM.reduce((a, b) => a + b, 0) / NORM.length;
    const std = Math.sqrt(NORM.reduce((a, b) => a + (b - mean) ** 2, 0) / NORM.length);
    assert.equal(norm!.stats!.min, -2);
    assert.equal(norm!.stats!.max, 4);
    assert.ok(Math.abs(norm!.stats!.mean - mean) < 1e-12);
    assert.ok(Math.abs(norm!.stats!.std - std) < 1e-12, "population standard deviation");
    assert.equal(down!.stats, undefined, "quantized tensors have no stats");
    assert.deepEqual(s.dtypes, { F32: 6, Q4_K: 1536 });
    assert.equal(s.bytes, 24 + 864);
  });

  test("pma inspect prints one line per key, however long the array or string", () => {
    const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
    const r = spawnSync(process.execPath, [main, "inspect", path], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.ok(
      lines.length < 20 && r.stdout.length < 3000,
      `output is ${lines.length} lines, ${r.stdout.length} chars`,
    );
    assert.ok(lines.includes("metadata: 6 keys"));
    assert.ok(
      lines.some((l) =>
        /^ {2}tokenizer\.ggml\.tokens\s+array<string>\[50000\] \["token-0", "token-1", "token-2", "token-3", "token-4", \.\.\.\]$/.test(
          l,
        ),
      ),
      r.stdout,
    );
    assert.ok(
      lines.some((l) => /^ {2}general\.name\s+string "x+\.\.\.$/.test(l) && l.length < 120),
      "long strings are cut",
    );
    assert.ok(
      lines.some((l) => /^blk\.0\.ffn_down\.weight\s+Q4_K\s+\[3, 512\]\s+1,536\s+864$/.test(l)),
      r.stdout,
    );
  });
});
